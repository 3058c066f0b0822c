//! The CGI output parser: a script's arbitrary output, cut at an arbitrary point.
//!
//! Checks: never a panic; the verdict does not depend on where the output was cut; a
//! parsed header section hands on no field whose name is not a token or whose value holds
//! CR, LF or another control byte (what is passed on must be safe to write as a response
//! header); the body bytes are exactly what followed the empty line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_core::cgi::output::{HeadParser, Parsed};

const LIMIT: usize = 512;

/// Feeds the parts in order; once the head is found, the later parts are body bytes.
fn run(parts: &[&[u8]]) -> Parsed {
    let mut p = HeadParser::new();
    for (i, part) in parts.iter().enumerate() {
        match p.feed(part, LIMIT) {
            Parsed::NeedMore => {}
            Parsed::Head(head, rest) => {
                let mut body = rest.to_vec();
                for later in &parts[i + 1..] {
                    body.extend_from_slice(later);
                }
                return Parsed::Head(head, body.into());
            }
            bad => return bad,
        }
    }
    Parsed::NeedMore
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, out)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(out.len());
    let whole = run(&[out]);
    let split = run(&[&out[..cut], &out[cut..]]);
    match (&whole, &split) {
        // Over the limit the verdict may come earlier or later, but it must be a refusal
        // in both (or a head found before the limit in both).
        (Parsed::Head(a, ra), Parsed::Head(b, rb)) => {
            assert_eq!(a, b, "the head depends on the cut");
            assert_eq!(ra, rb, "the body start depends on the cut");
        }
        (Parsed::Bad(_), Parsed::Bad(_)) | (Parsed::NeedMore, Parsed::NeedMore) => {}
        (a, b) => {
            let over = out.len() > LIMIT;
            assert!(over, "verdict depends on the cut: {a:?} vs {b:?}");
        }
    }
    if let Parsed::Head(head, _) = whole {
        for (name, value) in &head.fields {
            assert!(
                !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':'),
                "bad name {name:?}"
            );
            assert!(
                !value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
                "control byte in {value:?}"
            );
        }
        let _ = head.reply();
    }
});
