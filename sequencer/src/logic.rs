//! The sequencer group's state machine and the epoch log it writes.

use std::sync::Arc;

use ordo_vshard::engine::Engine;
use ordo_vshard::keys::{self, GroupId, Section};
use ordo_vshard::raft::{ApplyContext, GroupLogic};
use parking_lot::Mutex;
use rocksdb::{Direction, IteratorMode};
use tokio::sync::watch;

use crate::epoch::{decode, encode, Epoch, Sealed, SequencerCommand};

const LAST_KEY: &[u8] = b"last";
const EPOCH_PREFIX: u8 = b'e';

fn epoch_key(number: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(EPOCH_PREFIX);
    k.extend_from_slice(&number.to_be_bytes());
    k
}

/// Applies `Seal` commands. Numbering and timestamps are decided here, from
/// the replicated state alone, so every replica assigns the same.
pub struct SequencerLogic {
    last: Mutex<Sealed>,
    /// Sealed in the batch being applied, published once it is written.
    unpublished: Mutex<Option<u64>>,
    /// The number of the last applied epoch, for subscribers.
    applied: watch::Sender<u64>,
}

impl Default for SequencerLogic {
    fn default() -> SequencerLogic {
        SequencerLogic {
            last: Mutex::new(Sealed { number: 0, timestamp_us: 0 }),
            unpublished: Mutex::new(None),
            applied: watch::channel(0).0,
        }
    }
}

impl SequencerLogic {
    /// Watches the number of the last epoch applied on this replica.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn last(&self) -> Sealed {
        *self.last.lock()
    }
}

impl GroupLogic for SequencerLogic {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8> {
        let cmd: SequencerCommand = match decode(command) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("undecodable sequencer command: {e}");
                return Vec::new();
            }
        };
        match cmd {
            SequencerCommand::Seal { proposed_timestamp_us, inputs } => {
                let mut last = self.last.lock();
                let sealed = Sealed {
                    number: last.number + 1,
                    // A new leader's clock may be behind the old one's: time
                    // never goes back, and every epoch gets its own instant.
                    timestamp_us: proposed_timestamp_us.max(last.timestamp_us + 1),
                };
                let epoch = Epoch { number: sealed.number, timestamp_us: sealed.timestamp_us, inputs };
                ctx.put(&epoch_key(sealed.number), &encode(&epoch));
                ctx.put(LAST_KEY, &encode(&sealed));
                *last = sealed;
                *self.unpublished.lock() = Some(sealed.number);
                encode(&sealed)
            }
        }
    }

    fn after_write(&self) {
        if let Some(n) = self.unpublished.lock().take() {
            self.applied.send_replace(n);
        }
    }

    fn reload(&self, gid: GroupId, db: &rocksdb::DB) {
        let sealed = match db.get(keys::key(gid, Section::Data, LAST_KEY)) {
            Ok(Some(b)) => decode(&b).unwrap_or_else(|e| panic!("corrupt sequencer state: {e}")),
            Ok(None) => Sealed { number: 0, timestamp_us: 0 },
            Err(e) => panic!("cannot read sequencer state: {e}"),
        };
        *self.last.lock() = sealed;
        self.applied.send_replace(sealed.number);
    }
}

/// Reads committed epochs from this node's replica of the sequencer group.
#[derive(Clone)]
pub struct EpochLog {
    gid: GroupId,
    engine: Arc<Engine>,
}

/// Most epochs one read returns.
pub const EPOCHS_PER_READ_MAX: usize = 1024;

impl EpochLog {
    pub fn new(gid: GroupId, engine: Arc<Engine>) -> EpochLog {
        EpochLog { gid, engine }
    }

    /// Epochs `from..` (at most `max`), in order and without gaps, as far as
    /// this replica has applied them (see [`SequencerLogic::subscribe`]).
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Epoch>, String> {
        let max = max.min(EPOCHS_PER_READ_MAX);
        let start = keys::key(self.gid, Section::Data, &epoch_key(from));
        let end = keys::key(self.gid, Section::Data, &[EPOCH_PREFIX + 1]);
        let mut out: Vec<Epoch> = Vec::new();
        for item in self.engine.db().iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if *k >= *end || out.len() >= max {
                break;
            }
            let epoch: Epoch = decode(&v)?;
            let expected = from + out.len() as u64;
            assert_eq!(epoch.number, expected, "epoch log has a gap");
            out.push(epoch);
        }
        Ok(out)
    }
}
