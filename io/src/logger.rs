//! The access logger: one thread that owns the log file (OKWS's oklogd, in miniature).
//!
//! Workers hand it finished lines through a bounded queue (`queue`, checked by loom), one
//! batch per event-loop
//! turn (each line ending in a newline), so a busy worker pays one channel operation per
//! turn rather than per request. When the logger falls behind
//! and the channel is full, a worker's send blocks until there is room: the server slows
//! down rather than lose a line. The logger writes through a buffer, flushes whenever no
//! line has arrived for `FLUSH_IDLE` (so `tail -f` sees lines promptly), and flushes and
//! ends when the last worker has dropped its sender: on shutdown every line reaches the
//! file before weir exits.
//!
//! Reopening (SIGUSR1, after logrotate has renamed the file): the signal thread sets the
//! logger's `Reopen` flag, and the logger looks at it whenever a batch arrives (before
//! writing it) and at every idle timeout, so it acts within `FLUSH_IDLE` even when no line
//! comes. A reload that changes `access-log` asks the same way to move to the new path
//! (`Reopen::move_to`). It opens the path
//! again (created if missing, appending; under `chroot DIR` with DIR stripped, see
//! `log::open_append`), flushes what it holds to the old file, and writes every later
//! batch to the new one. The logger is the only writer and a batch is never split, so
//! each line lands in exactly one of the two files: whatever it received before the
//! switch in the old one, the rest in the new one. Should the old file refuse the final
//! flush, the bytes it did not take go to the new file rather than be lost. If the open
//! fails (after `user` has dropped root, a root-owned directory refuses the new file), the
//! logger says so in the error log and goes on with the old file.
//!
//! Lines that cannot be written (a full disk, a quota, an I/O error): requests are served
//! all the same, and the logger never holds more than its buffer. What the file refuses is
//! dropped and counted — `access_log_lines_lost` on the status page — and the error log
//! says so at once, then once per [`LOSS_REPORT`] (a minute) with the number lost since,
//! while the losses go on, and once more when writing works again. The file keeps whole
//! lines only: a write cut short inside a line is cut out of the file again (`set_len`),
//! or, should that fail, ended by a newline before the next write, so that a lost line can
//! never glue itself to the next one. A line counts as lost unless it reached the file
//! whole.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::log::{log_error, open_append};
use crate::queue::{self, Receiver, RecvError};
use crate::sync::Mutex;

/// Batches buffered between the workers and the logger before workers wait.
pub const CHANNEL_BATCHES: usize = 1024;
/// Flush after this long without a new line; also the longest a reopen waits.
pub const FLUSH_IDLE: Duration = Duration::from_millis(200);
/// The logger's write buffer.
const BUFFER: usize = 64 * 1024;

/// A worker's handle on the logger: it sends batches of newline-terminated lines.
pub type LogSender = queue::Sender<String>;

/// Asks the logger to reopen its file (SIGUSR1), or to move to another path (a reload);
/// any thread may hold a clone. The request and its path live under one lock, so a path
/// can never be seen without its request or the other way round (checked by loom, below).
#[derive(Clone, Debug)]
pub struct Reopen(crate::sync::Arc<Mutex<Asked>>);

/// What the logger has been asked since it last looked.
#[derive(Debug)]
struct Asked {
    reopen: bool,
    /// A new path to move to, set by a reload.
    path: Option<PathBuf>,
}

impl Default for Reopen {
    fn default() -> Reopen {
        Reopen(crate::sync::Arc::new(Mutex::new(Asked {
            reopen: false,
            path: None,
        })))
    }
}

impl Reopen {
    fn asked(&self) -> impl std::ops::DerefMut<Target = Asked> + '_ {
        // Two plain fields, written whole: a panicking holder leaves nothing half-done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The logger will reopen its path within `FLUSH_IDLE`; several requests before it
    /// does are one reopen.
    pub fn request(&self) {
        self.asked().reopen = true;
    }

    /// The logger will move to `path` within `FLUSH_IDLE` (what it holds goes to the old
    /// file first; every later line to the new one, as for a reopen).
    pub fn move_to(&self, path: PathBuf) {
        let mut asked = self.asked();
        asked.reopen = true;
        asked.path = Some(path);
    }

