//! Hostile clients, through the real binary on loopback: a flood of idle connections at the
//! connection limit, bodies nobody wants, slowloris, huge header sections, running out of
//! descriptors, an access log on a full disk, a slow disk (made slow on purpose through the
//! binary's test seam, `io/src/fault.rs`) and a FIFO in the document root. Each attack is
//! bounded in count and time,
//! and where it matters a normal client's latency is measured alongside and printed (the
//! figures in README.md, "Under attack", come from these lines: run with `--nocapture`).
//!
//! A test binary of its own (`e2e_attack`), so that its thousands of sockets and its
//! latency figures do not meet the other end-to-end tests, which run in parallel; within
//! it the tests take turns (`serial`).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use support::{Start, TempDir, Weir};

/// One attack at a time: each measures latency and memory.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------

/// Raises this process's descriptor limit (soft, and hard if need be: the tests run as
/// root) to at least `want`; returns the soft limit in force.
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return want;
    }
    let soft = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
        return lim.rlim_max;
    }
    lim.rlim_cur
}

/// The process's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Descriptors the process has open.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first, utime the
    // 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf reads nothing of ours.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// The `p`th percentile (0–100) of `v`, sorted in place.
fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One GET of `/hello.txt` on a new connection (`Connection: close`): its time, from
/// `connect` to the end of the response, or what went wrong.
fn timed_get(addr: SocketAddr) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .map_err(|e| format!("read after {} bytes: {e}", got.len()))?;
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200 ") || !text.contains("\r\nContent-Length: 1024\r\n") {
        return Err(format!(
            "not a 200 with the file: {:?}",
            &text[..text.len().min(200)]
        ));
    }
    let body = got.len() - text.find("\r\n\r\n").map_or(got.len(), |i| i + 4);
    if body != 1024 {
        return Err(format!("a body of {body} bytes, not 1024"));
    }
    Ok(elapsed)
}

/// A normal client beside an attack: `count` GETs, each on a new connection, `gap` apart.
struct Prober {
    thread: thread::JoinHandle<(Vec<Duration>, Vec<String>)>,
}

impl Prober {
    fn start(addr: SocketAddr, count: usize, gap: Duration, go: Arc<AtomicBool>) -> Prober {
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !go.load(Ordering::Acquire) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            let (mut times, mut failures) = (Vec::new(), Vec::new());
            for i in 0..count {
                match timed_get(addr) {
                    Ok(t) => times.push(t),
                    Err(e) => failures.push(format!("GET #{i}: {e}")),
                }
                thread::sleep(gap);
            }
            (times, failures)
        });
        Prober { thread }
    }

    /// Waits for the GETs; asserts every one was a 200; prints and returns the p50 and p99.
    fn finish(self, what: &str) -> (Duration, Duration) {
        let (mut times, failures) = self.thread.join().expect("the prober thread");
        let n = times.len() + failures.len();
        assert!(
            failures.is_empty(),
            "{what}: {} of {n} normal GETs failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        let p50 = percentile(&mut times, 50.0);
        let p99 = percentile(&mut times, 99.0);
        let max = times.last().copied().unwrap_or_default();
        println!(
            "ATTACK {what}: normal client {n} GETs, all 200; latency p50 {:.2} ms, p99 {:.2} ms, \
             max {:.2} ms",
            ms(p50),
            ms(p99),
            ms(max)
        );
        (p50, p99)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The whole-server status page, as `key: value` lines (the configuration has
/// `status /status`).
fn status_page(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// A counter from the status page.
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on the status page:\n{page}"))
}

// ---------------------------------------------------------------------------------------
// Raw clients driven by one thread (non-blocking sockets)
// ---------------------------------------------------------------------------------------

/// An attacking connection: what it received, and when the answer and the close came.
struct Raw {
    s: TcpStream,
    got: Vec<u8>,
    answered: Option<Instant>,
    closed: Option<Instant>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        s.set_nonblocking(true).expect("non-blocking");
        Raw {
            s,
            got: Vec::new(),
            answered: None,
            closed: None,
        }
    }

    /// Writes what the socket takes now; false once the server has gone.
    fn send(&mut self, bytes: &[u8]) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match self.s.write(bytes) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => {
                self.closed.get_or_insert_with(Instant::now);
                false
            }
        }
    }

    /// Reads what has arrived; notes the first status line and the end of the stream.
    fn poll(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        while self.closed.is_none() {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    self.closed = Some(Instant::now());
                }
                Ok(n) => {
                    self.got.extend_from_slice(&buf[..n]);
                    if self.answered.is_none() && self.got.windows(4).any(|w| w == b"\r\n\r\n") {
                        self.answered = Some(Instant::now());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = Some(Instant::now());
                }
            }
        }
    }

    /// The status of the answer received, if any.
    fn status(&self) -> Option<u16> {
        let text = std::str::from_utf8(self.got.get(..12)?).ok()?;
        text.strip_prefix("HTTP/1.1 ")?.parse().ok()
    }
}

