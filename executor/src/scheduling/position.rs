//! Running one sequenced position on this vShard's leader, holding its
//! locks: evaluate the program over this vShard's rows and the other
//! participants' rows as of the position (or, for a passive participant,
//! serve its rows until the active ones applied it), then propose this
//! vShard's writes with its record.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ordo_expr::{storage_error, ExecError, ExecResult};
use ordo_raft::groups::vshard_group;
use ordo_sequencer::Epoch;
use ordo_vshard::shard::{RowWrite, ShardCommand, TxnPos};
use parking_lot::Mutex;

use super::round::Progress;
use super::Scheduler;
use crate::codec::encode;
use crate::constants::{EVALUATION_ATTEMPTS_ALARM, PENDING_WAIT_MS, RETRY_BACKOFF_MS, VERDICT_FETCHES_MAX};
use crate::rpc::{Pairs, Router};
use crate::sequenced::board::{Published, Serving};
use crate::txn::interp::{self, TxnView};
use crate::txn::locks::{active_participants, lock_set};
use crate::txn::program::{read_limit_exceeded, TxnResult};
use crate::txn::record::{program_scan, CachedRead, TxnRecord};
use crate::txn::statement::SequencedInput;

/// This vShard's writes at a position and the record it keeps of it.
type Evaluated = (Vec<RowWrite>, TxnRecord);

