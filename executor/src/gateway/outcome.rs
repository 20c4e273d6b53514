//! Ordering an input through the sequencer and learning its outcome.

use std::time::Duration;

use ordo_expr::{ExecError, ExecResult};
use ordo_sequencer::EpochInput;

use crate::codec::{decode, encode};
use crate::constants::OUTCOME_WAIT_MS;
use crate::rpc::Router;
use crate::txn::program::{StmtOutput, TxnResult};
use crate::txn::record::TxnRecord;
use crate::txn::statement::SequencedInput;

/// Orders `input` through the sequencer for `participants` (ascending) and
/// waits until the `waited` ones (the lowest first) have applied it;
/// returns the lowest participant's outputs.
pub(super) async fn sequenced(
    router: &Router,
    input: SequencedInput,
    participants: Vec<u32>,
    waited: Vec<u32>,
) -> ExecResult<Vec<StmtOutput>> {
    // The request id is the router's to give (it sends the input once).
    let input = EpochInput { participants: participants.clone(), program: encode(&input), request: None };
    let pos = router.sequence(input).await?;
    // From here the outcome is decided (the epoch is committed); waiting
    // for every participant that writes makes the transaction visible on
    // all of them before the client hears of it.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(OUTCOME_WAIT_MS);
    let lowest = participants[0];
    let waits = waited.iter().map(|&v| async move {
        loop {
            // Only the lowest participant's record holds the client's result.
            match router.outcome(v, pos, v == lowest).await {
                Ok(outcome) if outcome.applied => return Ok(outcome.record),
                Ok(_) => {}
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::OutcomeUnknown(format!(
                    "transaction at epoch {} is ordered but vShard {v} has not applied it yet",
                    pos.epoch
                )));
            }
        }
    });
    let records = futures::future::try_join_all(waits).await?;
    let record = records
        .into_iter()
        .next()
        .flatten()
        // Only after `--collect-lag-ms` (well past OUTCOME_WAIT_MS): the
        // transaction was applied everywhere, its result is gone.
        .ok_or_else(|| {
            ExecError::OutcomeUnknown(format!(
                "the transaction at epoch {} was applied, but its outcome was already collected",
                pos.epoch
            ))
        })?;
    let record: TxnRecord = decode(&record)?;
    match record.result {
        Some(TxnResult::Committed(outputs)) => Ok(outputs),
        Some(TxnResult::Aborted(e)) => Err(e),
        None => Err(ExecError::Internal(format!("the lowest participant of epoch {} recorded no result", pos.epoch))),
    }
}
