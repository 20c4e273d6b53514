//! Where a vShard's scheduler reads the sequencer's epochs from.
//!
//! A node that hosts a sequencer replica reads its own replica, which Raft
//! keeps up to date ([`LocalEpochs`]). A node without one (a cluster of
//! more nodes than `--replication`) asks the sequencer's leader, which
//! answers from its replica once it holds epochs past the asked one
//! ([`ShardRequest::Epochs`], a long poll). Either way a scheduler gets
//! committed epochs in order, without gaps, from wherever it left off.
//!
//! [`ShardRequest::Epochs`]: crate::rpc::ShardRequest::Epochs

use std::time::Duration;

use ordo_expr::{ExecError, ExecResult};
use ordo_sequencer::{Epoch, EpochLog};
use tokio::sync::watch;

use crate::rpc::Router;

/// This node's sequencer replica: its epoch log and the last epoch applied.
#[derive(Clone)]
pub struct LocalEpochs {
    pub log: EpochLog,
    pub applied: watch::Receiver<u64>,
}

impl LocalEpochs {
    /// Epochs `from..` (at most `max`); waits up to `wait` for the first.
    pub async fn read_wait(&self, from: u64, max: usize, wait: Duration) -> ExecResult<Vec<Epoch>> {
        let mut applied = self.applied.clone();
        let _ = tokio::time::timeout(wait, applied.wait_for(|&e| e >= from)).await;
        self.log.read(from, max).map_err(ExecError::Internal)
    }
}

#[derive(Clone)]
pub enum EpochSource {
    Local(LocalEpochs),
    /// The sequencer leader's replica, over the network.
    Remote,
}

impl EpochSource {
    /// Epochs `from..` (at most `max`); empty if none came within `wait`.
    pub async fn read_wait(&self, router: &Router, from: u64, max: usize, wait: Duration) -> ExecResult<Vec<Epoch>> {
        match self {
            EpochSource::Local(local) => local.read_wait(from, max, wait).await,
            EpochSource::Remote => {
                let epochs = router.epochs(from, max as u32, wait.as_millis() as u64).await?;
                // Collected epochs are skipped, never reordered.
                let in_order = epochs.windows(2).all(|w| w[1].number == w[0].number + 1)
                    && epochs.first().is_none_or(|e| e.number >= from);
                if !in_order {
                    return Err(ExecError::Internal("the sequencer leader sent epochs out of order".into()));
                }
                Ok(epochs)
            }
        }
    }
}
