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

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::log::log_error;

/// Batches buffered between the workers and the logger before workers wait.
pub const CHANNEL_BATCHES: usize = 1024;
/// Flush after this long without a new line.
pub const FLUSH_IDLE: Duration = Duration::from_millis(200);

/// A worker's handle on the logger: it sends batches of newline-terminated lines.
pub type LogSender = SyncSender<String>;

/// Opens (creating, appending) the log file and starts the logger thread. Opening happens
/// here, in the caller's thread, so that a bad path is a start-up error.
pub fn start(path: &Path) -> io::Result<(LogSender, JoinHandle<()>)> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
    let path = path.to_path_buf();
    let handle = thread::Builder::new()
        .name("weir-access-log".into())
        .spawn(move || run(file, &path, &rx))?;
    Ok((tx, handle))
}

fn run(file: File, path: &Path, rx: &Receiver<String>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failed = false;
    let report = |e: io::Error, failed: &mut bool| {
        if !*failed {
            log_error!("access log {}: {e}", path.display());
            *failed = true;
        }
    };
    loop {
        match rx.recv_timeout(FLUSH_IDLE) {
            Ok(batch) => {
                if let Err(e) = out.write_all(batch.as_bytes()) {
                    report(e, &mut failed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Err(e) = out.flush() {
                    report(e, &mut failed);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(e) = out.flush() {
        report(e, &mut failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_reaches_the_file_in_order() {
        let dir = std::env::temp_dir().join(format!("weir-logger-{}", std::process::id()));
        let path = dir.join("sub/access.log");
        let (tx, handle) = start(&path).expect("start");
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
}