    /// Whether a reopen was asked for since the last call (which clears the request), and
    /// the path to move to if a reload gave one.
    fn take(&self) -> Option<Option<PathBuf>> {
        let mut asked = self.asked();
        std::mem::take(&mut asked.reopen).then(|| asked.path.take())
    }
}

/// The running logger: the sender the workers clone, its thread, and its reopen flag.
pub struct Logger {
    pub tx: LogSender,
    pub thread: JoinHandle<()>,
    #[cfg_attr(not(test), allow(dead_code))]
    pub reopen: Reopen,
}

/// Opens (creating, appending) the log file and starts the logger thread, with a `Reopen`
/// and a count of lost lines of its own (the server uses `start_with`, to share them
/// across reloads).
#[cfg(test)]
pub fn start(path: &Path) -> io::Result<Logger> {
    start_with(path, Reopen::default(), Arc::default())
}

/// `start`, with a `Reopen` handle that outlives this logger (SIGUSR1 reaches whichever
/// logger a reload started) and the count of lines lost (see "Lines that cannot be
/// written"), which the status page shows.
pub fn start_with(path: &Path, reopen: Reopen, lost: Arc<AtomicU64>) -> io::Result<Logger> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = open_append(path)?;
    let (tx, rx) = queue::bounded(CHANNEL_BATCHES);
    let path = path.to_path_buf();
    let flag = reopen.clone();
    let thread = thread::Builder::new()
        .name("weir-access-log".into())
        .spawn(move || run(file, path, &rx, &flag, Loss::new(lost)))?;
    Ok(Logger { tx, thread, reopen })
}

fn run(file: File, mut path: PathBuf, rx: &Receiver<String>, reopen: &Reopen, mut loss: Loss) {
    let mut out = Out::new(file);
    loop {
        let received = rx.recv_timeout(FLUSH_IDLE);
        // A reopen or a move asked for before this batch arrived is carried out first, so
        // that a line sent after the request lands in the new file.
        if let Some(moved) = reopen.take() {
            // A new path may need its directory made, as at start-up; a reopen of the same
            // path does not (a directory that went away is reported, not re-made).
            let made = moved.is_some();
            let target = moved.unwrap_or_else(|| path.clone());
            if made {
                if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(dir);
                }
            }
            if out.switch(&path, &target, &mut loss) {
                path = target;
            }
        }
        match received {
            Ok(batch) => out.push(batch.as_bytes(), &path, &mut loss),
            Err(RecvError::Timeout) => out.flush(&path, &mut loss),
            Err(RecvError::Disconnected) => break,
        }
        loss.summarise(&path);
    }
    out.flush(&path, &mut loss);
    loss.summarise_now(&path);
}

/// The file and the whole lines not yet written to it (at most about `BUFFER` bytes).
struct Out {
    file: File,
    buf: Vec<u8>,
    /// The file ends inside a line (a write cut short that could not be taken back): the
    /// next write starts with a newline, so that later lines stay whole.
    torn: bool,
}

impl Out {
    fn new(file: File) -> Out {
        Out {
            file,
            buf: Vec::with_capacity(BUFFER),
            torn: false,
        }
    }

    /// Takes a batch of lines, and writes what is buffered once it is full.
    fn push(&mut self, batch: &[u8], path: &Path, loss: &mut Loss) {
        self.buf.extend_from_slice(batch);
        if self.buf.len() >= BUFFER {
            self.flush(path, loss);
        }
    }

    /// Writes what is buffered; lines the file would not take are lost (and counted).
    fn flush(&mut self, path: &Path, loss: &mut Loss) {
        if let Err((e, rest)) = self.write_buffered() {
            loss.lost(path, &e, lines(&rest));
        } else if !self.buf.is_empty() {
            loss.written(path);
        }
        self.buf.clear();
    }

