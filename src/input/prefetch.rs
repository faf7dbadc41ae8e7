//! Decoding ahead on a thread of its own: while the Source hands on what
//! was decoded, the next piece is decoded (a chunk of a Parquet file's rows,
//! a block of a compressed file's bytes).
//!
//! The hand-over is a channel of capacity one, so at most three pieces
//! are alive (the one handed on, the one waiting, the one being decoded):
//! memory stays bounded by the piece, not by the file. Every outcome
//! crosses the channel in order: the pieces, then the end or the error
//! that stopped decoding, so the reader sees the file's order and an error
//! keeps its cause. A producer that panics is an error too, and a thread
//! that ends without a word is reported as one.
//!
//! Dropping a [`Prefetch`] stops the thread: it is told to stop, the piece
//! it may be blocked on handing over is taken and discarded, and it is
//! joined when it ends; should it not end within [`JOIN_DEADLINE`] (a read
//! stuck in the file system), that is logged and it is left behind rather
//! than hang the run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a wait for the next chunk says that it still waits.
const WAIT_REPORT: Duration = Duration::from_secs(30);

/// How long a drop waits for the thread to end.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// What the thread hands over: a chunk, the end (`None`), or why it stopped.
type Outcome<T> = Result<Option<T>, String>;

/// A producer run ahead on its own thread, one outcome at a time.
pub(crate) struct Prefetch<T> {
    /// Who reads, in diagnostics.
    name: Arc<str>,
    outcomes: Receiver<Outcome<T>>,
    stop: Arc<AtomicBool>,
    /// `None` once the producer's last outcome was taken.
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `produce` on a thread named `thread`, reading for `name`; it
    /// is called until it gives the end or an error, or the [`Prefetch`] is
    /// dropped.
    pub fn spawn(
        name: Arc<str>,
        thread: &str,
        mut produce: impl FnMut() -> Outcome<T> + Send + 'static,
    ) -> std::io::Result<Self> {
        let (send, outcomes) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let outcome = catch_unwind(AssertUnwindSafe(&mut produce))
                        .unwrap_or_else(|_| Err("the decoder failed (panicked)".into()));
                    let last = !matches!(outcome, Ok(Some(_)));
                    // A failed send: the reader is gone, and so is the need.
                    if send.send(outcome).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(Prefetch {
            name,
            outcomes,
            stop,
            thread: Some(thread),
        })
    }

    /// The next outcome, in the producer's order; after the last one (the
    /// end or an error), the end.
    pub fn next(&mut self) -> Outcome<T> {
        if self.thread.is_none() {
            return Ok(None);
        }
        let started = Instant::now();
        let outcome = loop {
            match self.outcomes.recv_timeout(WAIT_REPORT) {
                Ok(outcome) => break outcome,
                Err(RecvTimeoutError::Timeout) => log::warn!(
                    "still decoding {} after {:.0} s",
                    self.name,
                    started.elapsed().as_secs_f64()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    break Err("the decoder ended without a result".into())
                }
            }
        };
        if !matches!(outcome, Ok(Some(_))) {
            self.join();
        }
        outcome
    }
}

impl<T> Prefetch<T> {
    /// Waits (until [`JOIN_DEADLINE`]) for the thread to end, taking what
    /// it hands over meanwhile, and joins it.
    fn join(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.outcomes.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!(
                        "the thread decoding {} did not stop within {} s; left behind",
                        self.name,
                        JOIN_DEADLINE.as_secs()
                    );
                    return;
                }
            }
        }
        // Its panics were caught and handed over as errors.
        let _ = thread.join();
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn outcomes_come_in_order_and_the_end_or_an_error_is_the_last() {
        let mut n = 0;
        let mut ahead = Prefetch::spawn("a".into(), "t", move || {
            n += 1;
            match n {
                1..=5 => Ok(Some(n)),
                6 => Err("broken at 6".to_owned()),
                _ => panic!("called after the error"),
            }
        })
        .unwrap();
        let got: Vec<_> = (0..5).map(|_| ahead.next().unwrap().unwrap()).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        assert_eq!(ahead.next(), Err("broken at 6".to_owned()));
        assert_eq!(ahead.next(), Ok(None));
    }

    #[test]
    fn a_panicking_producer_is_an_error_not_an_end() {
        let mut ahead = Prefetch::<u8>::spawn("a".into(), "t", || panic!("boom")).unwrap();
        let e = ahead.next().unwrap_err();
        assert!(e.contains("panicked"), "{e}");
    }

    #[test]
    fn a_drop_stops_the_producer_which_runs_at_most_two_ahead() {
        let made = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&made);
        // Endless: only the drop stops it.
        let mut ahead = Prefetch::spawn("a".into(), "t", move || {
            Ok(Some(counted.fetch_add(1, Ordering::SeqCst)))
        })
        .unwrap();
        assert_eq!(ahead.next(), Ok(Some(0)));
        assert_eq!(ahead.next(), Ok(Some(1)));
        drop(ahead);
        // Joined: the count is final. Two taken, one waiting in the
        // channel and one made (or being made) when the drop said stop.
        let made = made.load(Ordering::SeqCst);
        assert!((2..=4).contains(&made), "{made}");
    }
}
