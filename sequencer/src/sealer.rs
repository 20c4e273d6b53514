//! The sealer: on the sequencer leader, turns a stream of inputs into
//! epochs. An epoch is sealed `epoch_ms` after its first input arrived or
//! as soon as it holds `inputs_max` inputs or `bytes_max` bytes, whichever
//! comes first; sealing is one Raft proposal, and every input's submitter
//! learns its epoch once that proposal is committed and applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_metrics::{seconds_since, Outcome, SequencerMetrics};

use ordo_raft::constants::REQUEST_APPLY_WINDOW_MS;
use ordo_raft::{Consensus, ConsensusError};
use tokio::sync::{mpsc, oneshot};

use crate::constants::{EPOCH_BYTES_MAX, EPOCH_INPUTS_MAX, EPOCH_MS_DEFAULT, SEAL_QUEUE_MAX};
use crate::epoch::{decode, encode, EpochInput, Placed, SealReply, SequencerCommand};

#[derive(Clone, Debug)]
pub struct SealerConfig {
    /// Longest an input waits for its epoch to be sealed.
    pub epoch_ms: u64,
    /// Most inputs in one epoch.
    pub inputs_max: usize,
    /// Most program bytes in one epoch.
    pub bytes_max: usize,
    /// Inputs waiting to be sealed; more are refused (retryable).
    pub queue_max: usize,
    /// Where the sealer records its epochs (the node's registry holds it).
    pub metrics: SequencerMetrics,
}

impl Default for SealerConfig {
    fn default() -> SealerConfig {
        SealerConfig {
            epoch_ms: EPOCH_MS_DEFAULT,
            inputs_max: EPOCH_INPUTS_MAX,
            bytes_max: EPOCH_BYTES_MAX,
            queue_max: SEAL_QUEUE_MAX,
            metrics: SequencerMetrics::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SealError {
    #[error("this node does not lead the sequencer (leader: {0:?})")]
    NotLeader(Option<u64>),
    #[error("sequencer overloaded: {0} inputs waiting")]
    Overloaded(usize),
    #[error("sequencer unavailable: {0}")]
    Unavailable(String),
    /// The epoch proposal's fate is unknown (see `ConsensusError::Unknown`).
    #[error("sequencer: outcome unknown: {0}")]
    Unknown(String),
}

struct Pending {
    input: EpochInput,
    arrived: Instant,
    done: oneshot::Sender<Result<Placed, SealError>>,
}

pub struct Sealer {
    queue: mpsc::Sender<Pending>,
    queue_max: usize,
}

impl Sealer {
    /// Starts the sealing loop for `group` (the sequencer group replica on
    /// this node). Inputs submitted while this node does not lead it fail
    /// with `NotLeader`.
    pub fn start(group: Arc<dyn Consensus>, config: SealerConfig) -> Sealer {
        let (queue, rx) = mpsc::channel(config.queue_max);
        let queue_max = config.queue_max;
        tokio::spawn(run(group, config, rx));
        Sealer { queue, queue_max }
    }

    /// Orders `input`; returns the epoch it was sealed into and its index there.
    pub async fn submit(&self, input: EpochInput) -> Result<Placed, SealError> {
        let (done, rx) = oneshot::channel();
        self.queue.try_send(Pending { input, arrived: Instant::now(), done }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SealError::Overloaded(self.queue_max),
            mpsc::error::TrySendError::Closed(_) => SealError::Unavailable("sealer stopped".into()),
        })?;
        rx.await.map_err(|_| SealError::Unavailable("sealer stopped".into()))?
    }
}

fn wall_clock_us() -> i64 {
    // The sequencer is where time enters the system: the chosen timestamp is
    // replicated with the epoch, so replay never reads a clock.
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

async fn run(group: Arc<dyn Consensus>, config: SealerConfig, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(config.epoch_ms);
        let mut bytes = first.input.program.len();
        let mut batch = vec![first];
        while batch.len() < config.inputs_max && bytes < config.bytes_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => {
                    bytes += p.input.program.len();
                    batch.push(p);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let arrivals: Vec<Instant> = batch.iter().map(|p| p.arrived).collect();
        let (inputs, waiters): (Vec<EpochInput>, Vec<_>) = batch.into_iter().map(|p| (p.input, p.done)).unzip();
        let count = inputs.len();
        let cmd = SequencerCommand::Seal { proposed_timestamp_us: wall_clock_us(), inputs };
        let start = Instant::now();
        let result = match group.propose(encode(&cmd)).await {
            Ok(reply) => decode::<SealReply>(&reply).map_err(SealError::Unavailable),
            Err(ConsensusError::NotLeader { leader, .. }) => Err(SealError::NotLeader(leader)),
            Err(ConsensusError::Unknown { reason, .. }) => Err(SealError::Unknown(reason)),
            Err(e) => Err(SealError::Unavailable(e.to_string())),
        };
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(SealError::Unknown(_)) => Outcome::Unknown,
            Err(_) => Outcome::Refused,
        };
        config.metrics.sealed(count, outcome, seconds_since(start));
        if outcome == Outcome::Ok {
            arrivals.iter().for_each(|a| config.metrics.placed(seconds_since(*a)));
        }
        for (i, w) in waiters.into_iter().enumerate() {
            let placed = result.as_ref().map_err(Clone::clone).and_then(|r| match r.placed.get(i) {
                Some(Some(p)) => Ok(*p),
                Some(None) => Err(SealError::Unknown(format!(
                    "the request was first sent more than {} s ago and is not sequenced now",
                    REQUEST_APPLY_WINDOW_MS / 1000
                ))),
                None => Err(SealError::Unavailable("a seal reply lacks an input".into())),
            });
            let _ = w.send(placed);
        }
    }
}