/// Whether the server still holds a connection that never sent a byte (it would have
/// closed it, not answered it).
fn still_open(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

// ---------------------------------------------------------------------------------------
// 1. A flood of idle connections at the connection limit
// ---------------------------------------------------------------------------------------

#[test]
fn a_flood_of_idle_connections_is_shed_and_a_normal_client_is_served() {
    let _turn = serial();
    const LIMIT: usize = 5_000;
    const FLOOD: usize = 20_000;
    const PROBES: usize = 200;
    // Each attacker keeps at most `room` sockets: past that it lets go of those the server
    // has closed (as a real one would), so that 20,000 connections fit under a descriptor
    // limit of 20,000 (a container may not let even root raise its hard limit).
    let have = raise_nofile(FLOOD as u64 + 2_000);
    let room = (have.saturating_sub(2_000) / 2) as usize;
    let flood = FLOOD;
    let weir = Weir::start_with_config(&format!(
        "limit connections={LIMIT}\nstatus /status\npass /* {{root}}/*\n"
    ));
    let (addr, pid) = (weir.addr, weir.pid());
    timed_get(addr).expect("a GET before the attack");
    let (rss_before, fds_before) = (rss_kib(pid), fd_count(pid));

    let opened = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let prober = Prober::start(addr, PROBES, Duration::from_millis(20), Arc::clone(&go));
    let started = Instant::now();
    let attackers: Vec<_> = (0..2)
        .map(|_| {
            let (opened, go) = (Arc::clone(&opened), Arc::clone(&go));
            thread::spawn(move || {
                let mut held = Vec::with_capacity(flood / 2);
                let mut failed = 0;
                for _ in 0..flood / 2 {
                    match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                        Ok(s) => held.push(s),
                        Err(_) => failed += 1,
                    }
                    if held.len() >= room {
                        held.retain(still_open);
                        assert!(held.len() < room, "the server holds {} of ours", held.len());
                    }
                    // The normal client starts once the server is at its limit.
                    if opened.fetch_add(1, Ordering::Relaxed) + 1 >= LIMIT {
                        go.store(true, Ordering::Release);
                    }
                }
                (held, failed)
            })
        })
        .collect();
    // Never more than the limit held, sampled while the attack goes on.
    let mut fds_max = 0;
    while attackers.iter().any(|a| !a.is_finished()) {
        fds_max = fds_max.max(fd_count(pid));
        thread::sleep(Duration::from_millis(25));
    }
    let mut held = Vec::new();
    let mut failed = 0;
    let opened = opened.load(Ordering::Relaxed);
    for a in attackers {
        let (h, f) = a.join().expect("an attacker thread");
        held.extend(h);
        failed += f;
    }
    let flood_time = started.elapsed();
    let (_, p99) = prober.finish(&format!(
        "flood of {flood} idle connections, limit connections={LIMIT}"
    ));
    fds_max = fds_max.max(fd_count(pid));

    // The attack is over but its connections are all still open on the client side.
    let rss = rss_kib(pid);
    let open_fds = fd_count(pid);
    let page = status_page(addr);
    let open = counter(&page, "connections_open");
    let shed = counter(&page, "connections_shed");
    let refused = counter(&page, "connections_refused");
    held.retain(still_open);
    println!(
        "ATTACK flood: {opened} connections opened in {:.1} s ({failed} failed to connect), \
         {} of them still open; weir holds {open} (at most {fds_max} descriptors seen, \
         {fds_before} before), shed {shed}, refused {refused}",
        flood_time.as_secs_f64(),
        held.len()
    );
    let held_conns = open_fds.saturating_sub(fds_before).max(1) as u64;
    println!(
        "ATTACK flood: weir RSS {} KiB with {held_conns} connections held ({} KiB before): \
         {} bytes per connection in all, {} bytes each above the idle server",
        rss,
        rss_before,
        rss * 1024 / held_conns,
        rss.saturating_sub(rss_before) * 1024 / held_conns
    );
    assert!(
        open <= LIMIT as u64,
        "{open} connections open, limit {LIMIT}"
    );
    assert!(
        fds_max <= fds_before + LIMIT + 64,
        "{fds_max} descriptors open at once (limit {LIMIT})"
    );
    assert!(
        shed as usize + LIMIT >= opened,
        "only {shed} shed for {opened} connections"
    );
    assert!(held.len() <= LIMIT, "{} still open", held.len());
    assert_eq!(refused, 0, "nothing busy: nothing refused");
    assert!(failed * 100 <= flood, "{failed} of {flood} connects failed");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    drop(held);
    // Once the attackers have gone, all is as before.
    timed_get(addr).expect("a GET after the attack");
}

