//! The file pool: threads, shared by every worker, that carry out the file operations a
//! slow disk could make wait — `Effect::Open`, `Effect::ReadFile`, `Effect::ReadDir`, and
//! reading ahead of a `sendfile` whose range is not in the page cache — so that a cold
//! read on a network file system holds one pool thread, not a worker's every connection.
//!
//! ```text
//!   worker ── Job { Open | Read | ReadDir | Preload, reply } ──► bounded queue ──► file thread:
//!     ▲                                                                   files::open_file, …
//!     └──── reply.send(Message::File(Done)) ◄────────── inbox + waker ───────────┘
//! ```
//!
//! This is the verifier pool's shape (`verifier`; both start their threads with `pool`): a job carries the worker's `Inbox`, and
//! the answer arrives as a message on the worker's next turn; the core asked with an effect
//! and is answered with `Input::Completed`, as when the worker did the work inline
//! (`file-threads off`). An `Open` answers with the open file itself, which the worker
//! enters in its table before telling the core; reads hold their file (`files::Shared`),
//! so a `CloseFile` meanwhile cannot close the descriptor under them.
//!
//! **sendfile.** The worker keeps every `sendfile` (and the socket) to itself: one send
//! outstanding per connection, and no thread but the worker ever touches a socket. Before
//! sending from a file it asks the kernel whether the range is cached
//! (`sendfile::resident`, one `cachestat`); if not, it hands a `Preload` to the pool, which
//! reads up to [`PRELOAD_MAX`] bytes of the range into a throw-away buffer (the bytes land
//! in the page cache), and the connection waits, armed, until `Done::Preloaded` — then its
//! `sendfile` copies from memory. nginx does the `sendfile` itself on a pool thread
//! (`aio threads`); reading ahead gives the same freedom from the disk without sharing the
//! socket between threads. A range evicted again before the send (memory pressure) is sent
//! anyway: one read-ahead per send, so a connection always makes progress.
//!
//! **Bounds.** The queue holds [`QUEUE_PER_WORKER`] jobs per worker. Each connection has at
//! most one file operation or read-ahead outstanding (one request in flight, one send), so
//! the queue fills only when the disk falls far behind; then a job that does not fit is
//! answered at once and the loop never waits: `Failed(Exhausted)` for the core's effects (a
//! 503), a failed connection for a read-ahead (the response cannot be completed, like a
//! send error).
//!
//! **Shutting down.** The threads end when every worker has dropped its handle to the
//! queue. A job for a worker that has exited finds nobody to answer (its inbox is gone)
//! and its open file, if any, is closed with the message; `Pool::finish` tells the threads
//! to skip what is still queued, and waits a moment for them — not for one stuck in a call
//! to a dead network disk, which the process's exit ends.

use std::io;
use std::path::PathBuf;

use weir_core::server::{Completion, Input, IoError};
use weir_core::Token;

use crate::fault;
use crate::files::{self, OpenFile, Shared};
use crate::pool;
use crate::queue::{self, Sender};
use crate::worker::{Inbox, Message};

/// Queued jobs per worker before new ones are refused.
pub const QUEUE_PER_WORKER: usize = 1024;

/// The most a read-ahead reads: four send budgets (`conn::SEND_BUDGET`), so a large file on
/// a cold disk costs one hand-off per megabyte rather than per send.
pub const PRELOAD_MAX: u64 = 1 << 20;

/// What a read-ahead reads into (and throws away), per `read` call.
const PRELOAD_BUFFER: usize = 256 * 1024;

