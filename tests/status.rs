//! The `status` page through the binary: it counts the whole server — every worker, not the
//! one that happened to answer — and lists each service with its state, processes and
//! restarts, as text, JSON and the Prometheus text format.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Client, Weir};

fn php_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("php-cgi").is_file()))
}

/// `/status` in `format`, as text.
fn status(weir: &Weir, query: &str) -> String {
    let r = weir.connect().get(&format!("/status{query}"));
    r.assert_status(200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    String::from_utf8(r.body).expect("UTF-8")
}

/// The number after `key` in a line of `text` (`key 12` or `key: 12`).
fn value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn the_status_page_counts_every_worker_and_lists_the_services() {
    let php = php_on_path();
    let conf = if php {
        "service php spawn=\"php-cgi\" processes=2\nservice app connect=127.0.0.1:9\n\
         exec /*.php service=php {root}/*.php\nstatus /status\npass /* {root}/*\n"
    } else {
        "service app connect=127.0.0.1:9\nstatus /status\npass /* {root}/*\n"
    };
    let weir = Weir::start_with_config_and_workers(conf, 2);
    // Forty requests, each on a new connection: the kernel spreads them over both workers.
    for _ in 0..40 {
        Client::connect(weir.addr)
            .get("/hello.txt")
            .assert_status(200);
    }
    let text = status(&weir, "");
    assert!(text.starts_with("weir status (whole server)\n"), "{text}");
    assert_eq!(value(&text, "workers"), 2, "{text}");
    // The forty, and this request itself (each worker counted, whichever answers).
    assert_eq!(value(&text, "requests"), 41, "{text}");
    assert_eq!(value(&text, "responses_2xx"), 40, "{text}");
    assert!(text.contains("service app: remote"), "{text}");

    let prom = status(&weir, "?format=prometheus");
    assert!(
        prom.contains("# TYPE weir_requests_total counter\n"),
        "{prom}"
    );
    assert_eq!(value(&prom, "weir_requests_total"), 42, "{prom}");
    assert_eq!(
        value(&prom, "weir_responses_total{class=\"2xx\"}"),
        41,
        "{prom}"
    );
    assert_eq!(
        value(&prom, "weir_service_up{service=\"app\"}"),
        1,
        "{prom}"
    );

    let json = status(&weir, "?format=json");
    assert!(
        json.contains("\"scope\":\"server\",\"workers\":2,"),
        "{json}"
    );
    assert!(json.contains("\"requests\":43"), "{json}");

    if !php {
        eprintln!("note: php-cgi is not on PATH; the service part of the status test is skipped");
        return;
    }
    fs::write(weir.docs.root().join("p.php"), "<?php echo getmypid();").expect("p.php");
    // The service is up once both processes are.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = status(&weir, "");
        let line = text
            .lines()
            .find(|l| l.starts_with("service php: "))
            .unwrap_or_else(|| panic!("no php line:\n{text}"))
            .to_string();
        if line.matches(" up").count() == 3 || Instant::now() > deadline {
            break line;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(line.starts_with("service php: up, processes ["), "{line}");
    let pid: u32 = String::from_utf8(weir.connect().get("/p.php").body)
        .expect("a pid")
        .trim()
        .parse()
        .expect("a number");
    assert!(line.contains(&format!("{pid} up")), "{pid} not in {line}");
    let prom = status(&weir, "?format=prometheus");
    assert_eq!(
        value(&prom, "weir_service_processes{service=\"php\"}"),
        2,
        "{prom}"
    );
    assert_eq!(
        value(&prom, "weir_service_state{service=\"php\",state=\"up\"}"),
        1,
        "{prom}"
    );
    assert_eq!(
        value(&prom, "weir_service_restarts_total{service=\"php\"}"),
        0
    );

    // A process killed is relaunched, and the page says so.
    kill9(pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let prom = status(&weir, "?format=prometheus");
        if value(&prom, "weir_service_restarts_total{service=\"php\"}") == 1
            && value(&prom, "weir_service_processes{service=\"php\"}") == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "no restart shown:\n{prom}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL to one process (a php-cgi this test's server started).
fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {pid}");
}
