//! The sequencer group's state machine and the epoch log it writes.

use crate::constants::{EPOCHS_PER_COLLECT_MAX, EPOCHS_PER_READ_MAX, EPOCHS_READ_BYTES_MAX};
use std::sync::Arc;

use ordo_raft::engine::Engine;
use ordo_raft::keys::{self, GroupId, Section};
use ordo_raft::{ApplyContext, GroupLogic};
use parking_lot::Mutex;
use rocksdb::{Direction, IteratorMode};
use tokio::sync::watch;

use crate::epoch::{decode, encode, Epoch, EpochInput, Placed, SealReply, Sealed, SequencerCommand};

const LAST_KEY: &[u8] = b"last";
/// The first epoch still stored (those before it were collected).
const FIRST_KEY: &[u8] = b"first";
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
    /// The first epoch not yet collected.
    first: Mutex<u64>,
    /// Sealed in the batch being applied, published once it is written.
    unpublished: Mutex<Option<u64>>,
    /// The number of the last applied epoch, for subscribers.
    applied: watch::Sender<u64>,
}

impl Default for SequencerLogic {
    fn default() -> SequencerLogic {
        SequencerLogic {
            last: Mutex::new(Sealed { number: 0, timestamp_us: 0 }),
            first: Mutex::new(1),
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

impl SequencerLogic {
    /// Seals `inputs` into the next epoch, except those whose request was
    /// sequenced before (a retry), which keep their first place, and those
    /// sent too long ago to tell (see [`SealReply::placed`]).
    fn seal(&self, ctx: &mut ApplyContext<'_>, proposed_timestamp_us: i64, inputs: Vec<EpochInput>) -> Vec<u8> {
        let mut last = self.last.lock();
        let sealed = Sealed {
            number: last.number + 1,
            // A new leader's clock may be behind the old one's: time
            // never goes back, and every epoch gets its own instant.
            timestamp_us: proposed_timestamp_us.max(last.timestamp_us + 1),
        };
        // Request records age by the epochs' clock, which never goes back.
        let stamp_ms = u64::try_from(sealed.timestamp_us / 1000).unwrap_or(0);
        ctx.expire_requests(stamp_ms).unwrap_or_else(|e| panic!("storage failed while sealing: {e}"));
        let mut kept = Vec::with_capacity(inputs.len());
        let mut placed = Vec::with_capacity(inputs.len());
        for input in inputs {
            let first = match input.request {
                Some(id) => ctx.applied_request(id, stamp_ms).unwrap_or_else(|e| panic!("storage failed: {e}")),
                None => None,
            };
            if let Some(record) = first {
                let bytes = record.reply.unwrap_or_default();
                placed.push(Some(decode::<Placed>(&bytes).unwrap_or_else(|e| panic!("corrupt request record: {e}"))));
                continue;
            }
            // As for every group's requests (`ordo_raft::requests`): within
            // the window, any earlier attempt's record is still live.
            if input.request.is_some_and(|id| !id.may_apply_at(stamp_ms)) {
                placed.push(None);
                continue;
            }
            let here = Placed { epoch: sealed, index: kept.len() as u32 };
            if let Some(id) = input.request {
                ctx.record_request(id, stamp_ms, &encode(&here));
            }
            placed.push(Some(here));
            // The id served its purpose (the record above); stored epochs
            // stay free of each run's session numbers.
            kept.push(EpochInput { request: None, ..input });
        }
        let epoch = Epoch { number: sealed.number, timestamp_us: sealed.timestamp_us, inputs: kept };
        ctx.put(&epoch_key(sealed.number), &encode(&epoch));
        ctx.put(LAST_KEY, &encode(&sealed));
        *last = sealed;
        *self.unpublished.lock() = Some(sealed.number);
        encode(&SealReply { sealed, placed })
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
            SequencerCommand::Seal { proposed_timestamp_us, inputs } => self.seal(ctx, proposed_timestamp_us, inputs),
            SequencerCommand::Collect { through } => {
                let last = self.last.lock().number;
                let mut first = self.first.lock();
                // The last epoch always stays: a scheduler resuming below the
                // first kept epoch reads it and so learns where the log is.
                let through = through.min(last.saturating_sub(1)).min(*first + EPOCHS_PER_COLLECT_MAX - 1);
                // Point deletes, not a range delete: range tombstones in the
                // memtable slow every later read of the whole DB.
                for n in *first..=through {
                    ctx.delete(&epoch_key(n));
                }
                if through >= *first {
                    *first = through + 1;
                    ctx.put(FIRST_KEY, &encode(&*first));
                }
                Vec::new()
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
        let first = match db.get(keys::key(gid, Section::Data, FIRST_KEY)) {
            Ok(Some(b)) => decode(&b).unwrap_or_else(|e| panic!("corrupt sequencer state: {e}")),
            Ok(None) => 1,
            Err(e) => panic!("cannot read sequencer state: {e}"),
        };
        *self.last.lock() = sealed;
        *self.first.lock() = first;
        self.applied.send_replace(sealed.number);
    }
}

fn first_retained(
    gid: GroupId,
    get: impl FnOnce(Vec<u8>) -> Result<Option<Vec<u8>>, rocksdb::Error>,
) -> Result<u64, String> {
    match get(keys::key(gid, Section::Data, FIRST_KEY)).map_err(|e| e.to_string())? {
        Some(b) => decode(&b),
        None => Ok(1),
    }
}

/// Reads committed epochs from this node's replica of the sequencer group.
#[derive(Clone)]
pub struct EpochLog {
    gid: GroupId,
    engine: Arc<Engine>,
}

impl EpochLog {
    pub fn new(gid: GroupId, engine: Arc<Engine>) -> EpochLog {
        EpochLog { gid, engine }
    }

    /// Epochs `from..` (at most `max`), in order and without gaps, as far as
    /// this replica has applied them (see [`SequencerLogic::subscribe`]).
    /// Collected epochs are skipped: the result starts at the first epoch
    /// still stored if that is after `from`.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<Epoch>, String> {
        let max = max.min(EPOCHS_PER_READ_MAX);
        // One snapshot for both reads: a collection between them would
        // look like a gap.
        let snap = self.engine.db().snapshot();
        let from = from.max(first_retained(self.gid, |k| snap.get(k))?);
        let start = keys::key(self.gid, Section::Data, &epoch_key(from));
        let end = keys::key(self.gid, Section::Data, &[EPOCH_PREFIX + 1]);
        let mut out: Vec<Epoch> = Vec::new();
        let mut bytes = 0usize;
        for item in snap.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if *k >= *end || out.len() >= max || bytes >= EPOCHS_READ_BYTES_MAX {
                break;
            }
            bytes += v.len();
            let epoch: Epoch = decode(&v)?;
            let expected = from + out.len() as u64;
            assert_eq!(epoch.number, expected, "epoch log has a gap");
            out.push(epoch);
        }
        Ok(out)
    }

    /// The first epoch this replica still stores (earlier ones were
    /// collected).
    pub fn first_retained(&self) -> Result<u64, String> {
        first_retained(self.gid, |k| self.engine.db().get(k))
    }
}
