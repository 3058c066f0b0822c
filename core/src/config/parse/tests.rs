use std::path::Path;
use std::time::Duration;

use super::*;
use crate::rules::Action;

fn load_none(p: &Path) -> Result<String, String> {
    Err(format!("no such file {}", p.display()))
}

fn ok(text: &str) -> Config {
    match parse("weir.conf", text, Path::new("/etc/weir"), &mut load_none) {
        Ok(c) => c,
        Err(d) => panic!(
            "{}",
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn errors(text: &str) -> Vec<String> {
    let mut files = |p: &Path| -> Result<String, String> {
        match p.to_str() {
            Some("/etc/weir/good.htpasswd") => {
                Ok("alice:$apr1$abc$def\n# c\n\nbob:$2y$05$xyz\n".into())
            }
            Some("/etc/weir/bad.htpasswd") => Ok("alice:$apr1$x\nbob:plaintext\n".into()),
            Some("/etc/weir/colonless.htpasswd") => Ok("# c\nalice:$apr1$x\nbob\n".into()),
            _ => Err("No such file or directory".into()),
        }
    };
    match parse("weir.conf", text, Path::new("/etc/weir"), &mut files) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|d| format!("{}:{}: {}", d.line, d.col, d.message))
            .collect(),
    }
}

#[test]
fn the_design_example_parses() {
    let c = ok(r#"
listen      127.0.0.1:8080
access-log  logs/access.log
welcome     index.html
listing     on
service     mud spawn="weir-mud" processes=1
service     php spawn="php-cgi" processes=2

redirect    /old/*          /new/*          301
fail        /private/*
protect     /admin/*        realm="admin" allow=127.0.0.0/8
exec        /cgi-bin/*      cgi-bin/*
exec        /mud/*          service=mud
exec        /*.php          service=php     htdocs/*.php
header      /static/*       Cache-Control "max-age=3600"
pass        /*              htdocs/*
"#);
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(
        c.access_log.as_ref().unwrap().path,
        Path::new("/etc/weir/logs/access.log")
    );
    assert!(c.listing);
    assert_eq!(c.services.len(), 2);
    assert_eq!(c.rules.len(), 8);
    assert_eq!(c.rules[0].line, 9);
    assert!(
        matches!(&c.rules[0].action, Action::Redirect { status: 301, url, .. } if url == "/new/*")
    );
    assert!(matches!(
        &c.rules[1].action,
        Action::Fail { status: 403, .. }
    ));
    assert!(
        matches!(&c.rules[6].action, Action::Header { name, value, .. } if name == "Cache-Control" && value == "max-age=3600")
    );
}

#[test]
fn settings_sizes_durations() {
    let c = ok(
        "root /srv\nlisten [::1]:9000 nocache\nlisten 127.0.0.1:9001\nworkers 3\n\
                timeout header=250ms idle=5m grace=1h\nlimit body=1G headers=50 request-line=4K\n\
                cache 16M max-file=64K revalidate=2s\ntype .Md text/markdown\nerror-log stderr\n\
                user www-data www\nwelcome index.htm index.html\n",
    );
    assert_eq!(c.root, Path::new("/srv"));
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.nocache, vec!["[::1]:9000".parse().unwrap()]);
    assert_eq!(c.workers, Some(3));
    assert_eq!(c.file_threads, crate::config::FILE_THREADS_DEFAULT);
    assert_eq!(ok("file-threads 4\n").file_threads, 4);
    assert_eq!(ok("file-threads off\n").file_threads, 0);
    assert_eq!(c.timeouts.header, Duration::from_millis(250));
    assert_eq!(c.timeouts.idle, Duration::from_secs(300));
    assert_eq!(c.timeouts.grace, Duration::from_secs(3600));
    assert_eq!(c.limits.body_max, 1 << 30);
    assert_eq!(c.limits.headers_max, 50);
    assert_eq!(c.limits.request_line_max, 4096);
    let cache = c.cache.unwrap();
    assert_eq!(
        (cache.size, cache.max_file, cache.revalidate),
        (16 << 20, 64 << 10, Duration::from_secs(2))
    );
    assert_eq!(
        c.types.get(".md").map(String::as_str),
        Some("text/markdown")
    );
    assert_eq!(c.user, Some(("www-data".into(), Some("www".into()))));
    assert_eq!(c.welcome, ["index.htm", "index.html"]);
    assert_eq!(ok("cache off").cache, None);
}

#[test]
fn root_applies_to_paths_written_before_it() {
    let c = ok("access-log a.log\nroot site\n");
    assert_eq!(c.root, Path::new("/etc/weir/site"));
    assert_eq!(
        c.access_log.unwrap().path,
        Path::new("/etc/weir/site/a.log")
    );
}

#[test]
fn host_sections() {
    let c = ok("pass /x\nhost a.example B.example\nfail /*\nhost *\npass /*\n");
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.hosts[0].names, ["a.example", "b.example"]);
    assert_eq!(c.hosts[1].names, ["*"]);
    assert_eq!(c.hosts[1].rules.len(), 1);
}

#[test]
fn services() {
    let c = ok("service a spawn=\"php-cgi -d x=1\" processes=2 env=A=B=C cwd=/tmp\nservice b connect=unix:run/b.sock\nservice c connect=[::1]:9000 connections=4\n");
    assert_eq!(
        c.services["a"],
        Service::Spawn {
            argv: vec!["php-cgi".into(), "-d".into(), "x=1".into()],
            processes: 2,
            connections: 2,
            user: None,
            cwd: "/tmp".into(),
            env: vec![("A".into(), "B=C".into())]
        }
    );
    assert_eq!(
        c.services["b"],
        Service::Connect {
            addr: ServiceAddr::Unix("/etc/weir/run/b.sock".into()),
            connections: 8
        }
    );
    assert_eq!(
        c.services["c"],
        Service::Connect {
            addr: ServiceAddr::Tcp("::1".into(), 9000),
            connections: 4
        }
    );
}

#[test]
fn htpasswd_files() {
    assert!(errors("protect /a/* users=good.htpasswd\n").is_empty());
    assert_eq!(
        errors("protect /a/* users=missing\n"),
        ["1:14: cannot read /etc/weir/missing: No such file or directory"]
    );
    assert_eq!(
        errors("protect /a/* users=bad.htpasswd\n"),
        ["1:14: /etc/weir/bad.htpasswd:2: unsupported password hash for `bob` (use bcrypt, SHA-256/512-crypt or apr1)"]
    );
    assert_eq!(
        errors("protect /a/* users=colonless.htpasswd\n"),
        ["1:14: /etc/weir/colonless.htpasswd:3: expected `user:hash`"]
    );
}

#[test]
fn every_error_is_reported_with_its_position() {
    let text = "listen nowhere\nfrobnicate 1\npass /*/* x\nfail /x 200\nredirect /a /b 304\n\
                exec /p/* service=ghost\ntimeout header=10\nlimit body=12Q\nlisting maybe\n\
                pass /x bogus=1\nmap /a b\nworkers 0\nhost a\nlisten 127.0.0.1:1\nstatus\n\
                header /x Bad:Name v\nprotect /p/* realm=x\n\"unterminated\n";
    assert_eq!(
        errors(text),
        [
            "1:8: expected ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
            "2:1: unknown directive `frobnicate`",
            "3:6: a template has at most one `*`",
            "4:9: the status of `fail` is a number from 400 to 599",
            "5:16: a redirect status is 301, 302, 303, 307 or 308",
            "6:11: no service named `ghost` is declared",
            "7:9: `10` is not a duration (e.g. 250ms, 10s, 5m, 1h)",
            "8:7: `12Q` is not a size (e.g. 512, 64K, 16M, 1G)",
            "9:9: expected `on` or `off`",
            "10:9: unknown option `bogus` for `pass`",
            "11:8: the result of `map` is a path starting with `/`",
            "12:9: workers must be a number from 1 to 1024",
            "14:1: `listen` is a global setting and must come before the first `host` line",
            "15:7: missing argument; usage: status TEMPLATE",
            "16:11: not a valid header field name",
            "17:1: `protect` needs at least one of users=, allow=, deny=",
            "18:1: unterminated quoted string",
        ]
    );
}

#[test]
fn file_threads_errors() {
    assert_eq!(
        errors(
            "file-threads 0\nfile-threads some\nfile-threads 2 3\nfile-threads\n\
                host a\nfile-threads 4\n"
        ),
        [
            "1:14: file-threads must be `off` or a number from 1 to 1024",
            "2:14: file-threads must be `off` or a number from 1 to 1024",
            "3:16: unexpected argument; usage: file-threads N|off",
            "4:13: missing argument; usage: file-threads N|off",
            "6:1: `file-threads` is a global setting and must come before the first `host` line",
        ]
    );
}

#[test]
fn diagnostics_render_with_a_caret() {
    let d = parse(
        "site/weir.conf",
        "pass /x\n  fail   /a/*/* 404\n",
        Path::new("/"),
        &mut load_none,
    )
    .unwrap_err();
    assert_eq!(
        d[0].to_string(),
        "site/weir.conf:2:10: error: a template has at most one `*`\n    fail   /a/*/* 404\n           ^~~~~~"
    );
}

#[test]
fn units() {
    assert_eq!(size("512"), Ok(512));
    assert_eq!(size("64K"), Ok(65536));
    assert!(size("K").is_err() && size("-1").is_err() && size("99999999999G").is_err());
    assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(duration("s").is_err() && duration("5").is_err() && duration("5x").is_err());
}

/// A service's counts are checked whichever kind it is: `processes` from 1 to 256,
/// `connections` at least 1, with `spawn=` and with `connect=` alike.
#[test]
fn service_counts_are_checked() {
    assert_eq!(
        errors(
            "service a spawn=x processes=0\nservice b spawn=x processes=257\n\
             service c spawn=x connections=0\nservice d connect=unix:/d.sock connections=0\n\
             service e connect=unix:/e.sock connections=many\n"
        ),
        [
            "1:19: processes must be a number from 1 to 256",
            "2:19: processes must be a number from 1 to 256",
            "3:19: connections must be a number of at least 1",
            "4:32: connections must be a number of at least 1",
            "5:32: connections must be a number of at least 1",
        ]
    );
    assert!(errors("service f connect=unix:/f.sock connections=1\n").is_empty());
}

/// A welcome file is looked up inside the requested directory, so a name that would climb
/// out of it or into a subdirectory is refused, each at its own word.
#[test]
fn a_welcome_name_must_be_a_plain_file_name() {
    assert_eq!(
        errors("welcome index.html .\nwelcome ..\nwelcome a/b\n"),
        [
            "1:20: a welcome file is a plain file name, without `/`",
            "2:9: a welcome file is a plain file name, without `/`",
            "3:9: a welcome file is a plain file name, without `/`",
        ]
    );
    assert_eq!(ok("welcome .index ..x\n").welcome, [".index", "..x"]);
}

/// The shortest suffix is a dot and one character; anything without the dot, with nothing
/// after it, or with a `/` could never match a file name's suffix.
#[test]
fn a_type_suffix_is_a_dot_and_at_least_one_character() {
    assert_eq!(
        errors("type md text/x\ntype . text/x\ntype .a/b text/x\n"),
        [
            "1:6: a suffix is written with its dot, e.g. `.html`",
            "2:6: a suffix is written with its dot, e.g. `.html`",
            "3:6: a suffix is written with its dot, e.g. `.html`",
        ]
    );
    assert_eq!(
        ok("type .A text/x\n").types.get(".a").map(String::as_str),
        Some("text/x")
    );
}

/// Every `limit` option lands in its own field and leaves the others alone.
#[test]
fn each_limit_option_sets_its_own_limit() {
    let c = ok("limit request-line=1K header-bytes=2K headers=3 body=4K connections=5 cgi=6\n");
    assert_eq!(
        c.limits,
        crate::limits::Limits {
            request_line_max: 1024,
            header_bytes_max: 2048,
            headers_max: 3,
            body_max: 4096,
            connections_max: 5,
            cgi_max: 6,
        }
    );
}

#[test]
fn a_spawned_service_runs_as_the_user_it_names() {
    let c = ok("service a spawn=x user=www\n");
    assert!(matches!(&c.services["a"], Service::Spawn { user: Some(u), .. } if u == "www"));
    assert_eq!(
        errors("service a spawn=x user=\n"),
        ["1:19: expected user=NAME"]
    );
}

/// An environment variable needs a name, and a NUL cannot be passed to a process in one.
#[test]
fn an_env_option_without_a_usable_name_is_refused() {
    assert_eq!(
        errors(
            "service a spawn=x env==1\nexec /c/* c/* env==1\nexec /d/* d/* env=A\0B=1\n\
             exec /e/* e/* env=NOEQUALS\n"
        ),
        [
            "1:19: expected env=NAME=VALUE",
            "2:15: expected env=NAME=VALUE",
            "3:15: expected env=NAME=VALUE",
            "4:15: expected env=NAME=VALUE",
        ]
    );
}

#[test]
fn exec_env_options_reach_the_action() {
    let c = ok(
        "service s connect=unix:/s.sock\nexec /c/* c/* env=A=1 env=B=\n\
                exec /s/* service=s env=C=x=y\n",
    );
    assert!(matches!(
        &c.rules[0].action,
        Action::Exec { env, .. } if *env == [("A".into(), "1".into()), ("B".into(), String::new())]
    ));
    assert!(matches!(
        &c.rules[1].action,
        Action::ExecService { env, .. } if *env == [("C".into(), "x=y".into())]
    ));
}

/// Every `timeout` option lands in its own field and leaves the others alone.
#[test]
fn each_timeout_option_sets_its_own_timeout() {
    let c = ok("timeout header=1s body=2s idle=3s send=4s gateway=5s grace=6s\n");
    assert_eq!(
        c.timeouts,
        crate::limits::Timeouts {
            header: Duration::from_secs(1),
            body: Duration::from_secs(2),
            idle: Duration::from_secs(3),
            send: Duration::from_secs(4),
            gateway: Duration::from_secs(5),
            grace: Duration::from_secs(6),
        }
    );
}

#[test]
fn an_access_log_has_a_format_or_is_off() {
    let format = |text: &str| ok(text).access_log.map(|l| l.format);
    assert_eq!(format("access-log a.log\n"), Some(LogFormat::Combined));
    assert_eq!(
        format("access-log a.log format=common\n"),
        Some(LogFormat::Common)
    );
    assert_eq!(
        format("access-log a.log format=json\n"),
        Some(LogFormat::Json)
    );
    assert_eq!(
        format("access-log a.log format=json format=combined\n"),
        Some(LogFormat::Combined)
    );
    assert_eq!(format("access-log a.log\naccess-log off\n"), None);
    assert_eq!(
        errors("access-log a.log format=xml\n"),
        ["1:18: format must be `combined`, `common` or `json`"]
    );
}

/// The file settings resolve against `root`; `error-log stderr` names no file at all.
#[test]
fn error_log_pid_file_and_chroot_name_their_paths() {
    let c = ok("error-log logs/error.log\npid-file /run/weir.pid\nchroot jail\n");
    assert_eq!(
        c.error_log.as_deref(),
        Some(Path::new("/etc/weir/logs/error.log"))
    );
    assert_eq!(c.pid_file.as_deref(), Some(Path::new("/run/weir.pid")));
    assert_eq!(c.chroot.as_deref(), Some(Path::new("/etc/weir/jail")));
    assert_eq!(ok("error-log a.log\nerror-log stderr\n").error_log, None);
}

#[test]
fn listing_can_be_turned_off_again() {
    assert!(!ok("listing on\nlisting off\n").listing);
}

#[test]
fn a_listen_line_takes_only_nocache_and_each_address_once() {
    assert_eq!(
        errors("listen 127.0.0.1:1 cached\nlisten 127.0.0.1:2\nlisten 127.0.0.1:2\n"),
        [
            "1:20: expected `nocache`",
            "3:8: 127.0.0.1:2 is already listed",
        ]
    );
}

#[test]
fn cache_off_takes_no_options() {
    assert_eq!(
        errors("cache off max-file=1K\n"),
        ["1:11: `cache off` takes no options"]
    );
    assert_eq!(ok("cache 1M\ncache off\n").cache, None);
}

#[test]
fn every_redirect_status_is_kept() {
    for status in [301, 302, 303, 307, 308] {
        let c = ok(&format!("redirect /a /b {status}\n"));
        assert!(
            matches!(&c.rules[0].action, Action::Redirect { status: s, .. } if *s == status),
            "{status}"
        );
    }
    assert!(matches!(
        &ok("redirect /a /b\n").rules[0].action,
        Action::Redirect { status: 302, .. }
    ));
}

/// The URL goes out as a `Location` field, where a blank or control character would
/// break the response head.
#[test]
fn a_redirect_url_with_a_blank_or_control_character_is_refused() {
    assert_eq!(
        errors("redirect /a \"/b c\"\nredirect /a \"/b\tc\"\n"),
        [
            "1:13: a URL cannot contain blanks or control characters",
            "2:13: a URL cannot contain blanks or control characters",
        ]
    );
}

#[test]
fn fail_keeps_any_client_or_server_error_status() {
    for status in [400, 404, 599] {
        let c = ok(&format!("fail /a {status}\n"));
        assert!(
            matches!(&c.rules[0].action, Action::Fail { status: s, .. } if *s == status),
            "{status}"
        );
    }
    assert_eq!(
        errors("fail /a 399\nfail /a 600\n"),
        [
            "1:9: the status of `fail` is a number from 400 to 599",
            "2:9: the status of `fail` is a number from 400 to 599",
        ]
    );
}

/// The realm is sent inside a quoted string of `WWW-Authenticate`.
#[test]
fn a_protect_rule_keeps_its_realm_and_sorts_allow_from_deny() {
    let c = ok("protect /a/* realm=staff allow=10.0.0.0/8,::1 deny=10.1.0.0/16\n");
    let Action::Protect { protection, .. } = &c.rules[0].action else {
        panic!("not a protect rule: {:?}", c.rules[0].action);
    };
    assert_eq!(protection.realm, "staff");
    assert_eq!(
        protection.allow,
        [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap()
        ]
    );
    assert_eq!(protection.deny, [Cidr::parse("10.1.0.0/16").unwrap()]);
    assert_eq!(
        errors("protect /a/* allow=::1 realm=\"a\\\"b\"\nprotect /a/* allow=::1 realm=\"a\tb\"\n"),
        [
            "1:24: a realm cannot contain `\"` or control characters",
            "2:24: a realm cannot contain `\"` or control characters",
        ]
    );
}

/// A header name is an RFC 9110 token; a value may hold a tab but no other control.
#[test]
fn a_header_rule_checks_its_name_and_value() {
    let c = ok("header /a X-A \"a\tb\"\n");
    assert!(matches!(
        &c.rules[0].action,
        Action::Header { name, value, .. } if name == "X-A" && value == "a\tb"
    ));
    assert_eq!(
        errors("header /a \"\" v\nheader /a X-A \"a\u{1}b\"\nheader /a X(A v\n"),
        [
            "1:11: not a valid header field name",
            "2:15: a header value cannot contain control characters",
            "3:11: not a valid header field name",
        ]
    );
}

#[test]
fn a_media_type_is_two_tokens_around_a_slash() {
    assert!(is_media_type("text/html"));
    assert!(is_media_type("text/html; charset=utf-8"));
    assert!(is_media_type("application/vnd.api+json"));
    for bad in ["text", "text/", "/html", "te xt/html", "text/ht(ml"] {
        assert!(!is_media_type(bad), "{bad}");
    }
    assert!(matches!(
        &ok("presentation text/markdown md.cgi\n").rules[0].action,
        Action::Presentation { mime, .. } if mime == "text/markdown"
    ));
    assert_eq!(
        errors("presentation markdown md.cgi\n"),
        ["1:14: not a media type (expected TYPE/SUBTYPE)"]
    );
}

#[test]
fn service_names_lists_the_declared_services_in_order() {
    let c = ok("service b connect=unix:/b\nservice a connect=unix:/a\n");
    assert_eq!(service_names(&c), ["a", "b"]);
}

/// A multiplexing FastCGI program can take more connections than it has processes.
#[test]
fn a_spawned_service_keeps_its_own_connection_count() {
    let c = ok("service a spawn=x processes=2 connections=5\n");
    assert!(matches!(
        &c.services["a"],
        Service::Spawn {
            processes: 2,
            connections: 5,
            ..
        }
    ));
}

#[test]
fn a_host_name_gets_one_section_only() {
    assert_eq!(
        errors("host a B\nhost b\nhost c c\n"),
        [
            "2:6: host `b` already has a section",
            "3:8: host `c` already has a section",
        ]
    );
}

#[test]
fn a_tcp_service_address_needs_a_host() {
    assert_eq!(
        errors("service a connect=:9000\n"),
        ["1:11: expected connect=unix:PATH or connect=HOST:PORT"]
    );
}

/// The caret under an unterminated string runs from the quote to the end of the line.
#[test]
fn an_unterminated_string_is_underlined_to_the_end_of_the_line() {
    let e = lex::words("pass \"/a b").unwrap_err();
    assert_eq!((e.col, e.width), (6, 5));
}

/// Generation 1 keeps the plain socket name, so a configuration never reloaded and one
/// whose service has never changed agree on where the socket is.
#[test]
fn a_spawn_socket_names_its_generation_only_after_the_first() {
    let mut c = ok("service a spawn=x\n");
    c.run_dir = "/run/weir".into();
    assert_eq!(c.spawn_socket("a"), Path::new("/run/weir/a.sock"));
    c.spawn_generations.insert("a".into(), 1);
    assert_eq!(c.spawn_socket("a"), Path::new("/run/weir/a.sock"));
    c.spawn_generations.insert("a".into(), 2);
    assert_eq!(c.spawn_socket("a"), Path::new("/run/weir/a.2.sock"));
    c.spawn_generations.insert("a".into(), 3);
    assert_eq!(c.spawn_socket("a"), Path::new("/run/weir/a.3.sock"));
}

/// A file saved with CRLF line ends parses as if it had none: `\r` separates words.
#[test]
fn a_carriage_return_separates_words() {
    let w = lex::words("pass\r/a\r").unwrap();
    assert_eq!(
        w.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
        ["pass", "/a"]
    );
}

#[test]
fn service_connections_reports_each_services_own_count() {
    let c = ok("service a spawn=x processes=3\nservice b connect=unix:/b connections=2\n");
    assert_eq!(c.service_connections("a"), 3);
    assert_eq!(c.service_connections("b"), 2);
    assert_eq!(c.service_connections("ghost"), 0);
}

/// Core state holds the configuration by generation: two generations differ even with the
/// same text, and one generation equals and hashes the same as itself.
#[test]
fn config_refs_compare_and_hash_by_generation() {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let (one, two) = (
        crate::config::ConfigRef::new(1, ok("")),
        crate::config::ConfigRef::new(2, ok("")),
    );
    assert_eq!(one, one.clone());
    assert_ne!(one, two);
    // Fixed keys: the verdict is the same on every run, not a 2^-64 chance.
    let s = BuildHasherDefault::<DefaultHasher>::default();
    assert_eq!(s.hash_one(&one), s.hash_one(one.clone()));
    assert_ne!(s.hash_one(&one), s.hash_one(&two));
    assert_eq!((one.generation(), two.generation()), (1, 2));
}
