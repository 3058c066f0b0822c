//! The access logger: one thread that owns the log file (OKWS's oklogd, in miniature).
//!
//! Workers hand it finished lines through a bounded channel, one batch per event-loop
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

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::PoisonError;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::log::{log_error, open_append};
use crate::sync::{Arc, Mutex};

/// Batches buffered between the workers and the logger before workers wait.
pub const CHANNEL_BATCHES: usize = 1024;
/// Flush after this long without a new line; also the longest a reopen waits.
pub const FLUSH_IDLE: Duration = Duration::from_millis(200);
/// The logger's write buffer.
const BUFFER: usize = 64 * 1024;

/// A worker's handle on the logger: it sends batches of newline-terminated lines.
pub type LogSender = SyncSender<String>;

/// Asks the logger to reopen its file (SIGUSR1), or to move to another path (a reload);
/// any thread may hold a clone. The request and its path live under one lock, so a path
/// can never be seen without its request or the other way round (checked by loom, below).
#[derive(Clone, Debug)]
pub struct Reopen(Arc<Mutex<Asked>>);

/// What the logger has been asked since it last looked.
#[derive(Debug)]
struct Asked {
    reopen: bool,
    /// A new path to move to, set by a reload.
    path: Option<PathBuf>,
}

impl Default for Reopen {
    fn default() -> Reopen {
        Reopen(Arc::new(Mutex::new(Asked {
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
/// of its own (the server uses `start_with`, to share one across reloads).
#[cfg(test)]
pub fn start(path: &Path) -> io::Result<Logger> {
    start_with(path, Reopen::default())
}

/// `start`, with a `Reopen` handle that outlives this logger (SIGUSR1 reaches whichever
/// logger a reload started).
pub fn start_with(path: &Path, reopen: Reopen) -> io::Result<Logger> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = open_append(path)?;
    let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
    let path = path.to_path_buf();
    let flag = reopen.clone();
    let thread = thread::Builder::new()
        .name("weir-access-log".into())
        .spawn(move || run(file, path, &rx, &flag))?;
    Ok(Logger { tx, thread, reopen })
}

fn run(file: File, mut path: PathBuf, rx: &Receiver<String>, reopen: &Reopen) {
    let mut out = BufWriter::with_capacity(BUFFER, file);
    // A write error is reported once per file, not once per batch.
    let mut failed = false;
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
            let (new_out, switched) = switch(out, &target, made, &mut failed);
            out = new_out;
            if switched {
                path = target;
            }
        }
        match received {
            Ok(batch) => {
                if let Err(e) = out.write_all(batch.as_bytes()) {
                    report(&path, e, &mut failed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = out.flush() {
                    report(&path, e, &mut failed);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(e) = out.flush() {
        report(&path, e, &mut failed);
    }
}

fn report(path: &Path, e: io::Error, failed: &mut bool) {
    if !*failed {
        log_error!("access log {}: {e}", path.display());
        *failed = true;
    }
}

/// Opens `path` anew and moves `out` over to it: what `out` holds is flushed to the old
/// file first (or, if the old file refuses it, written to the new one). If the path cannot
/// be opened, `out` is kept as it is (and false returned).
fn switch(
    mut out: BufWriter<File>,
    path: &Path,
    moved: bool,
    failed: &mut bool,
) -> (BufWriter<File>, bool) {
    let file = match open_append(path) {
        Ok(file) => file,
        Err(e) => {
            let verb = if moved { "open" } else { "reopen" };
            log_error!(
                "cannot {verb} the access log {}: {e}; still writing to the old file",
                path.display()
            );
            return (out, false);
        }
    };
    let flushed = out.flush();
    // On a failed flush the buffer still holds exactly the bytes the old file did not take.
    let (old, unwritten) = out.into_parts();
    let unwritten = unwritten.unwrap_or_else(|panicked| panicked.into_inner());
    drop(old);
    if let Err(e) = flushed {
        report(path, e, failed);
    }
    *failed = false;
    let mut out = BufWriter::with_capacity(BUFFER, file);
    if let Err(e) = out.write_all(&unwritten) {
        report(path, e, failed);
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

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
#[cfg(loom)]
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