    /// Writes the buffer. On failure: the error, and the lines that did not reach the file
    /// whole (a line cut short is cut out of the file again, see `take_back`).
    fn write_buffered(&mut self) -> Result<(), (io::Error, Vec<u8>)> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.torn {
            write_all(&mut self.file, b"\n").map_err(|(e, _)| (e, self.buf.clone()))?;
            self.torn = false;
        }
        let Err((e, done)) = write_all(&mut self.file, &self.buf) else {
            return Ok(());
        };
        let whole = self.buf[..done]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if done > whole && !take_back(&self.file, (done - whole) as u64) {
            self.torn = true;
        }
        Err((e, self.buf[whole..].to_vec()))
    }

    /// Moves to `to` (opened anew): what is buffered goes to the old file first or, if the
    /// old file refuses it, to the new one. If `to` cannot be opened, nothing changes (and
    /// false is returned).
    fn switch(&mut self, from: &Path, to: &Path, loss: &mut Loss) -> bool {
        let file = match open_append(to) {
            Ok(file) => file,
            Err(e) => {
                let verb = if from == to { "reopen" } else { "open" };
                log_error!(
                    "cannot {verb} the access log {}: {e}; still writing to the old file",
                    to.display()
                );
                return false;
            }
        };
        let rest = match self.write_buffered() {
            Ok(()) => Vec::new(),
            Err((e, rest)) => {
                log_error!(
                    "access log {}: {e}; its last lines go to {}",
                    from.display(),
                    to.display()
                );
                rest
            }
        };
        *self = Out::new(file);
        self.buf = rest;
        self.flush(to, loss);
        true
    }
}

/// Writes all of `bytes`, or says how many went before the error.
fn write_all(file: &mut File, bytes: &[u8]) -> Result<(), (io::Error, usize)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((io::ErrorKind::WriteZero.into(), done)),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((e, done)),
        }
    }
    Ok(())
}

/// Cuts the last `n` bytes (the start of a line whose end could not be written) off the
/// file, so that it holds whole lines only. False if that fails.
fn take_back(file: &File, n: u64) -> bool {
    file.metadata()
        .and_then(|m| file.set_len(m.len().saturating_sub(n)))
        .is_ok()
}

/// The number of lines in `bytes` (each ends in a newline).
fn lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Lines that could not be written: counted (the status page shows the count) and told in
/// the error log — at once when losing starts, then once per `LOSS_REPORT` while it goes
/// on, and when writing works again.
struct Loss {
    total: Arc<AtomicU64>,
    /// Lost since the error log last said so.
    unreported: u64,
    /// The last error, while losing.
    error: Option<String>,
    /// When the error log last spoke of losses.
    reported: Instant,
    failing: bool,
}

/// How often the error log tells how many lines were lost while losing goes on.
pub const LOSS_REPORT: Duration = Duration::from_secs(60);

impl Loss {
    fn new(total: Arc<AtomicU64>) -> Loss {
        Loss {
            total,
            unreported: 0,
            error: None,
            reported: Instant::now(),
            failing: false,
        }
    }

    fn lost(&mut self, path: &Path, e: &io::Error, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.error = Some(e.to_string());
        if self.failing {
            self.unreported += n;
        } else {
            self.failing = true;
            self.reported = Instant::now();
            log_error!(
                "access log {}: {e}: {n} lines lost; lines that cannot be written are \
                 dropped and counted (access_log_lines_lost on the status page)",
                path.display()
            );
        }
    }

    fn written(&mut self, path: &Path) {
        if self.failing {
            self.failing = false;
            self.summarise_now(path);
            log_error!("access log {}: writing again", path.display());
        }
    }

    /// Tells the lines lost since the last report, if there are some and it is time.
    fn summarise(&mut self, path: &Path) {
        if self.reported.elapsed() >= LOSS_REPORT {
            self.summarise_now(path);
        }
    }

