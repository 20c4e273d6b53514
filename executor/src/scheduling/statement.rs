//! A sequenced statement over several vShards (a multi-row INSERT, an
//! UPDATE/DELETE without a key) at its position: each participant computes
//! its own part under its locks and publishes its verdict; the lowest
//! participant decides from every verdict and the others take its decision.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ordo_expr::ExecError;
use ordo_vshard::shard::{RowWrite, TxnPos};

use super::Scheduler;
use crate::constants::{RETRY_BACKOFF_MS, VERDICT_FETCHES_MAX};
use crate::sequenced::board::Published;
use crate::txn::program::{StmtOutput, TxnResult};
use crate::txn::record::TxnRecord;
use crate::txn::statement::MultiShardStatement;

/// The decision on a sequenced statement from the participants' verdicts
/// in participant order: the first error, else the rows affected summed.
fn decide<'a>(verdicts: impl Iterator<Item = &'a TxnResult>) -> TxnResult {
    let mut rows_affected = 0u64;
    for v in verdicts {
        match v {
            TxnResult::Aborted(e) => return TxnResult::Aborted(e.clone()),
            TxnResult::Committed(out) => rows_affected += out.iter().map(|o| o.rows_affected).sum::<u64>(),
        }
    }
    TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }])
}

impl Scheduler {
    /// Runs this vShard's part of a sequenced statement and reaches the
    /// decision (see [`SequencedInput::Statement`](crate::txn::statement::SequencedInput::Statement)): this vShard's writes
    /// (none unless every part succeeded) and its record (its verdict; on
    /// the lowest participant the decision, which is what the client gets).
    pub(super) async fn run_statement<'b>(
        &'b self,
        pos: TxnPos,
        now_us: i64,
        participants: &[u32],
        statement: &MultiShardStatement,
        published: &mut Option<Published<'b>>,
    ) -> Result<(Vec<RowWrite>, TxnRecord), String> {
        let board = self.local.board();
        let (writes, verdict) = match self.local.statement_part(self.vshard, statement, now_us).await {
            Ok(w) => {
                let rows_affected = w.len() as u64;
                (w, TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }]))
            }
            // Trouble of this attempt (storage reads fail as `Unavailable`),
            // not a property of the data.
            Err(e @ (ExecError::Unavailable(_) | ExecError::Overloaded(_) | ExecError::StatementTimeout(_))) => {
                return Err(e.to_string())
            }
            // Anything else follows from the data (an evaluation error is
            // `Internal` too): the same on any leader, so a verdict.
            Err(e) => (Vec::new(), TxnResult::Aborted(e)),
        };
        let lowest = participants[0];
        let (decision, record) = if lowest == self.vshard {
            // Collected first: a stream over a closure trips the compiler's
            // `Send` check of the spawned task.
            let others: Vec<_> = participants[1..].iter().map(|&v| self.verdict_of(v, pos)).collect();
            let verdicts: Vec<TxnResult> =
                futures::stream::iter(others).buffered(VERDICT_FETCHES_MAX).try_collect().await?;
            let decision = decide(std::iter::once(&verdict).chain(&verdicts));
            *published = Some(Published::start(board, self.vshard, pos, decision.clone()));
            (decision.clone(), decision)
        } else {
            *published = Some(Published::start(board, self.vshard, pos, verdict.clone()));
            (self.verdict_of(lowest, pos).await?, verdict)
        };
        let writes = if matches!(decision, TxnResult::Committed(_)) { writes } else { Vec::new() };
        Ok((writes, TxnRecord { result: Some(record), reads: Vec::new() }))
    }

    /// Participant `vshard`'s verdict on the statement at `pos`, from its
    /// leader; waits while it has none yet.
    async fn verdict_of(&self, vshard: u32, pos: TxnPos) -> Result<TxnResult, String> {
        loop {
            if !self.leading() {
                return Err("lost leadership".into());
            }
            match self.router.verdict_at(vshard, pos).await {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => continue,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS)).await,
                Err(e) => return Err(format!("the verdict of vShard {vshard}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rows_affected: u64) -> TxnResult {
        TxnResult::Committed(vec![StmtOutput { rows_affected, ..Default::default() }])
    }

    #[test]
    fn a_statement_commits_with_the_rows_of_all_parts_or_aborts_with_the_first_error() {
        assert_eq!(decide([ok(2), ok(0), ok(5)].iter()), ok(7));
        let dup = TxnResult::Aborted(ExecError::UniqueViolation("a".into()));
        let div = TxnResult::Aborted(ExecError::DivisionByZero("b".into()));
        // The first error in participant order, whichever arrived first.
        assert_eq!(decide([ok(1), div.clone(), dup.clone()].iter()), div);
        assert_eq!(decide([dup.clone(), ok(3)].iter()), dup);
    }
}
