use std::path::Path;

use super::*;
use crate::config::parse;
use proptest::prelude::*;

const HTPASSWD: &str = "alice:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n";
// "alice:secret" and "alice:wrong"
const GOOD: &[u8] = b"Basic YWxpY2U6c2VjcmV0";
const BAD: &[u8] = b"Basic YWxpY2U6d3Jvbmc=";

fn config(text: &str) -> Config {
    let mut load = |p: &Path| -> Result<String, String> {
        if p.ends_with("users") {
            Ok(HTPASSWD.into())
        } else {
            Err("missing".into())
        }
    };
    parse("t.conf", text, Path::new("/srv"), &mut load).unwrap_or_else(|d| panic!("{}", d[0]))
}

fn go(c: &Config, path: &str) -> Route {
    go_with(c, path, None, None, "10.0.0.1", None)
}

fn go_with(
    c: &Config,
    path: &str,
    query: Option<&str>,
    host: Option<&str>,
    peer: &str,
    auth: Option<&[u8]>,
) -> Route {
    route(
        c,
        &RouteRequest {
            path: path.as_bytes(),
            query: query.map(str::as_bytes),
            host: host.map(str::as_bytes),
            peer: peer.parse().unwrap(),
            authorization: auth,
        },
    )
}

fn file(r: &Route) -> String {
    match &r.outcome {
        Outcome::File { path, .. } => path.display().to_string(),
        other => panic!("not a file: {other:?}"),
    }
}

