//! The rules router: arbitrary rules and an arbitrary request → an outcome, never a panic.
//!
//! The input is `RULES \0 PATH \0 HOST \0 AUTHORIZATION`. The rules are parsed as a
//! configuration file (invalid ones end the run); the path goes through the normaliser as
//! the server does. Checks: a file outcome is a lexically clean absolute path (no `..`
//! survives routing: that is what `Escapes` is for); the explanation renders.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Component, Path};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir_core::config::parse;
use weir_core::path::normalize;
use weir_core::rules::{route, Outcome, RouteRequest};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&b| b == 0);
    let (Some(rules), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let host = parts.next();
    let authorization = parts.next();
    let Ok(rules) = core::str::from_utf8(rules) else {
        return;
    };
    let mut load = |_: &Path| Ok("alice:$apr1$x$y\n".to_string());
    let Ok(config) = parse("weir.conf", rules, Path::new("/srv/site"), &mut load) else {
        return;
    };
    let Ok(target) = normalize(&Bytes::copy_from_slice(target)) else {
        return;
    };
    let routed = route(
        &config,
        &RouteRequest {
            path: &target.path,
            query: target.query.as_deref(),
            host,
            peer: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            authorization,
        },
    );
    if let Outcome::File { path, .. } = &routed.outcome {
        assert!(path.is_absolute(), "relative file {path:?}");
        assert!(
            !path.components().any(|c| c == Component::ParentDir),
            "`..` survived routing: {path:?}"
        );
    }
    let _ = routed.explain();
});
