//! Questions about sequenced positions, from the other participants of a
//! transaction and from gateways: a participant's rows as of a position
//! (`ReadAt`), whether a position is applied and its record (`Outcome`), a
//! participant's verdict on a sequenced statement (`VerdictAt`), and how far
//! a vShard's scheduler has completed (`CompleteThrough`).

use std::time::Duration;

use ordo_expr::{storage_error, ExecError, ExecResult};
use ordo_raft::groups::vshard_group;
use ordo_raft::{Consensus, GroupId};
use ordo_vshard::shard::{outcome_key, TxnPos};

use super::{storage, vshard_of_group, Fail, LeaderExecutor};
use crate::constants::LONG_POLL_MS;
use crate::rpc::ShardResponse;
use crate::sequenced::AsOf;
use crate::txn::program::read_limit_exceeded;
use crate::txn::record::{program_scan, stored_record};

impl LeaderExecutor {
    /// `ReadAt`: the row at `key` (`prefix`: every row under it) of
    /// `vshard` as of sequenced position `pos`: live while this leader
    /// holds the position's locks, from the position's record once it is
    /// applied, else "not yet".
    pub(super) async fn read_at(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        pos: TxnPos,
        vshard: u32,
        key: Vec<u8>,
        prefix: bool,
    ) -> Result<ShardResponse, Fail> {
        if vshard_group(vshard) != gid {
            return Err(ExecError::Internal("ReadAt sent to the wrong group".into()).into());
        }
        let wait = Duration::from_millis(LONG_POLL_MS);
        match self.board.wait_position(&self.reader, vshard, pos, true, wait).await? {
            None => Ok(ShardResponse::NotYet),
            Some(AsOf::Serving) => {
                // The scheduler holds the vShard at `pos`; it stops
                // serving before its writes may apply, so a read that
                // finished while it still serves is as of `pos`.
                // Any answer, an error included, counts only once the
                // checks below pass: a scan over a bound fails the
                // asking program, as it fails this one's, but only if
                // read as of `pos`.
                let rows: ExecResult<Vec<_>> = if prefix {
                    program_scan(self.reader.scan_prefix(gid, &key))
                        .and_then(|rows| rows.ok_or_else(read_limit_exceeded))
                } else {
                    self.reader
                        .get(gid, &key)
                        .map(|row| row.map(|v| (key, v)).into_iter().collect())
                        .map_err(storage_error)
                };
                // Still this group's leader after the read (lease,
                // else ReadIndex): no newer leader can have ordered
                // anything before `pos` that these rows miss.
                group.write_barrier().await?;
                // And `pos` was not applied before the read ended (an
                // earlier round's proposal can still commit).
                if !self.board.is_serving(vshard, pos)
                    || self.reader.is_applied(gid, pos).map_err(ExecError::Internal)?
                {
                    return Ok(ShardResponse::NotYet);
                }
                Ok(ShardResponse::Pairs(rows?))
            }
            Some(AsOf::Applied) => {
                // Applied: the rows as of `pos` are in its record.
                let record = stored_record(&self.reader, vshard, pos)?.unwrap_or_default();
                match record.read(prefix, &key) {
                    Some(read) if read.over_limit => Err(read_limit_exceeded().into()),
                    Some(read) => Ok(ShardResponse::Pairs(read.rows.clone())),
                    // A passive participant keeps no record: the
                    // asker applied this position already (its next
                    // attempt sees that), or execution was not
                    // deterministic.
                    None => Err(ExecError::Internal(format!(
                        "vShard {vshard} applied epoch {} without recording what another participant asks for: \
                         the asker applied it already, or execution was nondeterministic",
                        pos.epoch
                    ))
                    .into()),
                }
            }
        }
    }

    /// `Outcome`: waits (a while) until this vShard has applied `pos`; with
    /// `record`, the record it stored for it.
    pub(super) async fn outcome(&self, gid: GroupId, pos: TxnPos, record: bool) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let wait = Duration::from_millis(LONG_POLL_MS);
        if self.board.wait_position(&self.reader, vshard, pos, false, wait).await?.is_none() {
            return Ok(ShardResponse::Outcome { applied: false, record: None });
        }
        let record = if record { self.reader.get(gid, &outcome_key(pos)).map_err(storage)? } else { None };
        Ok(ShardResponse::Outcome { applied: true, record })
    }

    /// `VerdictAt`: this vShard's verdict on its part of the sequenced
    /// statement at `pos` (the lowest participant's: the decision).
    pub(super) async fn verdict_at(&self, gid: GroupId, pos: TxnPos) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let wait = Duration::from_millis(LONG_POLL_MS);
        match self.board.verdict_at(&self.reader, vshard, pos, wait).await? {
            Some(verdict) => Ok(ShardResponse::Verdict(verdict)),
            None => Ok(ShardResponse::NotYet),
        }
    }

    /// `CompleteThrough`: the epoch through which this leader's scheduler
    /// has completed every sequenced transaction of the vShard.
    pub(super) fn complete_through(&self, gid: GroupId, group: &dyn Consensus) -> Result<ShardResponse, Fail> {
        let vshard = vshard_of_group(gid)?;
        let stat = self.board.scheduler_stat(vshard);
        if stat.leading_term.is_none() || stat.leading_term != group.leader_term() {
            return Err(ExecError::Unavailable(format!("vShard {vshard}'s scheduler is not running yet")).into());
        }
        Ok(ShardResponse::Count(stat.complete_through_epoch))
    }
}