    fn summarise_now(&mut self, path: &Path) {
        if self.unreported > 0 {
            log_error!(
                "access log {}: {} more lines lost ({}); {} since start-up",
                path.display(),
                self.unreported,
                self.error.as_deref().unwrap_or("write error"),
                self.total.load(Ordering::Relaxed)
            );
            self.unreported = 0;
        }
        self.reported = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn every_line_reaches_the_file_in_order() {
        let dir = std::env::temp_dir().join(format!("weir-logger-{}", std::process::id()));
        let path = dir.join("sub/access.log");
        let Logger {
            tx, thread: handle, ..
        } = start(&path).expect("start");
        let senders: Vec<_> = (0..4).map(|_| tx.clone()).collect();
        drop(tx);
        let threads: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(t, tx)| {
                thread::spawn(move || {
                    (0..5000)
                        .for_each(|i| tx.send(format!("t{t} line {i}\n")).expect("logger alive"))
                })
            })
            .collect();
        for t in threads {
            t.join().expect("sender thread");
        }
        handle.join().expect("logger thread");
        let text = std::fs::read_to_string(&path).expect("log file");
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            assert_eq!(mine.len(), 5000);
            assert!(
                mine.windows(2)
                    .all(|w| w[0] < w[1] || w[0].len() < w[1].len()),
                "order kept per sender"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-logger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    /// Waits (at most 10 s) until `path`'s text satisfies `done`; returns it.
    fn wait_for(path: &Path, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if done(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: still {text:?}",
                path.display()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn lines(from: &str, range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("{from} {i}\n")).collect()
    }

    #[test]
    fn a_move_sends_later_lines_to_the_new_path_and_loses_none() {
        let dir = scratch("move");
        let (first, second) = (dir.join("a.log"), dir.join("sub/b.log"));
        let logger = start(&first).expect("start");
        logger.tx.send(lines("before", 0..500)).expect("send");
        wait_for(&first, |t| t.ends_with("before 499\n"));
        logger.reopen.move_to(second.clone());
        wait_for(&second, |_| second.exists());
        logger.tx.send(lines("after", 0..500)).expect("send");
        drop(logger.tx);
        logger.thread.join().expect("logger thread");
        assert_eq!(
            std::fs::read_to_string(&first).expect("old file"),
            lines("before", 0..500)
        );
        assert_eq!(
            std::fs::read_to_string(&second).expect("new file"),
            lines("after", 0..500)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reopen_moves_later_lines_to_the_new_file() {
        let dir = scratch("reopen");
        let path = dir.join("access.log");
        let rotated = dir.join("access.log.1");
        let logger = start(&path).expect("start");
        for i in 0..100 {
            logger
                .tx
                .send(lines("before", i * 10..i * 10 + 10))
                .expect("send");
        }
        // Everything sent so far has reached the file (flushed when the logger went idle).
        wait_for(&path, |t| t.ends_with("before 999\n"));
        std::fs::rename(&path, &rotated).expect("rotate");
        logger.reopen.request();
        logger.reopen.request();
        wait_for(&path, |_| path.exists());
        for i in 0..100 {
            logger
                .tx
                .send(lines("after", i * 10..i * 10 + 10))
                .expect("send");
        }
        drop(logger.tx);
        logger.thread.join().expect("logger thread");
        assert_eq!(
            std::fs::read_to_string(&rotated).expect("old file"),
            lines("before", 0..1000)
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("new file"),
            lines("after", 0..1000)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopens_under_load_lose_and_repeat_no_line() {
        let dir = scratch("load");
        let path = dir.join("access.log");
        let logger = start(&path).expect("start");
        let tx = logger.tx;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_sender = Arc::clone(&stop);
        // Lines flow until the rotations are done (and at least 1000 of them).
        let sender = thread::spawn(move || {
            let mut n = 0;
            while n < 1000 || !stop_sender.load(Ordering::Relaxed) {
                tx.send(lines("line", n..n + 1)).expect("logger alive");
                n += 1;
                if n % 500 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            n
        });
        // Rotate as logrotate does, while lines flow: rename, then ask for a reopen.
        let mut rotated = Vec::new();
        for n in 0..5 {
            let to = dir.join(format!("access.log.{n}"));
            std::fs::rename(&path, &to).expect("rotate");
            rotated.push(to);
            logger.reopen.request();
            wait_for(&path, |_| path.exists());
        }
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().expect("sender thread");
        logger.thread.join().expect("logger thread");
        let mut all = String::new();
        for file in rotated.iter().chain([&path]) {
            all.push_str(&std::fs::read_to_string(file).expect("a log file"));
        }
        assert!(all == lines("line", 0..sent), "every line once, in order");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_a_full_disk_refuses_are_counted_and_dropped() {
        // /dev/full refuses every write with ENOSPC.
        let lost = Arc::new(AtomicU64::new(0));
        let logger = start_with(Path::new("/dev/full"), Reopen::default(), Arc::clone(&lost))
            .expect("start");
        for i in 0..100 {
            logger
                .tx
                .send(lines("line", i * 10..i * 10 + 10))
                .expect("send");
        }
        drop(logger.tx);
        logger.thread.join().expect("logger thread");
        assert_eq!(lost.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn a_write_cut_short_is_taken_back_out_of_the_file() {
        let dir = scratch("torn");
        let path = dir.join("access.log");
        let mut out = Out::new(open_append(&path).expect("open"));
        let mut loss = Loss::new(Arc::default());
        out.push(b"whole 1\nwhole 2\n", &path, &mut loss);
        out.flush(&path, &mut loss);
        // As if a write had stopped inside the third line.
        out.file.write_all(b"half a li").expect("write");
        assert!(take_back(&out.file, 9));
        assert_eq!(
            std::fs::read_to_string(&path).expect("log"),
            "whole 1\nwhole 2\n"
        );
        assert_eq!(super::lines(b"a\nb\nc"), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = scratch("failed");
        let path = dir.join("logs/access.log");
        let logger = start(&path).expect("start");
        logger.tx.send(lines("before", 0..10)).expect("send");
        wait_for(&path, |t| t.ends_with("before 9\n"));
        // The directory goes away: the path cannot be opened again (a reopen creates no
        // directory).
        std::fs::rename(dir.join("logs"), dir.join("old")).expect("move the directory");
        logger.reopen.request();
        // Long enough for the logger to have tried.
        thread::sleep(FLUSH_IDLE * 2);
        logger.tx.send(lines("after", 0..10)).expect("send");
        drop(logger.tx);
        logger.thread.join().expect("logger thread");
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("old/access.log")).expect("old file"),
            lines("before", 0..10) + &lines("after", 0..10)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// loom: `RUSTFLAGS="--cfg loom" cargo test --release -p weir loom_`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A reload's move racing the logger's look, then one more look: the paths the logger
    /// was given.
    fn race<T: Send + Sync + 'static>(
        shared: T,
        mover: fn(&T, PathBuf),
        take: fn(&T) -> Option<Option<PathBuf>>,
    ) -> Vec<PathBuf> {
        let shared = Arc::new(shared);
        let reload = Arc::clone(&shared);
        let t = loom::thread::spawn(move || mover(&reload, PathBuf::from("/b.log")));
        let first = take(&shared);
        t.join().expect("reload thread");
        let second = take(&shared);
        [first, second].into_iter().flatten().flatten().collect()
    }

    /// The property: a move to a new path asked for while the logger looks is never lost
    /// — the logger gets the path exactly once, from this look or the next.
    #[test]
    fn loom_a_move_asked_while_the_logger_looks_is_never_lost() {
        loom::model(|| {
            let got = race(Reopen::default(), |r, p| r.move_to(p), Reopen::take);
            assert_eq!(got, vec![PathBuf::from("/b.log")]);
        });
    }

    /// The broken variant: the request and the path under two locks, the request raised
    /// first. The logger can take the request with no path yet (a plain reopen), and the
    /// move is lost; loom finds that interleaving.
    #[test]
    fn loom_a_request_and_path_under_two_locks_is_caught_losing_the_move() {
        struct TwoLocks {
            reopen: Mutex<bool>,
            path: Mutex<Option<PathBuf>>,
        }
        fn mover(t: &TwoLocks, path: PathBuf) {
            *t.reopen.lock().expect("lock") = true;
            *t.path.lock().expect("lock") = Some(path);
        }
        fn take(t: &TwoLocks) -> Option<Option<PathBuf>> {
            std::mem::take(&mut *t.reopen.lock().expect("lock"))
                .then(|| t.path.lock().expect("lock").take())
        }
        let caught = std::panic::catch_unwind(|| {
            loom::model(|| {
                let two = TwoLocks {
                    reopen: Mutex::new(false),
                    path: Mutex::new(None),
                };
                assert_eq!(race(two, mover, take), vec![PathBuf::from("/b.log")]);
            });
        });
        assert!(caught.is_err(), "loom must find the lost move");
    }
}