impl Scheduler {
    /// Runs `pos` to its proposal. Trouble before the proposal (a barrier,
    /// a participant out of reach) is retried here, holding the locks:
    /// ending the round would release them to requests queued behind it.
    pub(super) async fn execute(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
        progress: &Mutex<Progress>,
    ) -> Result<(), String> {
        let mut attempts: u32 = 0;
        // A statement's verdict stays published until its record is applied.
        let mut published = None;
        let (writes, record) = loop {
            attempts += 1;
            self.group.write_barrier().await.map_err(|e| e.to_string())?;
            // A round that has not noticed a newer term must not serve.
            if !self.leading() {
                return Err("lost leadership".into());
            }
            // Already applied: an earlier round of this term proposed it
            // and the barrier did not wait for that entry. Nothing is left
            // to do — and evaluating again could not succeed once passive
            // participants, which keep no record, have moved on.
            if self.local.reader().is_applied(vshard_group(self.vshard), pos)? {
                return Ok(());
            }
            match self.attempt(pos, epoch, participants, &program, &mut published).await {
                Ok(done) => break done,
                Err(e) if self.leading() => {
                    // Transient trouble passes; an error that persists while
                    // this node leads (e.g. a participant's record lacks a
                    // read: nondeterminism) stalls the vShard — say so.
                    if attempts.is_multiple_of(EVALUATION_ATTEMPTS_ALARM) {
                        tracing::error!(vshard = self.vshard, ?pos, attempts, "evaluation keeps failing: {e}");
                    } else {
                        tracing::debug!(vshard = self.vshard, ?pos, "evaluation failed, retrying: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.commit(pos, writes, record, progress).await
    }

    /// One attempt at `pos`: a statement's part and decision, or the
    /// program's evaluation while this vShard's rows are served live.
    async fn attempt<'b>(
        &'b self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: &ExecResult<SequencedInput>,
        published: &mut Option<Published<'b>>,
    ) -> Result<Evaluated, String> {
        // Granted after a position whose commit timed out released its
        // locks: its entry may still commit, so reading now could miss it.
        self.group.settled().map_err(|e| e.to_string())?;
        // Single-vShard writes queued before these locks were granted may
        // not be applied yet (they release their locks once queued): wait,
        // so that this position reads, and serves to other participants,
        // committed rows only.
        let wait = Duration::from_millis(PENDING_WAIT_MS);
        let upto = self.local.pending().next(self.vshard);
        self.local.pending().drained(self.vshard, self.term, upto, wait).await.map_err(|e| e.to_string())?;
        if let Ok(SequencedInput::Statement(st)) = program {
            return self.run_statement(pos, epoch.timestamp_us, participants, st, published).await;
        }
        let serving = Serving::start(self.local.board(), self.vshard, pos);
        let evaluated = self.evaluate(pos, epoch, participants, program.clone()).await;
        // No live reads once the writes may apply: from here a participant
        // reading this vShard as of `pos` waits for the record.
        drop(serving);
        evaluated
    }

    /// Proposes this vShard's writes at `pos` with its record and the
    /// watermark it completes.
    async fn commit(
        &self,
        pos: TxnPos,
        writes: Vec<RowWrite>,
        record: TxnRecord,
        progress: &Mutex<Progress>,
    ) -> Result<(), String> {
        if !self.leading() {
            return Err("lost leadership".into());
        }
        let watermark = progress.lock().watermark_with(pos);
        let outcome = (record.result.is_some() || !record.reads.is_empty()).then(|| encode(&record));
        let command = ShardCommand::Sequenced { pos, writes, outcome, watermark };
        let result = self.group.propose(command.encode()).await.map(|_| ()).map_err(|e| e.to_string());
        self.local.board().notify_applied(self.vshard);
        result
    }

    /// Runs the program over this vShard's rows and the other participants'
    /// reads as of `pos`: this vShard's writes and its record.
    async fn evaluate(
        &self,
        pos: TxnPos,
        epoch: &Epoch,
        participants: &[u32],
        program: ExecResult<SequencedInput>,
    ) -> Result<Evaluated, String> {
        let vshards = self.local.vshards();
        let lowest = participants[0] == self.vshard;
        let view = PositionView { pos, router: &self.router, leader: self, own_reads: Mutex::new(Vec::new()) };
        let (result, mut writes) = match program {
            Ok(SequencedInput::Txn(program)) => {
                let locks = lock_set(&program, vshards);
                let active = active_participants(&locks, participants);
                if active.binary_search(&self.vshard).is_err() {
                    // Passive: serve reads until no one needs them.
                    self.await_applied(pos, &active).await?;
                    return Ok((Vec::new(), TxnRecord::default()));
                }
                match interp::run_guarded(&program, epoch.timestamp_us, vshards, Some(&locks), &view).await {
                    Ok(out) => (TxnResult::Committed(out.outputs), out.writes),
                    // Transient trouble reaching another participant is
                    // not a decision: give up this attempt, run it again.
                    Err(ExecError::Unavailable(m)) => return Err(m),
                    Err(e) => (TxnResult::Aborted(e), BTreeMap::new()),
                }
            }
            Ok(SequencedInput::Statement(_)) => unreachable!("not a program"),
            Err(e) => (TxnResult::Aborted(e), BTreeMap::new()),
        };
        let record = TxnRecord { result: lowest.then_some(result), reads: view.own_reads.into_inner() };
        Ok((writes.remove(&self.vshard).unwrap_or_default(), record))
    }

    /// Waits until every vShard of `active` has applied `pos`, asking
    /// VERDICT_FETCHES_MAX at a time (each a long poll).
    async fn await_applied(&self, pos: TxnPos, active: &[u32]) -> Result<(), String> {
        let waits: Vec<_> = active.iter().map(|&v| self.applied_on(v, pos)).collect();
        futures::stream::iter(waits).buffer_unordered(VERDICT_FETCHES_MAX).try_collect::<Vec<()>>().await?;
        Ok(())
    }

    async fn applied_on(&self, vshard: u32, pos: TxnPos) -> Result<(), String> {
        loop {
            if !self.leading() {
                return Err("lost leadership".into());
            }
            match self.router.outcome(vshard, pos, false).await {
                Ok(outcome) if outcome.applied => return Ok(()),
                Ok(_) => continue,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(format!("whether vShard {vshard} applied {pos:?}: {e}")),
            }
        }
    }
}

/// What a participant reads while at `pos`: its own rows locally (kept
/// for its record), other participants' rows from their leaders as of the
/// same position.
struct PositionView<'a> {
    pos: TxnPos,
    router: &'a Router,
    leader: &'a Scheduler,
    own_reads: Mutex<Vec<CachedRead>>,
}

impl PositionView<'_> {
    async fn remote(&self, vshard: u32, key: &[u8], prefix: bool) -> ExecResult<Pairs> {
        let start = std::time::Instant::now();
        let read = self.remote_once(vshard, key, prefix).await;
        self.leader.local.metrics().remote_read(ordo_metrics::seconds_since(start));
        read
    }

    /// [`PositionView::remote`] without its metrics.
    async fn remote_once(&self, vshard: u32, key: &[u8], prefix: bool) -> ExecResult<Pairs> {
        loop {
            if !self.leader.leading() {
                return Err(ExecError::Unavailable("lost leadership".into()));
            }
            match self.router.read_at(vshard, self.pos, key.to_vec(), prefix).await {
                Ok(Some(rows)) => return Ok(rows),
                Ok(None) => continue,
                // Only what follows from the data may decide the outcome: a
                // scan over its bound fails the same way on every participant.
                // Anything else (a broken reply, an internal error) is this
                // attempt's trouble, not a decision: `Unavailable` retries it.
                Err(e @ ExecError::ProgramLimitExceeded(_)) => return Err(e),
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => {
                    return Err(ExecError::Unavailable(format!("reading vShard {vshard} as of the position: {e}")))
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl TxnView for PositionView<'_> {
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        if vshard == self.leader.vshard {
            // A storage error is not a decision the others would share.
            let row = self.leader.local.reader().get(vshard_group(vshard), key).map_err(storage_error)?;
            let rows = row.iter().map(|v| (key.to_vec(), v.clone())).collect();
            self.own_reads.lock().push(CachedRead { prefix: false, key: key.to_vec(), rows, over_limit: false });
            return Ok(row);
        }
        Ok(self.remote(vshard, key, false).await?.into_iter().next().map(|(_, v)| v))
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Pairs> {
        if vshard == self.leader.vshard {
            let scanned = self.leader.local.reader().scan_prefix(vshard_group(vshard), prefix);
            let Some(rows) = program_scan(scanned)? else {
                // The record keeps that the scan was over a bound, not its rows.
                let over = CachedRead { prefix: true, key: prefix.to_vec(), rows: Vec::new(), over_limit: true };
                self.own_reads.lock().push(over);
                return Err(read_limit_exceeded());
            };
            self.own_reads.lock().push(CachedRead {
                prefix: true,
                key: prefix.to_vec(),
                rows: rows.clone(),
                over_limit: false,
            });
            return Ok(rows);
        }
        self.remote(vshard, prefix, true).await
    }
}
