//! Reload (SIGHUP) end to end: the real binary's configuration file is rewritten and the
//! process signalled, while clients keep talking to it.
//!
//! What a client must never see is a failed request: every request sent while reloads
//! happen — on kept-alive connections and on a new connection each — is answered whole,
//! by the old configuration or the new one. A request in flight across a reload (a slow
//! CGI script) finishes under the configuration it started with; an idle kept-alive
//! connection stays open and its next request follows the new one; a file with errors
//! changes nothing (and says so as `FILE:LINE:COL: error: …`); a service the file gains
//! starts; and reloading many times does not make the process grow.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{request, Client, Expect, Weir};

/// The configuration file the harness wrote for `weir`.
fn conf_path(weir: &Weir) -> PathBuf {
    weir.docs.base().join("weir.conf")
}

/// Rewrites the configuration (with `{root}` filled in) and sends SIGHUP; returns once the
/// error log has said `generation N` (or, for a bad file, that it kept the old one).
fn reload(weir: &mut Weir, conf: &str, expect: &str) {
    let text = conf.replace("{root}", &weir.docs.root().display().to_string());
    fs::write(conf_path(weir), text).expect("rewrite weir.conf");
    let before = weir.stderr().matches(expect).count();
    weir.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while weir.stderr().matches(expect).count() <= before {
        assert!(
            Instant::now() < deadline,
            "no {expect:?} after SIGHUP; stderr:\n{}",
            weir.stderr()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn install(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write a script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

const GEN_A: &str = "header /* X-Gen a\npass /* {root}/*\n";
const GEN_B: &str = "header /* X-Gen b\npass /* {root}/*\n";

#[test]
fn fifty_reloads_under_load_fail_no_request() {
    let mut weir = Weir::start_with_config(GEN_A);
    let addr = weir.addr;
    let body = weir.docs.bytes("hello.txt");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for kept_alive in [true, true, false, false] {
        let (stop, served, body) = (Arc::clone(&stop), Arc::clone(&served), body.clone());
        clients.push(thread::spawn(move || {
            let mut seen = [0usize; 2];
            let mut c = Client::connect(addr);
            // Bounded: the reloads take about two seconds.
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if !kept_alive {
                    c = Client::connect(addr);
                }
                let r = c.get("/hello.txt");
                r.assert_status(200);
                assert_eq!(r.body, body, "a whole body");
                match r.header("x-gen") {
                    Some("a") => seen[0] += 1,
                    Some("b") => seen[1] += 1,
                    other => panic!("X-Gen {other:?}: {}", r),
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            seen
        }));
    }
    for i in 0..50 {
        let conf = if i % 2 == 0 { GEN_B } else { GEN_A };
        reload(&mut weir, conf, &format!("(generation {})", i + 2));
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let mut both = [0usize; 2];
    for c in clients {
        let seen = c
            .join()
            .expect("a client thread failed (see its panic above)");
        both[0] += seen[0];
        both[1] += seen[1];
    }
    assert!(
        both[0] > 0 && both[1] > 0,
        "both generations answered: {both:?}"
    );
    assert!(served.load(Ordering::Relaxed) >= 100, "{served:?} requests");
    weir.assert_running();
}

#[test]
fn a_slow_cgi_request_spans_a_reload_and_ends_under_its_own_rules() {
    let conf = "exec /cgi-bin/* {root}/cgi-bin/*\npass /* {root}/*\n";
    let mut weir = Weir::start_with_config(conf);
    install(
        &weir.docs.root().join("cgi-bin/slow"),
        "#!/bin/sh\nsleep 1\nprintf 'Content-Type: text/plain\\n\\nslow and whole\\n'\n",
    );
    let mut c = weir.connect();
    c.send(request("GET", "/cgi-bin/slow", ""));
    thread::sleep(Duration::from_millis(200));
    reload(
        &mut weir,
        "fail /cgi-bin/* 410\npass /* {root}/*\n",
        "(generation 2)",
    );
    let r = c.read_response(Expect::Body);
    r.assert_status(200);
    assert_eq!(r.body, b"slow and whole\n");
    // The connection stayed open, and its next request follows the new file.
    c.send(request("GET", "/cgi-bin/slow", ""));
    c.read_response(Expect::Body).assert_status(410);
}

#[test]
fn an_idle_kept_alive_connection_stays_open_across_a_reload() {
    let mut weir = Weir::start_with_config(GEN_A);
    let mut c = weir.connect();
    assert_eq!(c.get("/hello.txt").header("x-gen"), Some("a"));
    reload(&mut weir, GEN_B, "(generation 2)");
    // Written at once on the same connection: nginx would have closed it.
    let r = c.get("/hello.txt");
    r.assert_status(200);
    assert_eq!(r.header("x-gen"), Some("b"));
}

#[test]
fn a_file_with_errors_changes_nothing() {
    let mut weir = Weir::start_with_config(GEN_A);
    let mut c = weir.connect();
    reload(
        &mut weir,
        "header /* X-Gen b\npass /* {root}/*\nbogus line\n",
        "still serving generation 1",
    );
    let name = conf_path(&weir).display().to_string();
    let err = weir.stderr();
    assert!(
        err.contains(&format!("{name}:3:1: error: unknown directive `bogus`")),
        "{err}"
    );
    assert_eq!(c.get("/hello.txt").header("x-gen"), Some("a"));
    assert_eq!(weir.connect().get("/hello.txt").header("x-gen"), Some("a"));
    // Mended, it takes effect.
    reload(&mut weir, GEN_B, "(generation 2)");
    assert_eq!(c.get("/hello.txt").header("x-gen"), Some("b"));
}

#[test]
fn what_needs_a_restart_keeps_its_running_value_and_says_so() {
    let mut weir = Weir::start_with_config(GEN_A);
    reload(
        &mut weir,
        &format!("user nobody\nworkers 7\n{GEN_B}"),
        "(generation 2)",
    );
    let err = weir.stderr();
    assert!(
        err.contains("SIGHUP: user changed; that takes a restart"),
        "{err}"
    );
    // Still on its address, with the rest of the new file in force.
    assert_eq!(weir.connect().get("/hello.txt").header("x-gen"), Some("b"));
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn reloading_many_times_does_not_grow_the_process() {
    let mut weir = Weir::start_with_config(GEN_A);
    let mut c = weir.connect();
    let mut cycle = |weir: &mut Weir, from: usize, n: usize| {
        for i in from..from + n {
            let conf = if i % 2 == 0 { GEN_B } else { GEN_A };
            reload(weir, conf, &format!("(generation {})", i + 2));
            c.get("/hello.txt").assert_status(200);
        }
    };
    cycle(&mut weir, 0, 40);
    let warm = rss_kib(weir.pid());
    cycle(&mut weir, 40, 160);
    let after = rss_kib(weir.pid());
    // Old generations are let go once no request holds them: 160 more reloads may not
    // cost more than noise (a generation that leaked would cost kilobytes each).
    assert!(
        after <= warm + 512,
        "RSS grew from {warm} KiB to {after} KiB over 160 reloads"
    );
}

#[test]
fn a_service_the_file_gains_starts_on_reload() {
    let php = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("php-cgi").is_file()));
    if !php {
        eprintln!("note: php-cgi is not on PATH; skipping the PHP part of the reload tests");
        return;
    }
    let mut weir = Weir::start_with_config("pass /* {root}/*\n");
    fs::write(
        weir.docs.root().join("hi.php"),
        "<?php echo 'php ', $_GET['n'] ?? '-', \"\\n\";",
    )
    .expect("write hi.php");
    // Without the service, the file is a document.
    let r = weir.connect().get("/hi.php?n=1");
    r.assert_status(200);
    assert!(r.body.starts_with(b"<?php"));
    reload(
        &mut weir,
        "service php spawn=\"php-cgi\"\nexec /*.php service=php {root}/*.php\npass /* {root}/*\n",
        "(generation 2)",
    );
    let r = weir.connect().get("/hi.php?n=2");
    r.assert_status(200);
    assert_eq!(r.body, b"php 2\n");
}

/// Runs the weir binary with `args`; returns (exit code, stderr).
fn weir_cmd(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .output()
        .expect("run weir");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn weir_reload_and_stop_signal_the_weir_named_by_the_pid_file() {
    let base = crate::support::TempDir::new("pidfile");
    let pid_file = base.path().join("weir.pid");
    let conf = |gen: &str| {
        format!(
            "pid-file {}\nheader /* X-Gen {gen}\npass /* {{root}}/*\n",
            pid_file.display()
        )
    };
    let mut weir = Weir::start_with_config(&conf("a"));
    let written = fs::read_to_string(&pid_file).expect("the pid file was written");
    assert_eq!(written.trim(), weir.pid().to_string());
    let file = conf_path(&weir);
    let file = file.to_str().expect("a UTF-8 path");
    let root = weir.docs.root().display().to_string();

    // A file with errors: reported, nothing signalled.
    fs::write(
        file,
        format!("{}bogus\n", conf("b").replace("{root}", &root)),
    )
    .unwrap();
    let (code, err) = weir_cmd(&["reload", "-c", file]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{file}:4:1: error: unknown directive `bogus`")),
        "{err}"
    );
    assert!(!weir.stderr().contains("SIGHUP"), "{}", weir.stderr());

    fs::write(file, conf("b").replace("{root}", &root)).unwrap();
    let (code, err) = weir_cmd(&["reload", "-c", file]);
    assert_eq!(code, 0, "{err}");
    weir.stderr_containing("(generation 2)");
    assert_eq!(weir.connect().get("/hello.txt").header("x-gen"), Some("b"));

    let (code, err) = weir_cmd(&["stop", "-c", file]);
    assert_eq!(code, 0, "{err}");
    let status = weir
        .wait_exit(Duration::from_secs(5))
        .expect("weir stopped");
    assert!(status.success(), "{status}");
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let (code, err) = weir_cmd(&["stop", "-c", file]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read the pid file"), "{err}");
}

/// A loopback port nobody listens on at the moment.
fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

#[test]
fn listen_lines_added_and_removed_take_effect_and_a_port_in_use_refuses_the_reload() {
    let base = crate::support::TempDir::new("relisten");
    let root = base.path().join("root");
    fs::create_dir_all(&root).expect("mkdir root");
    fs::write(root.join("hello.txt"), "hello\n").expect("write hello.txt");
    let (p1, p2) = (unused_port(), unused_port());
    let conf = base.path().join("weir.conf");
    let text = |port: u16, gen: &str| {
        format!(
            "listen 127.0.0.1:{port}\nheader /* X-Gen {gen}\npass /* {}/*\n",
            root.display()
        )
    };
    fs::write(&conf, text(p1, "a")).expect("write weir.conf");
    let stderr = base.path().join("stderr");
    /// Stops the weir this test started, by its PID, however the test ends.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut weir = Stop(
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--workers", "2", "-c"])
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("start weir"),
    );
    let pid = weir.0.id();
    let log = || fs::read_to_string(&stderr).unwrap_or_default();
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !log().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?}:\n{}", log());
            thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("serving");
    assert!(weir.0.try_wait().expect("try_wait").is_none(), "{}", log());
    let hup = || {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
    };
    let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let get = |p: u16| Client::connect(addr(p)).get("/hello.txt");
    assert_eq!(get(p1).header("x-gen"), Some("a"));

    fs::write(&conf, text(p2, "b")).expect("rewrite");
    hup();
    wait_for("(generation 2)");
    assert_eq!(get(p2).header("x-gen"), Some("b"));
    assert!(
        std::net::TcpStream::connect(addr(p1)).is_err(),
        "the removed address still accepts"
    );

    // A port someone else holds: the reload is refused whole, the rest of it too.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let p3 = holder.local_addr().expect("addr").port();
    fs::write(&conf, text(p3, "c")).expect("rewrite");
    hup();
    wait_for("still serving generation 2");
    assert!(
        log().contains(&format!("cannot listen on 127.0.0.1:{p3}")),
        "{}",
        log()
    );
    assert_eq!(get(p2).header("x-gen"), Some("b"));
    drop(holder);
}

/// Waits (bounded) until `path` holds `needle`; returns its text.
fn file_containing(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} does not contain {needle:?}:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_logs_follow_the_file_on_reload() {
    let base = crate::support::TempDir::new("relog");
    let (a, b) = (base.path().join("a.log"), base.path().join("logs/b.log"));
    let err = base.path().join("errors.log");
    let conf = |access: &str, error: &str| format!("{access}\n{error}\npass /* {{root}}/*\n");
    // No access log at first; then one; then another path (and an error log); then none.
    let mut weir = Weir::start_with_config(&conf("", ""));
    weir.connect().get("/hello.txt?zero").assert_status(200);
    reload(
        &mut weir,
        &conf(&format!("access-log {}", a.display()), ""),
        "(generation 2)",
    );
    weir.connect().get("/hello.txt?one").assert_status(200);
    file_containing(&a, "GET /hello.txt?one ");
    let text = conf(
        &format!("access-log {} format=json", b.display()),
        &format!("error-log {}", err.display()),
    )
    .replace("{root}", &weir.docs.root().display().to_string());
    fs::write(conf_path(&weir), text).expect("rewrite weir.conf");
    weir.signal("HUP");
    // The error log moved: the reload's own line goes to the new file.
    file_containing(&err, "(generation 3)");
    weir.connect().get("/hello.txt?two").assert_status(200);
    let moved = file_containing(&b, "/hello.txt?two");
    assert!(moved.starts_with('{'), "JSON lines: {moved}");
    let first = fs::read_to_string(&a).expect("a.log");
    assert!(
        !first.contains("?two") && !first.contains("?zero"),
        "each line in exactly one file: {first}"
    );
    reload(&mut weir, &conf("", ""), "(generation 4)");
    weir.connect().get("/hello.txt?three").assert_status(200);
    weir.stderr_containing("(generation 4)");
    thread::sleep(Duration::from_millis(300));
    assert!(!fs::read_to_string(&b).expect("b.log").contains("?three"));
}
