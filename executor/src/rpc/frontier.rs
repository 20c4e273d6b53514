//! The epoch fence: how single-shard requests keep real-time order with
//! cross-shard transactions.
//!
//! Single-shard requests never go through the sequencer; each vShard orders
//! them among its share of the epochs as they arrive. A cross-shard
//! transaction `T` is applied by its participants one after the other, so
//! without a fence a client could read `T`'s write on vShard A, then send a
//! request to vShard B that B orders *before* `T` (B's scheduler had not
//! reached `T`'s epoch yet): a cycle against real time.
//!
//! The fence closes that gap. Before a single-shard request leaves the
//! gateway, it learns the sequencer's committed frontier `F` — the last
//! epoch committed when the request had already arrived ([`EpochFrontier`]);
//! the vShard leader then orders the request only after its scheduler has
//! enqueued every epoch up to `F` (`TxnBoard::wait_ingested`). Any `T`
//! whose effect the client could have seen was committed before, so `T`
//! precedes the request on every vShard, and the lock table makes the
//! request wait for `T` if they touch the same rows.
//!
//! Fetches are shared: one runs at a time per node, and every request that
//! arrived before it started uses its answer, so a busy node sends about
//! one `Frontier` request per round trip, whatever its request rate.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ordo_expr::{ExecError, ExecResult};

/// The last answer and the fetch it came from.
#[derive(Default)]
pub struct EpochFrontier {
    /// Fetches started so far; a fetch's number is its place in this count.
    started: AtomicU64,
    /// Of the newest fetch: its number, the largest frontier seen, and its
    /// error if it failed (shared too: the callers that waited for it fail
    /// at once instead of each fetching again in turn).
    last: Mutex<(u64, u64, Option<ExecError>)>,
    /// One fetch at a time; waiters queue here and mostly reuse its answer.
    fetching: tokio::sync::Mutex<()>,
}

impl EpochFrontier {
    /// A frontier fetched by a call `fetch` that started after this call
    /// did, so it covers every epoch committed before the caller arrived.
    pub async fn get<F, Fut>(&self, fetch: F) -> ExecResult<u64>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ExecResult<u64>>,
    {
        let arrived = self.started.load(Ordering::SeqCst);
        let _one = self.fetching.lock().await;
        {
            let last = self.last.lock();
            if last.0 > arrived {
                return match &last.2 {
                    Some(e) => Err(e.clone()),
                    None => Ok(last.1),
                };
            }
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let fetched = fetch().await;
        let mut last = self.last.lock();
        match fetched {
            Ok(frontier) => {
                // Frontiers only grow; a late answer never lowers the newest one.
                *last = (number, frontier.max(last.1), None);
                Ok(last.1)
            }
            Err(e) => {
                *last = (number, last.1, Some(e.clone()));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_caller_never_gets_an_answer_fetched_before_it_arrived() {
        let f = EpochFrontier::default();
        assert_eq!(f.get(|| async { Ok(5) }).await.unwrap(), 5);
        // A new caller fetches again: the first answer predates it.
        assert_eq!(f.get(|| async { Ok(7) }).await.unwrap(), 7);
        assert_eq!(f.started.load(Ordering::SeqCst), 2);
    }

    /// Starts a caller whose fetch answers `value` once `gate` is
    /// notified, and returns when that fetch has started.
    async fn held_fetch(
        f: &Arc<EpochFrontier>,
        gate: &Arc<tokio::sync::Notify>,
        value: u64,
    ) -> tokio::task::JoinHandle<ExecResult<u64>> {
        let (f2, gate) = (f.clone(), gate.clone());
        let handle = tokio::spawn(async move {
            f2.get(|| async move {
                gate.notified().await;
                Ok(value)
            })
            .await
        });
        while f.started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        handle
    }

    /// `n` callers that arrive now; each fetch they run counts in `fetches`
    /// and answers `answer`.
    fn callers(
        f: &Arc<EpochFrontier>,
        n: usize,
        fetches: &Arc<AtomicU64>,
        answer: ExecResult<u64>,
    ) -> Vec<tokio::task::JoinHandle<ExecResult<u64>>> {
        (0..n)
            .map(|_| {
                let (f, fetches, answer) = (f.clone(), fetches.clone(), answer.clone());
                tokio::spawn(async move {
                    f.get(|| async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        answer
                    })
                    .await
                })
            })
            .collect()
    }

    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_its_waiters_and_the_next_caller_tries_again() {
        let f = Arc::new(EpochFrontier::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let first = held_fetch(&f, &gate, 3).await;
        // Both arrive during fetch 1; one of them runs fetch 2, which fails,
        // and the other gets its error without fetching.
        let fetches = Arc::new(AtomicU64::new(0));
        let waiters = callers(&f, 2, &fetches, Err(ExecError::Unavailable("no sequencer leader".into())));
        settle().await;
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 3);
        for w in waiters {
            assert!(matches!(w.await.unwrap(), Err(ExecError::Unavailable(_))));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "the second waiter shared the failure");
        assert_eq!(f.get(|| async { Ok(4) }).await.unwrap(), 4, "a later caller fetches again");
    }

    #[tokio::test]
    async fn callers_waiting_on_one_fetch_share_the_next() {
        let f = Arc::new(EpochFrontier::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        // The first fetch is held until every other caller has arrived.
        let first = held_fetch(&f, &gate, 1).await;
        let fetches = Arc::new(AtomicU64::new(0));
        let waiters = callers(&f, 8, &fetches, Ok(2));
        settle().await;
        gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        for w in waiters {
            assert_eq!(w.await.unwrap().unwrap(), 2, "arrived during fetch 1: needs a later one");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "eight waiters, one more fetch");
    }
}