#[test]
fn map_then_pass() {
    let c = config("map /old/* /new/*\npass /new/* htdocs/v2/*\npass /*\n");
    let r = go(&c, "/old/a/b.html");
    assert_eq!(file(&r), "/srv/htdocs/v2/a/b.html");
    assert_eq!(r.steps.iter().map(|s| s.line).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(r.steps[0].note, "path becomes /new/a/b.html");
    assert_eq!(file(&go(&c, "/x/")), "/srv/x/");
    assert_eq!(file(&go(&c, "/")), "/srv/");
}

#[test]
fn no_stopping_rule_is_404() {
    let c = config("map /a/* /b/*\npass /b/x\n");
    assert_eq!(go(&c, "/a/y").outcome, Outcome::NotFound);
    assert_eq!(file(&go(&c, "/a/x")), "/srv/b/x");
}

#[test]
fn fail_redirect_status() {
    let c = config("fail /private/*\nfail /gone 410\nredirect /old/* /new/* 301\nredirect /r https://e.example/x?a=1\nstatus /server-status\n");
    assert_eq!(go(&c, "/private/x").outcome, Outcome::Fail(403));
    assert_eq!(go(&c, "/gone").outcome, Outcome::Fail(410));
    assert_eq!(
        go_with(&c, "/old/p", Some("q=1"), None, "1.2.3.4", None).outcome,
        Outcome::Redirect {
            location: "/new/p?q=1".into(),
            status: 301
        }
    );
    assert_eq!(
        go_with(&c, "/r", Some("b=2"), None, "1.2.3.4", None).outcome,
        Outcome::Redirect {
            location: "https://e.example/x?a=1&b=2".into(),
            status: 302
        }
    );
    assert_eq!(go(&c, "/server-status").outcome, Outcome::Status);
}

#[test]
fn exec_rules_split_script_and_path_info() {
    let c = config("exec /cgi-bin/* cgi-bin/*\nexec /git/* /usr/lib/git-core/git-http-backend\nservice php spawn=php-cgi\nservice mud connect=127.0.0.1:9\nexec /*.php service=php htdocs/*.php\nexec /mud/* service=mud\n");
    let Outcome::Cgi(g) = go(&c, "/cgi-bin/env.sh/extra/x").outcome else {
        panic!()
    };
    assert_eq!(g.script.unwrap(), Path::new("/srv/cgi-bin/env.sh"));
    assert_eq!(
        (g.script_name.as_slice(), g.path_info.as_slice()),
        (&b"/cgi-bin/env.sh"[..], &b"/extra/x"[..])
    );
    let Outcome::Cgi(g) = go(&c, "/cgi-bin/env.sh").outcome else {
        panic!()
    };
    assert_eq!(
        (g.script_name.as_slice(), g.path_info.as_slice()),
        (&b"/cgi-bin/env.sh"[..], &b""[..])
    );
    let Outcome::Cgi(g) = go(&c, "/git/repo.git/info/refs").outcome else {
        panic!()
    };
    assert_eq!(
        g.script.unwrap(),
        Path::new("/usr/lib/git-core/git-http-backend")
    );
    assert_eq!(
        (g.script_name.as_slice(), g.path_info.as_slice()),
        (&b"/git"[..], &b"/repo.git/info/refs"[..])
    );
    let Outcome::Service { name, gateway } = go(&c, "/a/b.php").outcome else {
        panic!()
    };
    assert_eq!(name, "php");
    assert_eq!(gateway.script.unwrap(), Path::new("/srv/htdocs/a/b.php"));
    assert_eq!(gateway.script_name, b"/a/b.php");
    let Outcome::Service { name, gateway } = go(&c, "/mud/room/1").outcome else {
        panic!()
    };
    assert_eq!((name.as_str(), gateway.script), ("mud", None));
    assert_eq!(
        (gateway.script_name.as_slice(), gateway.path_info.as_slice()),
        (&b"/mud"[..], &b"/room/1"[..])
    );
}

#[test]
fn script_name_and_path_info_join_to_the_path() {
    // RFC 3875 §3.3: the script's URI is SCRIPT_NAME + PATH_INFO, so a gateway mounted at
    // the root has an empty SCRIPT_NAME, and a request for the mount point's directory
    // keeps its slash in PATH_INFO.
    let c = config("exec /app/* /usr/lib/app\nexec /* /usr/lib/root-app\n");
    for (path, name, info) in [
        ("/x", "", "/x"),
        ("/", "", "/"),
        ("/a/b", "", "/a/b"),
        ("/app/", "/app", "/"),
        ("/app/x/y", "/app", "/x/y"),
    ] {
        let Outcome::Cgi(g) = go(&c, path).outcome else {
            panic!("{path}")
        };
        assert_eq!(
            (g.script_name.as_slice(), g.path_info.as_slice()),
            (name.as_bytes(), info.as_bytes()),
            "{path}"
        );
    }
}

#[test]
fn protect_by_address_and_password() {
    let c = config("protect /admin/* users=users realm=\"Admin area\" allow=127.0.0.0/8,::1\nprotect /lan/* deny=10.0.0.0/8\npass /*\n");
    let admin = |peer, auth| go_with(&c, "/admin/x", None, None, peer, auth).outcome;
    assert_eq!(admin("10.1.1.1", Some(GOOD)), Outcome::Forbidden);
    assert_eq!(
        admin("127.0.0.1", None),
        Outcome::Unauthorized {
            realm: "Admin area".into()
        }
    );
    assert_eq!(
        admin("::1", Some(BAD)),
        Outcome::Unauthorized {
            realm: "Admin area".into()
        }
    );
    assert!(matches!(
        admin("::ffff:127.0.0.1", Some(GOOD)),
        Outcome::File { .. }
    ));
    let r = go_with(&c, "/admin/x", None, None, "127.0.0.1", Some(GOOD));
    assert_eq!(r.user.as_deref(), Some("alice"));
    assert_eq!(go(&c, "/lan/x").outcome, Outcome::Forbidden);
    assert!(matches!(
        go_with(&c, "/lan/x", None, None, "192.168.0.1", None).outcome,
        Outcome::File { .. }
    ));
    // Protection never turns a 404 into a 401: nothing would be revealed either way.
    let c = config("protect /* users=users\n");
    assert_eq!(go(&c, "/x").outcome, Outcome::NotFound);
}

/// The server's `route_quiet` finds the password checks but makes none: it returns them,
/// with the outcome they would let through; `route` makes them itself.
#[test]
fn route_quiet_leaves_the_password_checks_to_the_caller() {
    let c = config(
        "protect /a/* users=users realm=One\nprotect /a/b/* users=users realm=Two\npass /*\n",
    );
    let quiet = |path: &str, auth: Option<&[u8]>| {
        route_quiet(
            &c,
            &RouteRequest {
                path: path.as_bytes(),
                query: None,
                host: None,
                peer: "10.0.0.1".parse().unwrap(),
                authorization: auth,
            },
        )
    };
    for creds in [GOOD, BAD] {
        let r = quiet("/a/b/x", Some(creds));
        assert!(matches!(r.outcome, Outcome::File { .. }), "{r:?}");
        assert_eq!(r.user, None);
        let realms: Vec<&str> = r.checks.iter().map(|c| c.realm.as_str()).collect();
        assert_eq!(realms, ["One", "Two"]);
        assert!(r.checks.iter().all(|c| c.user == "alice" && c.known));
    }
    // What needs no hash is answered at once.
    let r = quiet("/a/x", None);
    assert_eq!(
        r.outcome,
        Outcome::Unauthorized {
            realm: "One".into()
        }
    );
    assert!(r.checks.is_empty());
    assert!(quiet("/open", Some(GOOD)).checks.is_empty());
    // `route` makes them.
    let r = go_with(&c, "/a/b/x", None, None, "10.0.0.1", Some(GOOD));
    assert!(r.checks.is_empty() && r.user.as_deref() == Some("alice"));
    let r = go_with(&c, "/a/b/x", None, None, "10.0.0.1", Some(BAD));
    assert_eq!(
        r.outcome,
        Outcome::Unauthorized {
            realm: "One".into()
        }
    );
}

#[test]
fn headers_accumulate() {
    let c = config("header /static/* Cache-Control \"max-age=3600\"\nheader /* X-A b\npass /*\n");
    let r = go(&c, "/static/a.css");
    assert_eq!(
        r.headers,
        [
            ("Cache-Control".to_string(), "max-age=3600".to_string()),
            ("X-A".into(), "b".into())
        ]
    );
    assert_eq!(go(&c, "/a").headers.len(), 1);
}

#[test]
fn host_sections_apply_after_global_rules() {
    let c = config("fail /global\nhost a.example\npass /* a/*\nhost *\npass /* other/*\n");
    assert_eq!(
        go_with(&c, "/global", None, Some("a.example"), "1.1.1.1", None).outcome,
        Outcome::Fail(403)
    );
    assert_eq!(
        file(&go_with(
            &c,
            "/x",
            None,
            Some("A.Example:8080"),
            "1.1.1.1",
            None
        )),
        "/srv/a/x"
    );
    assert_eq!(
        file(&go_with(&c, "/x", None, Some("b.example"), "1.1.1.1", None)),
        "/srv/other/x"
    );
    assert_eq!(
        file(&go_with(&c, "/x", None, None, "1.1.1.1", None)),
        "/srv/other/x"
    );
    let c = config("host a.example\npass /*\n");
    assert_eq!(
        go_with(&c, "/x", None, Some("[::1]:80"), "1.1.1.1", None).outcome,
        Outcome::NotFound
    );
}

#[test]
fn pass_targets_stay_in_their_directory() {
    let c = config("pass /a* htdocs/*\npass /b/* ../etc/*\n");
    // `/a..` makes the star `..`: the file would be /srv/htdocs/.. = /srv.
    assert_eq!(go(&c, "/a..").outcome, Outcome::Escapes);
    assert_eq!(file(&go(&c, "/a.txt")), "/srv/htdocs/.txt");
    assert_eq!(
        file(&go(&c, "/b/passwd")),
        "/etc/passwd",
        "the admin may name any directory"
    );
}

#[test]
fn search_scripts_are_found_for_files() {
    let c = config("search /docs/* /usr/lib/cgi-bin/search\npass /*\n");
    let Outcome::File { search, .. } = go(&c, "/docs/a.html").outcome else {
        panic!()
    };
    assert_eq!(search.unwrap(), Path::new("/usr/lib/cgi-bin/search"));
}

proptest! {
    /// Whatever the (normalised) path, a `pass` target never leaves its directory.
    #[test]
    fn pass_never_leaves_its_directory(raw in proptest::collection::vec(prop_oneof![Just(b'/'), Just(b'.'), Just(b'a'), Just(b'%'), Just(b'2'), Just(b'e')], 0..24)) {
        let c = config("pass /a* htdocs/*\npass /* site/*\n");
        let mut target = vec![b'/'];
        target.extend(raw);
        if let Ok(t) = crate::path::normalize(&bytes::Bytes::from(target)) {
            let req = RouteRequest { path: &t.path, query: None, host: None, peer: "10.0.0.1".parse().unwrap(), authorization: None };
            match route(&c, &req).outcome {
                Outcome::File { path, .. } => {
                    prop_assert!(path.starts_with("/srv/htdocs") || path.starts_with("/srv/site"), "{}", path.display());
                    prop_assert!(!path.components().any(|c| c == std::path::Component::ParentDir));
                }
                Outcome::Escapes => {}
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}

#[test]
fn explanations_name_each_rule_and_the_outcome() {
    let c = config("map /old/* /new/*\nheader /* X-A b\npass /new/* htdocs/*\n");
    let text = go(&c, "/old/a").explain();
    assert_eq!(
        text,
        "  line   1: map /old/* /new/*\n             -> path becomes /new/a\n\
         \x20 line   2: header /* X-A b\n             -> adds X-A: b\n\
         \x20 line   3: pass /new/* htdocs/*\n             -> serve file /srv/htdocs/a\n\
         outcome: serve the file /srv/htdocs/a\nheader: X-A: b\n"
    );
    assert_eq!(go(&c, "/zzz").explain(), "  line   2: header /* X-A b\n             -> adds X-A: b\noutcome: 404: no stopping rule matched\nheader: X-A: b\n");
}

fn joined(segs: &[String], trailing: bool) -> String {
    let mut p = format!("/{}", segs.join("/"));
    if trailing {
        p.push('/');
    }
    p
}

proptest! {
    /// The byte-level confinement check agrees with the lexical walk whenever it answers,
    /// and its trimmed path is the lexical form.
    #[test]
    fn the_plain_path_shortcut_agrees_with_the_lexical_walk(
        file in proptest::collection::vec(prop_oneof!["a", "ab", "b", "", ".", "..", "a.b"], 0..6),
        dir in proptest::collection::vec(prop_oneof!["a", "ab", "b", "", ".", ".."], 0..4),
        ft in any::<bool>(),
        dt in any::<bool>(),
    ) {
        let f = joined(&file, ft);
        let d = joined(&dir, dt);
        let (f, d) = (Path::new(&f), Path::new(&d));
        let slow = lexical(f).starts_with(lexical(d));
        if let Some(fast) = plainly_inside(f, d) {
            prop_assert_eq!(fast, slow, "{:?} in {:?}", f, d);
            prop_assert_eq!(trim_trailing_slash(f.to_path_buf()), lexical(f));
        }
    }
}

#[test]
fn hostile_targets_are_explained_as_400() {
    // `weir route` runs the server's normaliser first: what the server answers 400 is
    // explained as 400, with the reason, before any rule is tried.
    let c = config("pass /* htdocs/*\n");
    let peer = "10.0.0.1".parse().unwrap();
    for (target, reason) in [
        ("/a#b", "fragment (#) in the request target"),
        ("/%252e%252e/x", "double percent-encoding in the path"),
        ("/%c0%ae%c0%ae/x", "overlong UTF-8 encoding in the path"),
        ("/..%5cx", "backslash in the path"),
        ("/..\\x", "backslash in the path"),
        ("/a/..;/b", "path parameter on a dot segment (..;)"),
    ] {
        let text = explain_request(
            &c,
            &crate::http1::Method::Get,
            target.as_bytes(),
            None,
            peer,
        );
        assert!(
            text.ends_with(&format!("outcome: 400: {reason}\n")),
            "{target}: {text}"
        );
        assert!(!text.contains("pass /*"), "{target}: {text}");
    }
}

#[test]
fn explain_takes_the_host_of_an_absolute_url() {
    let mut none = |_: &std::path::Path| Err("no files".to_string());
    let config = crate::config::parse(
        "t.conf",
        "host a.example\nfail /* 410\nhost *\npass /*\n",
        std::path::Path::new("/srv"),
        &mut none,
    )
    .expect("valid");
    let get = crate::http1::Method::Get;
    let peer = core::net::IpAddr::from([127, 0, 0, 1]);
    let text = explain_request(&config, &get, b"http://a.example:8080/x?y", None, peer);
    assert!(text.contains("(host a.example:8080,"), "{text}");
    assert!(text.contains("outcome: answer 410"), "{text}");
    let text = explain_request(&config, &get, b"/x", None, peer);
    assert!(text.contains("(host none,"), "{text}");
    // A host given wins, as `weir route --host` asks.
    let text = explain_request(&config, &get, b"http://a.example/x", Some(b"b"), peer);
    assert!(text.contains("(host b,"), "{text}");
}

/// `weir route` warns that a file would answer a POST with 405, and only for a file.
#[test]
fn explain_warns_when_the_method_cannot_fetch_the_file() {
    let c = config("fail /gone 410\npass /*\n");
    let peer = core::net::IpAddr::from([127, 0, 0, 1]);
    let but = "but: documents answer only GET, HEAD and OPTIONS";
    let post = crate::http1::Method::Post;
    let get = crate::http1::Method::Get;
    assert!(explain_request(&c, &post, b"/x", None, peer).contains(but));
    assert!(!explain_request(&c, &get, b"/x", None, peer).contains(but));
    assert!(!explain_request(&c, &post, b"/gone", None, peer).contains(but));
}

/// A bracketed IPv6 host without a port keeps its last `:`, which is not a port separator.
#[test]
fn an_ipv6_host_without_a_port_finds_its_section() {
    let c = config("host [::1]\nfail /* 410\nhost *\npass /*\n");
    for host in ["[::1]", "[::1]:8080"] {
        let r = go_with(&c, "/x", None, Some(host), "10.0.0.1", None);
        assert!(
            matches!(r.outcome, Outcome::Fail(410)),
            "{host}: {:?}",
            r.outcome
        );
    }
}

/// The server judges the method before the target: an unknown method is 501 and TRACE or
/// CONNECT 405 (RFC 9110 §9.1, §9.3.6, §9.3.8), whatever the rules would have done.
#[test]
fn explain_judges_the_method_before_the_rules() {
    let c = config("pass /*\n");
    let peer = core::net::IpAddr::from([127, 0, 0, 1]);
    let other = crate::http1::Method::Other(bytes::Bytes::from_static(b"BREW"));
    let text = explain_request(&c, &other, b"/x", None, peer);
    assert!(text.contains("outcome: 501"), "{text}");
    assert!(!text.contains("path:"), "{text}");
    for m in [crate::http1::Method::Trace, crate::http1::Method::Connect] {
        let text = explain_request(&c, &m, b"/x", None, peer);
        assert!(text.contains("outcome: 405: TRACE and CONNECT"), "{text}");
        assert!(!text.contains("path:"), "{text}");
    }
}

/// A presentation rule is chosen by the document's media type without its parameters,
/// case-insensitively (RFC 9110 §8.3.1), and only a rule for that type is chosen.
#[test]
fn presentation_scripts_are_chosen_by_base_media_type() {
    let c = config(
        "presentation text/markdown cgi-bin/md\npresentation Text/HTML /opt/html\npass /*\n",
    );
    assert_eq!(
        presentation_for(&c, None, "text/html; charset=utf-8"),
        Some(PathBuf::from("/opt/html"))
    );
    assert_eq!(
        presentation_for(&c, None, " text/markdown ;q=1"),
        Some(PathBuf::from("/srv/cgi-bin/md"))
    );
    assert_eq!(presentation_for(&c, None, "text/plain"), None);
    assert_eq!(presentation_for(&c, None, "text/markdownx"), None);
}

/// A search script serves only the files its template matches.
#[test]
fn a_search_script_is_attached_only_to_files_its_template_matches() {
    let c = config("search /docs/* /usr/lib/cgi-bin/search\npass /*\n");
    let Outcome::File { search, .. } = go(&c, "/notes/a.html").outcome else {
        panic!()
    };
    assert_eq!(search, None);
}

/// A trailing slash names a directory, so `pass` keeps it when the result ends in `*` or
/// `/`, and drops it when the result names one file.
#[test]
fn pass_keeps_a_trailing_slash_where_the_result_allows_a_directory() {
    let c = config("pass /d/* htdocs/*\npass /e/ htdocs/e/\npass /f/ htdocs/f.html\n");
    assert_eq!(file(&go(&c, "/d/sub/")), "/srv/htdocs/sub/");
    assert_eq!(file(&go(&c, "/e/")), "/srv/htdocs/e/");
    assert_eq!(file(&go(&c, "/f/")), "/srv/htdocs/f.html");
}

/// The file `pass` hands on is in lexical form even when the shortcut for plain paths could
/// be tempted: under a root of `/`, a target made only of dot segments is `/` itself.
#[test]
fn a_dot_only_target_under_root_slash_is_served_as_slash() {
    let c = config("root /\npass /*\n");
    assert_eq!(file(&go(&c, "/..")), "/");
    assert_eq!(file(&go(&c, "/./..")), "/");
}

/// Repeated slashes collapse as in the lexical form (empty segments name nothing), and the
/// trailing slash that names a directory stays.
#[test]
fn repeated_slashes_under_root_slash_collapse_as_in_lexical_form() {
    let c = config("root /\npass /*\n");
    assert_eq!(file(&go(&c, "///a///")), "/a/");
}