// ---------------------------------------------------------------------------------------
// 2. Unwanted bodies
// ---------------------------------------------------------------------------------------

#[test]
fn unwanted_bodies_are_discarded_within_a_bound_then_closed() {
    let _turn = serial();
    const CLIENTS: usize = 200;
    raise_nofile(4_096);
    let weir = Weir::start();
    let addr = weir.addr;
    let go = Arc::new(AtomicBool::new(true));
    let prober = Prober::start(addr, 200, Duration::from_millis(25), go);
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| Raw::connect(addr)).collect();
    // A length within the byte bound (1 MiB): the trickle is cut by the time bound.
    let head = b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n";
    let sent_at = Instant::now();
    for c in &mut clients {
        assert!(c.send(head));
    }
    // A length beyond it: closed right after the answer, nothing read in vain.
    let mut long = Raw::connect(addr);
    assert!(long.send(b"POST /hello.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"));
    // Trickle the body, 100 bytes per client every 100 ms, until every connection is
    // closed (or 20 s have passed).
    let piece = [b'x'; 100];
    let deadline = sent_at + Duration::from_secs(20);
    while Instant::now() < deadline && clients.iter().any(|c| c.closed.is_none()) {
        for c in clients.iter_mut().chain([&mut long]) {
            c.send(&piece);
            c.poll();
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(long.status(), Some(405));
    let long_close = long.closed.expect("closed") - long.answered.expect("answered");
    let (_, p99) = prober.finish(&format!("{CLIENTS} clients trickling unwanted POST bodies"));
    let mut answer_max = Duration::ZERO;
    let mut close_max = Duration::ZERO;
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(
            c.status(),
            Some(405),
            "client {i}: {:?}",
            String::from_utf8_lossy(&c.got)
        );
        let answered = c.answered.expect("answered");
        let closed = c
            .closed
            .unwrap_or_else(|| panic!("client {i} still open after 20 s"));
        answer_max = answer_max.max(answered - sent_at);
        close_max = close_max.max(closed - answered);
    }
    println!(
        "ATTACK unwanted bodies: {CLIENTS} clients got 405 within {:.0} ms; closed at most \
         {:.2} s after it (bound: 5 s of discarding, then a lingering close); one announcing \
         10 MB closed {:.0} ms after its 405",
        ms(answer_max),
        close_max.as_secs_f64(),
        ms(long_close)
    );
    // The bounds leave room for a loaded machine (the trickle loop notices a close only
    // when it comes round, 201 connections per pass) while still telling "at once" from
    // the 5 s the discarding may take.
    assert!(long_close < Duration::from_millis(2_500), "{long_close:?}");
    assert!(
        answer_max < Duration::from_millis(2_500),
        "405 after {answer_max:?}"
    );
    assert!(
        close_max < Duration::from_secs(8),
        "closed after {close_max:?}"
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}

// ---------------------------------------------------------------------------------------
// 3. Slowloris
// ---------------------------------------------------------------------------------------

#[test]
fn slowloris_is_cut_at_the_header_timeout() {
    let _turn = serial();
    const CLIENTS: usize = 1_000;
    raise_nofile(8_192);
    let weir = Weir::start_with_config("timeout header=2s\npass /* {root}/*\n");
    let addr = weir.addr;
    let go = Arc::new(AtomicBool::new(true));
    // 200 GETs over about 6 s, all under attack: a connection cut is replaced at once, as
    // slowloris does.
    let prober = Prober::start(addr, 200, Duration::from_millis(30), go);
    let head = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    // Each connection, with the time of its first byte and how many it has sent.
    let mut clients: Vec<(Raw, Instant, usize)> = (0..CLIENTS)
        .map(|_| (Raw::connect(addr), Instant::now(), 0))
        .collect();
    let started = Instant::now();
    let (mut cut, mut answered_408, mut cut_max) = (0usize, 0usize, Duration::ZERO);
    while !prober.thread.is_finished() && started.elapsed() < Duration::from_secs(20) {
        for (c, first, sent) in &mut clients {
            c.poll();
            if let Some(closed) = c.closed {
                match c.status() {
                    Some(408) => answered_408 += 1,
                    None => {}
                    other => panic!("a slowloris connection got {other:?}"),
                }
                cut += 1;
                cut_max = cut_max.max(closed - *first);
                *c = Raw::connect(addr);
                *sent = 0;
            }
            // One byte every 500 ms.
            if *sent == 0 || first.elapsed() >= Duration::from_millis(500 * *sent as u64) {
                if *sent == 0 {
                    *first = Instant::now();
                }
                c.send(&head[*sent % head.len()..*sent % head.len() + 1]);
                *sent += 1;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let attack = started.elapsed();
    let (_, p99) = prober.finish(&format!(
        "slowloris, {CLIENTS} connections at a byte per 500 ms"
    ));
    println!(
        "ATTACK slowloris: {cut} connections cut in {:.1} s, each within {:.2} s of its first \
         byte (timeout header=2s), {answered_408} of them with a 408",
        attack.as_secs_f64(),
        cut_max.as_secs_f64()
    );
    assert!(cut >= CLIENTS, "only {cut} connections cut");
    assert!(cut_max < Duration::from_secs(4), "cut after {cut_max:?}");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}

// ---------------------------------------------------------------------------------------
// 4. Huge header sections
// ---------------------------------------------------------------------------------------

#[test]
fn huge_header_sections_get_431_and_memory_stays_bounded() {
    let _turn = serial();
    const CLIENTS: usize = 200;
    raise_nofile(4_096);
    let weir = Weir::start();
    let (addr, pid) = (weir.addr, weir.pid());
    timed_get(addr).expect("a GET first");
    let rss_before = rss_kib(pid);
    let mut head = b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n".to_vec();
    let mut i = 0;
    while head.len() < 64 * 1024 {
        head.extend_from_slice(format!("X-Pad-{i:05}: {}\r\n", "p".repeat(1000)).as_bytes());
        i += 1;
    }
    head.extend_from_slice(b"\r\n");
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| Raw::connect(addr)).collect();
    let started = Instant::now();
    let mut offsets = vec![0usize; CLIENTS];
    let mut rss_peak = 0;
    let deadline = started + Duration::from_secs(15);
    while Instant::now() < deadline && clients.iter().any(|c| c.closed.is_none()) {
        for (c, off) in clients.iter_mut().zip(&mut offsets) {
            if *off < head.len() && c.closed.is_none() {
                match c.s.write(&head[*off..]) {
                    Ok(n) => *off += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => *off = head.len(),
                }
            }
            c.poll();
        }
        rss_peak = rss_peak.max(rss_kib(pid));
        thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let rss_after = rss_kib(pid);
    for (i, c) in clients.iter().enumerate() {
        assert!(c.closed.is_some(), "client {i} still open");
        assert!(
            matches!(c.status(), Some(431 | 400)),
            "client {i}: {:?}",
            String::from_utf8_lossy(&c.got[..c.got.len().min(200)])
        );
    }
    println!(
        "ATTACK huge headers: {CLIENTS} clients sending {} KiB header sections all got 431 and \
         were closed within {:.2} s; weir RSS {rss_before} KiB before, {rss_peak} KiB at the \
         peak, {rss_after} KiB after",
        head.len() / 1024,
        elapsed.as_secs_f64()
    );
    // 200 × 32 KiB of head buffered at most, with room for the allocator's slack.
    assert!(
        rss_peak < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_peak} KiB"
    );
    timed_get(addr).expect("a GET after the attack");
}

// ---------------------------------------------------------------------------------------
// 5. Descriptors exhausted
// ---------------------------------------------------------------------------------------

#[test]
fn out_of_descriptors_weir_neither_spins_nor_stalls_for_good() {
    let _turn = serial();
    const NOFILE: u64 = 64;
    const CLIENTS: usize = 200;
    let weir = Weir::start_from(Start {
        nofile: Some(NOFILE),
        ..Start::default()
    });
    let pid = weir.pid();
    // More connections than weir may have descriptors: each sends half a request head, so
    // that none is idle (none can be closed to make room).
    let mut clients: Vec<Raw> = (0..CLIENTS).map(|_| Raw::connect(weir.addr)).collect();
    for c in &mut clients {
        c.send(b"GET /hello.txt HTTP/1.1\r\n");
    }
    thread::sleep(Duration::from_millis(500));
    let fds = fd_count(pid);
    let cpu_before = cpu_seconds(pid);
    thread::sleep(Duration::from_secs(2));
    let cpu = cpu_seconds(pid) - cpu_before;
    let log = weir.stderr();
    println!(
        "ATTACK descriptors: weir under ulimit -n {NOFILE} with {CLIENTS} connections: {fds} \
         descriptors open, {:.3} s of CPU in 2 s",
        cpu
    );
    assert!(
        log.contains("cannot accept") || fds + 4 >= NOFILE as usize,
        "weir never ran out of descriptors ({fds} open): {log}"
    );
    assert!(cpu < 0.5, "weir used {cpu:.2} s of CPU in 2 s: it spins");
    // The attackers go; weir serves again.
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match timed_get(weir.addr) {
            Ok(t) => {
                println!(
                    "ATTACK descriptors: serving again, a GET in {:.1} ms",
                    ms(t)
                );
                break;
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "still not serving 15 s after the connections closed: {e}; {}",
                weir.stderr()
            ),
        }
        thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 6. An access log on a full disk
// ---------------------------------------------------------------------------------------

/// A 64 KiB tmpfs mounted for one test, unmounted (lazily) when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// `None` (and a note) where mounting is not permitted.
    fn mount() -> Option<SmallDisk> {
        let dir = TempDir::new("fulldisk");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                println!(
                    "NOTE: cannot mount a tmpfs ({}); skipping the full-disk test",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("NOTE: cannot run mount ({e}); skipping the full-disk test");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_loses_access_log_lines_but_no_request_and_says_so() {
    let _turn = serial();
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let log = disk.path().join("access.log");
    {
        let mut weir = Weir::start_with_config(&format!(
            "access-log {}\nstatus /status\npass /* {{root}}/*\n",
            log.display()
        ));
        let addr = weir.addr;
        // About 100 bytes a line: 3,000 lines are several times what the disk holds.
        let mut c = weir.connect();
        for i in 0..3_000 {
            let r = c.get(&format!("/hello.txt?n={i}"));
            assert_eq!(r.status, 200, "request {i}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let page = loop {
            let page = status_page(addr);
            if counter(&page, "access_log_lines_lost") > 0 || Instant::now() > deadline {
                break page;
            }
            thread::sleep(Duration::from_millis(100));
        };
        let lost = counter(&page, "access_log_lines_lost");
        let err = weir.stderr_containing("lines lost");
        let text = std::fs::read(&log).expect("the access log");
        let written = text.iter().filter(|&&b| b == b'\n').count();
        println!(
            "ATTACK full disk: 3000 requests all served; the 64 KiB log holds {written} lines, \
             {lost} counted lost"
        );
        for line in err.lines().filter(|l| l.contains("access log")) {
            println!("ATTACK full disk: the error log says: {line}");
        }
        assert!(lost > 0, "{page}");
        assert!(
            err.contains("No space left on device"),
            "the error log says why: {err}"
        );
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "the log ends inside a line"
        );
        weir.assert_running();
    }
}

// ---------------------------------------------------------------------------------------
// 7. A slow disk, and a FIFO in the document root
// ---------------------------------------------------------------------------------------

/// How long each file operation on a `slow…` file (and each disk read of a `cold…` one)
/// takes in the servers below (the binary's test seam, `io/src/fault.rs`).
const SLOW_DISK: Duration = Duration::from_millis(1000);

/// `weir serve` with one worker and `file-threads` as given (`off`, or a number), on a disk
/// made slow by `WEIR_TEST_SLOW_DISK`, with `slow.txt` in its document root.
fn slow_disk(file_threads: &str) -> Weir {
    let slow = SLOW_DISK.as_millis().to_string();
    let weir = Weir::start_from(Start {
        conf: Some(&format!(
            "file-threads {file_threads}\npass /* {{root}}/*\n"
        )),
        env: &[("WEIR_TEST_SLOW_DISK", &slow)],
        ..Start::default()
    });
    std::fs::write(
        weir.docs.root().join("slow.txt"),
        b"a file on a slow disk\n",
    )
    .expect("write slow.txt");
    weir
}

/// Whether the binary has the slow-disk seam: only debug builds do (this test crate is
/// built with the same profile as the binary it runs).
fn seam_present() -> bool {
    if !cfg!(debug_assertions) {
        println!("NOTE: a release build has no slow-disk seam; skipping the slow-disk test");
    }
    cfg!(debug_assertions)
}

/// Sends a GET for `path` on a new connection and returns the socket, to read later.
fn ask(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .expect("send");
    s
}

/// Reads the whole answer; returns its status, its body, and when it ended.
fn answer(mut s: TcpStream) -> (u16, Vec<u8>, Instant) {
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read the answer");
    let ended = Instant::now();
    let status = std::str::from_utf8(&got[..got.len().min(12)])
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("not an answer: {:?}", String::from_utf8_lossy(&got)));
    let body = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |i| got[i + 4..].to_vec());
    (status, body, ended)
}

/// A slow file asked for first, `/hello.txt` 100 ms later, on one worker: when each
/// answer ended, and how long `/hello.txt` took.
fn slow_then_fast(server: &Weir, slow: &str, want: &[u8]) -> (Instant, Instant, Duration) {
    let started = Instant::now();
    let s = ask(server.addr, slow);
    thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    let f = ask(server.addr, "/hello.txt");
    // Read the quick one first: on the pool, it ends while the slow one still waits.
    let (status, body, fast_ended) = answer(f);
    assert_eq!(status, 200);
    assert_eq!(body, support::hello_bytes());
    let (status, body, slow_ended) = answer(s);
    assert_eq!(status, 200, "{slow}");
    assert!(
        body == want,
        "{slow}: a body of {} bytes differs",
        body.len()
    );
    assert!(
        slow_ended - started >= SLOW_DISK,
        "{slow} took only {:?}: the slow disk did not slow it, nothing was measured",
        slow_ended - started
    );
    (slow_ended, fast_ended, fast_ended - asked)
}

#[test]
fn a_slow_open_or_read_holds_no_other_request() {
    let _turn = serial();
    if !seam_present() {
        return;
    }
    // Inline (`file-threads off`), the slow disk holds the loop and the static file waits
    // for it: what this test would see without the pool.
    let inline = slow_disk("off");
    let want = inline.docs.bytes("slow.txt");
    let (_, _, waited) = slow_then_fast(&inline, "/slow.txt", &want);
    println!(
        "ATTACK slow disk: file-threads off: /hello.txt took {:.0} ms behind /slow.txt \
         ({} ms per file operation)",
        ms(waited),
        SLOW_DISK.as_millis()
    );
    assert!(
        waited >= SLOW_DISK / 2,
        "inline, the static file took only {waited:?}: the seam did not stall the loop"
    );
    drop(inline);

    // On the pool, it is answered while the slow open and read are still waiting.
    let pooled = slow_disk("2");
    let want = pooled.docs.bytes("slow.txt");
    let (slow_ended, fast_ended, took) = slow_then_fast(&pooled, "/slow.txt", &want);
    println!(
        "ATTACK slow disk: file-threads 2: /hello.txt took {:.1} ms, {:.0} ms before /slow.txt \
         ended",
        ms(took),
        ms(slow_ended - fast_ended)
    );
    assert!(
        fast_ended < slow_ended,
        "the static file ({took:?}) ended after the slow one: the loop waited for the disk"
    );
}

/// Drops `path` from the page cache; false (with a note) where that cannot be done or
/// checked: a file system in memory, or a kernel without `cachestat` (before 6.5).
fn evict(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).expect("open to evict");
    f.sync_all().expect("fsync");
    // SAFETY: plain integers and a live descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    let range = Range { off: 0, len: 0 };
    let mut stat = [0u64; 5];
    // SAFETY: cachestat(2) (number 451 everywhere) reads `range` and writes five u64s.
    let rc = unsafe { libc::syscall(451, f.as_raw_fd(), &range, stat.as_mut_ptr(), 0) };
    if rc != 0 || stat[0] != 0 {
        println!(
            "NOTE: cannot drop {} from the page cache here (cachestat {rc}, {} pages \
             cached); skipping the cold-file part",
            path.display(),
            stat[0]
        );
        return false;
    }
    true
}

#[test]
fn sending_a_file_that_is_not_in_the_page_cache_holds_no_other_request() {
    let _turn = serial();
    if !seam_present() {
        return;
    }
    // 2 MiB: above the cache's max-file, so it goes out with sendfile; on the pool, two
    // read-aheads of 1 MiB.
    let body: Vec<u8> = (0..2u32 << 20).map(|i| (i % 253) as u8).collect();
    for file_threads in ["off", "2"] {
        let server = slow_disk(file_threads);
        let path = server.docs.root().join("cold.bin");
        std::fs::write(&path, &body).expect("write cold.bin");
        if !evict(&path) {
            return;
        }
        let (slow_ended, fast_ended, took) = slow_then_fast(&server, "/cold.bin", &body);
        println!(
            "ATTACK slow disk: file-threads {file_threads}: /hello.txt took {:.1} ms while \
             /cold.bin was read from the disk",
            ms(took)
        );
        if file_threads == "off" {
            assert!(
                took >= SLOW_DISK / 2,
                "inline, the static file took only {took:?}: the seam did not stall the loop"
            );
        } else {
            assert!(
                fast_ended < slow_ended,
                "the static file ({took:?}) ended after the cold one: the loop waited for \
                 the disk"
            );
        }
    }
}

#[test]
fn a_fifo_in_the_document_root_is_refused_at_once() {
    let _turn = serial();
    let server = slow_disk("2");
    let root = server.docs.root();
    std::fs::create_dir_all(root.join("fifodir")).expect("mkdir");
    for fifo in ["pipe", "fifodir/index.html"] {
        let c = std::ffi::CString::new(root.join(fifo).into_os_string().into_encoded_bytes())
            .expect("no NUL in a temp path");
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(
            unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
            0,
            "mkfifo {fifo}"
        );
    }
    // Nobody ever writes to them: an open without O_NONBLOCK, or a read, would wait
    // forever (the sockets' 20 s timeout would fail the test).
    for path in ["/pipe", "/fifodir/", "/fifodir/index.html"] {
        let started = Instant::now();
        let (status, _, _) = answer(ask(server.addr, path));
        println!(
            "ATTACK fifo: {path}: {status} in {:.1} ms",
            ms(started.elapsed())
        );
        assert_eq!(status, 403, "{path}");
    }
    let (status, body, _) = answer(ask(server.addr, "/hello.txt"));
    assert_eq!((status, body), (200, support::hello_bytes()));
}