/// A file operation for the pool.
#[derive(Debug)]
pub enum Work {
    /// `Effect::Open`.
    Open {
        /// The effect's token.
        token: Token,
        /// What to open.
        path: PathBuf,
    },
    /// `Effect::ReadFile`.
    Read {
        /// The effect's token.
        token: Token,
        /// The file (held until the read is over).
        file: Shared,
        /// Where to start.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `Effect::ReadDir`.
    ReadDir {
        /// The effect's token.
        token: Token,
        /// The directory.
        path: PathBuf,
    },
    /// Bring a range into the page cache ahead of the worker's `sendfile`.
    Preload {
        /// The connection waiting for it: its slab key and generation.
        key: usize,
        /// Its generation (a closed connection's slot may be reused).
        generation: u32,
        /// The file.
        file: Shared,
        /// Where the range starts.
        offset: u64,
        /// Its length (at most [`PRELOAD_MAX`] is read).
        len: u64,
    },
}

/// What the pool tells a worker.
#[derive(Debug)]
pub enum Done {
    /// An `Open` ended: the open file when the result is `Opened`, and the result.
    Opened {
        /// The effect's token.
        token: Token,
        /// The file, exactly when `result` is `Completion::Opened`.
        file: Option<OpenFile>,
        /// The answer for the core.
        result: Completion,
    },
    /// A `ReadFile` or `ReadDir` ended: the input for the core.
    Completed(Input),
    /// A read-ahead ended (well or not: the send finds out).
    Preloaded {
        /// The connection's slab key.
        key: usize,
        /// Its generation.
        generation: u32,
    },
}

/// One file operation, and the inbox its answer goes to.
pub struct Job {
    work: Work,
    reply: Inbox,
}

/// A worker's handle to the pool.
#[derive(Clone, Debug)]
pub struct FilePool {
    queue: Sender<Job>,
}

impl FilePool {
    /// Queues `work`, whose answer goes to `reply`. Gives the work back if the queue is
    /// full (or, after a thread panicked in every slot, gone): the caller answers it.
    pub fn submit(&self, work: Work, reply: &Inbox) -> Result<(), Work> {
        let job = Job {
            work,
            reply: reply.clone(),
        };
        match self.queue.try_send(job) {
            Ok(()) => Ok(()),
            Err(queue::SendError::Full(job) | queue::SendError::Closed(job)) => Err(job.work),
        }
    }
}

/// The file threads, for `serve` to wind down at exit.
pub type Pool = pool::Threads<Job>;

/// Starts `threads` file threads fed by a queue sized for `workers` workers.
pub fn start(threads: usize, workers: usize) -> io::Result<(FilePool, Pool)> {
    spawn(threads.max(1), workers.max(1) * QUEUE_PER_WORKER)
}

/// Starts exactly `threads` threads on a queue of `capacity` jobs.
fn spawn(threads: usize, capacity: usize) -> io::Result<(FilePool, Pool)> {
    let spec = pool::Spec {
        name: "file",
        threads,
        capacity,
        // A file thread's own stack holds little (its read-ahead buffer is on the heap).
        stack: Some(256 * 1024),
    };
    let (queue, threads) = pool::start(spec, || {
        let mut buffer = Vec::new();
        move |job: Job| {
            let done = carry_out(job.work, &mut buffer);
            // A worker that has exited has no inbox: the answer (and any file in it) is
            // dropped.
            job.reply.send(Message::File(done));
        }
    })?;
    Ok((FilePool { queue }, threads))
}

/// Does one job, as the worker would have inline.
fn carry_out(work: Work, buffer: &mut Vec<u8>) -> Done {
    match work {
        Work::Open { token, path } => {
            let (file, result) = files::open_file(&path);
            Done::Opened {
                token,
                file,
                result,
            }
        }
        Work::Read {
            token,
            file,
            offset,
            len,
        } => Done::Completed(Input::Completed {
            token,
            result: files::read_at(&file, offset, len),
        }),
        Work::ReadDir { token, path } => Done::Completed(Input::Completed {
            token,
            result: files::read_dir(&path),
        }),
        Work::Preload {
            key,
            generation,
            file,
            offset,
            len,
        } => {
            preload(&file, offset, len.min(PRELOAD_MAX), buffer);
            Done::Preloaded { key, generation }
        }
    }
}

/// Reads `len` bytes from `offset` and throws them away: they stay in the page cache.
/// Errors end it quietly; the worker's `sendfile` meets them again and reports them.
fn preload(file: &OpenFile, offset: u64, len: u64, buffer: &mut Vec<u8>) {
    use std::os::unix::fs::FileExt;
    fault::before_read(file.slow);
    if buffer.is_empty() {
        buffer.resize(PRELOAD_BUFFER, 0);
    }
    let mut done = 0;
    while done < len {
        let want = usize::try_from(len - done).map_or(buffer.len(), |n| n.min(buffer.len()));
        match file.file.read_at(&mut buffer[..want], offset + done) {
            Ok(0) => return,
            Ok(n) => done += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// The answer for work the pool could not take: what the core hears when the queue is
/// full, for the effects that have an answer (`Open`, `ReadFile`, `ReadDir`).
#[must_use]
pub fn refused(token: Token) -> Input {
    Input::Completed {
        token,
        result: Completion::Failed(IoError::Exhausted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Receiver;
    use std::sync::Arc;
    use std::time::Duration;

    use weir_core::server::FileKind;

    use crate::worker::Inbox;

    /// The next message for the test's "worker".
    fn next(rx: &Receiver<Message>) -> Done {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Message::File(done)) => done,
            other => panic!("expected a file answer, got {other:?}"),
        }
    }

    #[test]
    fn carries_out_each_operation_and_answers_through_the_inbox() {
        let dir = std::env::temp_dir().join(format!("weir-filepool-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        let path = dir.join("a.txt");
        std::fs::write(&path, b"hello, pool").expect("write temp file");
        let (inbox, rx, _poll) = Inbox::for_test();
        let (pool, threads) = start(1, 1).expect("a file thread");

        pool.submit(
            Work::Open {
                token: Token(1),
                path: path.clone(),
            },
            &inbox,
        )
        .expect("room in the queue");
        let file = match next(&rx) {
            Done::Opened {
                token: Token(1),
                file: Some(file),
                result: Completion::Opened(meta),
            } => {
                assert_eq!((meta.kind, meta.len), (FileKind::File, 11));
                Arc::new(file)
            }
            other => panic!("expected the file, got {other:?}"),
        };
        let read = Work::Read {
            token: Token(2),
            file: Arc::clone(&file),
            offset: 7,
            len: 100,
        };
        pool.submit(read, &inbox).expect("room in the queue");
        match next(&rx) {
            Done::Completed(Input::Completed {
                token: Token(2),
                result: Completion::Data(bytes),
            }) => assert_eq!(&bytes[..], b"pool"),
            other => panic!("expected the bytes, got {other:?}"),
        }
        let preload = Work::Preload {
            key: 3,
            generation: 4,
            file,
            offset: 0,
            len: 11,
        };
        pool.submit(preload, &inbox).expect("room in the queue");
        assert!(matches!(
            next(&rx),
            Done::Preloaded {
                key: 3,
                generation: 4
            }
        ));
        let list = Work::ReadDir {
            token: Token(5),
            path: dir.clone(),
        };
        pool.submit(list, &inbox).expect("room in the queue");
        match next(&rx) {
            Done::Completed(Input::Completed {
                token: Token(5),
                result: Completion::Listing(entries),
            }) => assert_eq!(entries.len(), 1),
            other => panic!("expected the listing, got {other:?}"),
        }
        let missing = Work::Open {
            token: Token(6),
            path: dir.join("missing"),
        };
        pool.submit(missing, &inbox).expect("room in the queue");
        assert!(matches!(
            next(&rx),
            Done::Opened {
                token: Token(6),
                file: None,
                result: Completion::Failed(IoError::NotFound)
            }
        ));

        // A worker that has gone: the answer is dropped, the thread goes on.
        let (gone, gone_rx, _gone_poll) = Inbox::for_test();
        drop(gone_rx);
        let open = Work::Open {
            token: Token(7),
            path: path.clone(),
        };
        pool.submit(open, &gone).expect("room in the queue");
        let open = Work::Open {
            token: Token(8),
            path,
        };
        pool.submit(open, &inbox).expect("room in the queue");
        assert!(matches!(
            next(&rx),
            Done::Opened {
                token: Token(8),
                ..
            }
        ));

        drop(pool);
        threads.finish();
        std::fs::remove_dir_all(&dir).expect("remove temp dir");
    }

    #[test]
    fn a_full_queue_gives_the_work_back_at_once() {
        // No thread takes jobs: the queue's one place fills and stays full.
        let (pool, threads) = spawn(0, 1).expect("no threads to start");
        let (inbox, _rx, _poll) = Inbox::for_test();
        let open = |n| Work::Open {
            token: Token(n),
            path: PathBuf::from("/"),
        };
        assert!(pool.submit(open(1), &inbox).is_ok());
        match pool.submit(open(2), &inbox) {
            Err(Work::Open { token, .. }) => {
                assert_eq!(refused(token), refused(Token(2)));
                assert_eq!(
                    refused(token),
                    Input::Completed {
                        token: Token(2),
                        result: Completion::Failed(IoError::Exhausted)
                    }
                );
            }
            other => panic!("expected the work back, got {other:?}"),
        }
        threads.finish();
    }
}
