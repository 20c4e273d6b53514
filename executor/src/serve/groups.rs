//! Group-level requests: a read barrier's index (`ReadIndex`), catalog
//! changes and reads on the meta leader (`Meta`, `Catalog`), ordering an
//! input and reading the epoch log on the sequencer leader (`Sequence`,
//! `Frontier`, `Epochs`), checksum points (`Checksum`) and collection of
//! what completed epochs leave behind (`Collect`).

use std::time::Duration;

use ordo_expr::ExecError;
use ordo_meta::command::MetaCommand;
use ordo_meta::logic::{decode_result, encode_command, CATALOG_KEY};
use ordo_raft::groups::{META_GROUP, SEQUENCER_GROUP};
use ordo_raft::{Consensus, GroupId, RequestId};
use ordo_sequencer::constants::EPOCHS_PER_READ_MAX;
use ordo_sequencer::{EpochInput, SealError};
use ordo_vshard::shard::{ShardCommand, TxnPos};

use super::{request_reply, storage, Fail, LeaderExecutor};
use crate::constants::LONG_POLL_MS;
use crate::rpc::ShardResponse;
use crate::sequenced::LocalEpochs;

impl LeaderExecutor {
    /// `ReadIndex`: the applied index after a read barrier.
    pub(super) async fn read_index(&self, group: &dyn Consensus) -> Result<ShardResponse, Fail> {
        group.read_barrier().await?;
        Ok(ShardResponse::Count(group.status().applied_index.unwrap_or(0)))
    }

    /// `Meta`: a catalog change, on the meta leader.
    pub(super) async fn meta(
        &self,
        group: &dyn Consensus,
        cmd: &MetaCommand,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        let reply = match id {
            Some(id) => request_reply(group.propose_request(id, encode_command(cmd), None).await?)?,
            None => group.propose(encode_command(cmd)).await?,
        };
        let result = decode_result(&reply).map_err(ExecError::Internal)?;
        Ok(ShardResponse::Meta(result))
    }

    /// `Catalog`: the catalog as stored, read linearizably.
    pub(super) async fn catalog(&self, gid: GroupId, group: &dyn Consensus) -> Result<ShardResponse, Fail> {
        if gid != META_GROUP {
            return Err(ExecError::Internal(format!("group {gid} holds no catalog")).into());
        }
        group.read_barrier().await?;
        // The index first: the bytes read after it are at least as new.
        let index = group.status().applied_index.unwrap_or(0);
        let bytes = self.reader.get(gid, CATALOG_KEY).map_err(storage)?.unwrap_or_default();
        Ok(ShardResponse::Catalog { index, bytes })
    }

    /// `Sequence`: orders a cross-shard input, on the sequencer leader.
    pub(super) async fn sequence(
        &self,
        gid: GroupId,
        mut input: EpochInput,
        id: Option<RequestId>,
    ) -> Result<ShardResponse, Fail> {
        if gid != SEQUENCER_GROUP {
            return Err(ExecError::Internal(format!("group {gid} does not sequence")).into());
        }
        // The sequencer orders an input once per request id.
        input.request = id;
        let sealer = self.sealer.as_ref().ok_or(Fail::NotLeader(None))?;
        match sealer.submit(input).await {
            Ok(p) => Ok(ShardResponse::Sequenced {
                pos: TxnPos { epoch: p.epoch.number, index: p.index },
                timestamp_us: p.epoch.timestamp_us,
            }),
            Err(SealError::Unknown(m)) => Err(ExecError::OutcomeUnknown(m).into()),
            Err(SealError::NotLeader(l)) => Err(Fail::NotLeader(l)),
            Err(SealError::Overloaded(n)) => {
                Err(ExecError::Overloaded(format!("sequencer queue full ({n} inputs)")).into())
            }
            Err(SealError::Unavailable(m)) => Err(ExecError::Unavailable(m).into()),
        }
    }

    /// This node's sequencer replica, if `gid` is the sequencer group.
    fn sequencer_epochs(&self, gid: GroupId) -> Result<&LocalEpochs, Fail> {
        let epochs = self.epochs.as_ref().ok_or(Fail::NotLeader(None))?;
        if gid != SEQUENCER_GROUP {
            return Err(ExecError::Internal(format!("group {gid} does not sequence")).into());
        }
        Ok(epochs)
    }

    /// `Frontier`: the last committed epoch, read linearizably.
    pub(super) async fn frontier(&self, gid: GroupId, group: &dyn Consensus) -> Result<ShardResponse, Fail> {
        let epochs = self.sequencer_epochs(gid)?;
        // Everything committed before this request is applied here,
        // and the state machine publishes an epoch before it counts
        // as applied. The leader lease spares a heartbeat round on
        // every fetch (ReadIndex when the lease has lapsed); it is
        // the bounded-clock-drift assumption every lease read makes.
        group.write_barrier().await?;
        Ok(ShardResponse::Count(*epochs.applied.borrow()))
    }

    /// `Epochs`: committed epochs `from..`, waiting a while for the first.
    pub(super) async fn epochs(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        from: u64,
        max: u32,
        wait_ms: u64,
    ) -> Result<ShardResponse, Fail> {
        let epochs = self.sequencer_epochs(gid)?;
        // Everything committed is applied here: no epoch is missed.
        group.write_barrier().await?;
        let max = (max as usize).min(EPOCHS_PER_READ_MAX);
        let wait = Duration::from_millis(wait_ms.min(LONG_POLL_MS));
        Ok(ShardResponse::Epochs(epochs.read_wait(from, max, wait).await?))
    }

    /// `Checksum`: replicates a checksum point through the group's log.
    pub(super) async fn checksum(&self, group: &dyn Consensus) -> Result<ShardResponse, Fail> {
        let (index, hash) = group.checksum().await?;
        Ok(ShardResponse::Checksum { index, hash: Some(hash) })
    }

    /// `Collect`: forgets outcome records (a vShard) or epochs (the
    /// sequencer) up to `through_epoch`, through the group's log.
    pub(super) async fn collect(
        &self,
        gid: GroupId,
        group: &dyn Consensus,
        through_epoch: u64,
    ) -> Result<ShardResponse, Fail> {
        if gid == SEQUENCER_GROUP {
            group.propose(ordo_sequencer::collect_command(through_epoch)).await?;
        } else if self.reader.has_outcome_through(gid, through_epoch).map_err(ExecError::Internal)?
            // The vShard also stores how far it was collected, which its
            // scheduler resumes from (a vShard with no outcome to drop too).
            || self.reader.collected_through(gid).map_err(ExecError::Internal)? < through_epoch
        {
            group.propose(ShardCommand::Collect { through_epoch }.encode()).await?;
        }
        Ok(ShardResponse::Done)
    }
}
