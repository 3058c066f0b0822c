//! The request-target normaliser: arbitrary bytes → a clean path or a refusal.
//!
//! Checks: a result starts with `/` (or is `*`), has no empty, `.` or `..` segment except a
//! final empty one, no `.;`/`..;` segment, no control byte and no backslash; normalising is
//! idempotent (a normalised path, which contains no `%`, `?` or `#` once those are
//! excluded, normalises to itself).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_core::path::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = normalize(&Bytes::copy_from_slice(data)) else {
        return;
    };
    if t.path == b"*" {
        return;
    }
    assert_eq!(t.path.first(), Some(&b'/'), "{:?}", t.path);
    assert!(
        !t.path.iter().any(|&b| b < 0x20 || b == 0x7f),
        "control byte"
    );
    let segments: Vec<&[u8]> = t.path[1..].split(|&b| b == b'/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != b"." && *seg != b"..", "dot segment in {:?}", t.path);
        assert!(
            !seg.starts_with(b".;") && !seg.starts_with(b"..;"),
            "dot segment with parameters in {:?}",
            t.path
        );
        assert!(!seg.is_empty() || i == segments.len() - 1, "empty segment");
    }
    assert!(!t.path.contains(&b'\\'), "backslash in {:?}", t.path);
    if !t.path.contains(&b'%')
        && !t.path.contains(&b'?')
        && !t.path.contains(&b'#')
        && !t.path.contains(&b' ')
    {
        let again = normalize(&Bytes::from(t.path.clone())).expect("a normalised path is valid");
        assert_eq!(again.path, t.path, "not idempotent");
    }
});
