//! Independent pieces of work (the bands of pass 1, the lists of a
//! spill) shared among a few scoped threads: the one place that starts
//! them, hands out the pieces and brings back each thread's result.
//!
//! Pieces are taken in order, each by the first thread free, so uneven
//! pieces even out; the first piece that fails stops the others from
//! taking more. A thread the system refuses to start only means fewer of
//! them (the calling thread always works), and a helper's panic is
//! resumed on the calling thread, as if it had done the work alone.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `each(state, i)` for every `i` below `count` on up to `threads`
/// threads, the calling one included, each with its own `state()` (the
/// calling thread's made first); returns every thread's state, the
/// calling thread's first, or the first error. `what` names the work in
/// the warning given when a thread cannot be started.
pub fn on_threads<T: Send, E: Send>(
    count: usize,
    threads: usize,
    what: &str,
    state: impl Fn() -> T + Sync,
    each: impl Fn(&mut T, usize) -> Result<(), E> + Sync,
) -> Result<Vec<T>, E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let work = |mut state: T| {
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            if let Err(e) = each(&mut state, i) {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(state)
    };
    let mine = state();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(count))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, || work(state()))
                    .map_err(|e| log::warn!("{what} on fewer threads: {e}"))
                    .ok()
            })
            .collect();
        let mine = work(mine).map(|state| vec![state]);
        helpers.into_iter().fold(mine, |result, helper| {
            let theirs = helper
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            match (result, theirs) {
                (Ok(mut all), Ok(state)) => {
                    all.push(state);
                    Ok(all)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_done_once_by_one_of_the_threads() {
        for threads in [1, 2, 5, 40] {
            let states = on_threads(
                30,
                threads,
                "counting",
                Vec::new,
                |done: &mut Vec<usize>, i| {
                    done.push(i);
                    Ok::<(), ()>(())
                },
            )
            .unwrap();
            assert!(states.len() <= threads.min(30));
            let mut all: Vec<usize> = states.into_iter().flatten().collect();
            all.sort_unstable();
            assert_eq!(all, (0..30).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    #[test]
    fn the_first_piece_that_fails_is_the_error_and_stops_the_rest() {
        for threads in [1, 3] {
            let taken = AtomicUsize::new(0);
            let result = on_threads(
                1000,
                threads,
                "failing",
                || (),
                |(), i| {
                    taken.fetch_add(1, Ordering::Relaxed);
                    if i == 4 {
                        Err(format!("piece {i}"))
                    } else {
                        Ok(())
                    }
                },
            );
            assert_eq!(result.unwrap_err(), "piece 4");
            if threads == 1 {
                // Alone, nothing is taken after the failure.
                assert_eq!(taken.load(Ordering::Relaxed), 5);
            }
        }
    }
}
