//! One vShard's data: its commands (row writes), their apply, local reads.
//!
//! Row keys inside a vShard are `table_id (u64 BE) ++ memcomparable(pk)`,
//! so one table's rows in a shard are one contiguous range.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use ordo_raft::codec::Pairs;

use crate::constants::SCAN_ROWS_MAX;
use crate::history::{self, Version};
pub use crate::types::{ScanError, TxnPos};
use ordo_raft::engine::{Engine, OwnedSnapshot};
use ordo_raft::keys::{self, GroupId, Section};
use ordo_raft::{ApplyContext, GroupLogic};

/// One row write: `value: None` deletes the row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowWrite {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A command replicated through a vShard's log. Commands carry their
/// effects (write sets), not statements: applying one is deterministic by
/// construction, whatever node computed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// A single-shard write set. `after`: the last sequenced position the
    /// leader ordered before it, which places its row versions in the
    /// global order (see [`crate::history`]).
    Write { writes: Vec<RowWrite>, after: TxnPos },
    /// Removes every row of a dropped table from this shard.
    DropTable { table_id: u64 },
    /// This vShard's part of a sequenced (cross-shard) transaction: its
    /// writes, and on the transaction's coordinator the outcome every other
    /// participant fetches. Applied at most once: a command for a position
    /// at or before the shard's recorded one is skipped, so a new leader
    /// replaying an epoch cannot apply a transaction twice.
    /// `watermark`: the proposer's word that every sequenced transaction of
    /// this vShard up to it is applied once this command is (transactions
    /// that do not conflict complete out of order).
    Sequenced {
        pos: TxnPos,
        writes: Vec<RowWrite>,
        #[serde(with = "serde_bytes")]
        outcome: Option<Vec<u8>>,
        watermark: TxnPos,
    },
    /// Forget the outcomes recorded for positions in epochs up to
    /// `through_epoch`: every participant has applied them.
    Collect { through_epoch: u64 },
}

/// Data key of the vShard's sequenced watermark ("applied through epoch
/// E"): every sequenced transaction of the vShard up to it is applied.
/// Starts with 0xFF: table ids never do (they count up from 1), so it
/// cannot collide with a row.
pub const APPLIED_POS_KEY: &[u8] = b"\xffpos";
/// Data key of the last epoch collected through (`ShardCommand::Collect`):
/// every sequenced transaction of the vShard up to it is complete, so its
/// scheduler never needs epochs up to it again.
pub const COLLECTED_KEY: &[u8] = b"\xffcollected";
/// Data key prefix of the outcomes a coordinator recorded, by position.
pub const OUTCOME_PREFIX: &[u8] = b"\xffout";
/// Data key prefix of sequenced positions applied above the watermark.
pub const DONE_PREFIX: &[u8] = b"\xffdone";

/// Data key prefix of each table's *version* in this vShard: the log index
/// of the last entry that wrote a row of the table here. Written in the
/// same batch as the rows, so a storage snapshot holds a table's rows and
/// the version they are at; a later read of an equal version proves the
/// rows unchanged (what a transaction's reconnaissance is checked with).
pub const TABLE_VERSION_PREFIX: &[u8] = b"\xffver";

/// The data key of `table_id`'s version (see [`TABLE_VERSION_PREFIX`]).
pub fn table_version_key(table_id: u64) -> Vec<u8> {
    let mut k = TABLE_VERSION_PREFIX.to_vec();
    k.extend_from_slice(&table_id.to_be_bytes());
    k
}

/// A stored table version (0: the table was never written here).
pub fn decode_table_version(stored: Option<&[u8]>) -> u64 {
    stored.and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// Sets the version of every table `writes` touch to the entry's index.
fn bump_table_versions(ctx: &mut ApplyContext<'_>, writes: &[RowWrite]) {
    let mut tables = std::collections::BTreeSet::new();
    for w in writes {
        // Row keys start with the table id; reserved keys start with 0xFF.
        if let Some(id) = w.key.get(..8).filter(|k| k[0] != 0xFF) {
            tables.insert(u64::from_be_bytes(id.try_into().expect("8 bytes")));
        }
    }
    let index = ctx.log_index().to_be_bytes();
    for t in tables {
        ctx.put(&table_version_key(t), &index);
    }
}

/// Writes rows, their versions and their tables' versions.
fn apply_writes(ctx: &mut ApplyContext<'_>, writes: Vec<RowWrite>, version: Version) {
    bump_table_versions(ctx, &writes);
    for w in writes {
        ctx.put(&history::version_key(&w.key, version), &history::encode_value(w.value.as_deref()));
        match w.value {
            Some(v) => ctx.put(&w.key, &v),
            None => ctx.delete(&w.key),
        }
    }
}

fn pos_key(prefix: &[u8], pos: TxnPos) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&pos.epoch.to_be_bytes());
    k.extend_from_slice(&pos.index.to_be_bytes());
    k
}

pub fn outcome_key(pos: TxnPos) -> Vec<u8> {
    pos_key(OUTCOME_PREFIX, pos)
}

pub fn done_key(pos: TxnPos) -> Vec<u8> {
    pos_key(DONE_PREFIX, pos)
}

fn decode_pos_key(prefix: &[u8], key: &[u8]) -> Option<TxnPos> {
    let rest = key.strip_prefix(prefix)?;
    let epoch = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let index = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
    Some(TxnPos { epoch, index })
}

/// Which sequenced transactions a vShard has applied: all up to the
/// watermark, and these above it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SequencedProgress {
    pub watermark: TxnPos,
    pub done: std::collections::BTreeSet<TxnPos>,
}

impl SequencedProgress {
    pub fn is_applied(&self, pos: TxnPos) -> bool {
        pos <= self.watermark || self.done.contains(&pos)
    }
}

impl ShardCommand {
    pub fn encode(&self) -> Vec<u8> {
        ordo_raft::codec::encode(self)
    }
}

/// The key prefix of a table's rows inside a vShard.
pub fn table_prefix(table_id: u64) -> [u8; 8] {
    table_id.to_be_bytes()
}

pub fn row_key(table_id: u64, pk: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + pk.len());
    k.extend_from_slice(&table_prefix(table_id));
    k.extend_from_slice(pk);
    k
}

/// The apply side of a vShard group (one per group: it caches the group's
/// applied position, which entries of one apply batch must see).
#[derive(Default)]
pub struct ShardLogic {
    applied: parking_lot::Mutex<SequencedProgress>,
    /// Positions whose outcome this replica stores (as coordinator). Kept
    /// here, not found by a scan at apply, because entries of one apply
    /// batch are not in RocksDB yet and batches differ between replicas.
    outcomes: parking_lot::Mutex<std::collections::BTreeSet<TxnPos>>,
    /// The epoch collected through (see [`COLLECTED_KEY`]).
    collected: parking_lot::Mutex<u64>,
}

impl GroupLogic for ShardLogic {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8> {
        let cmd: ShardCommand = match ordo_raft::codec::decode(command) {
            Ok(c) => c,
            Err(e) => {
                // Every replica fails the same way on the same bytes, so
                // skipping keeps them identical; the proposer sees the error.
                tracing::error!(group = ctx.group_id(), "undecodable shard command: {e}");
                return b"undecodable command".to_vec();
            }
        };
        match cmd {
            ShardCommand::Write { writes, after } => {
                let version = Version::single(after, ctx.log_index());
                apply_writes(ctx, writes, version);
            }
            ShardCommand::DropTable { table_id } => {
                ctx.delete_prefix(&table_prefix(table_id));
                ctx.delete_prefix(&history::history_prefix(&table_prefix(table_id)));
                ctx.delete(&table_version_key(table_id));
            }
            ShardCommand::Sequenced { pos, writes, outcome, watermark } => {
                let mut applied = self.applied.lock();
                if applied.is_applied(pos) {
                    return b"duplicate".to_vec();
                }
                apply_writes(ctx, writes, Version::sequenced(pos));
                if let Some(o) = outcome {
                    ctx.put(&outcome_key(pos), &o);
                    self.outcomes.lock().insert(pos);
                }
                if watermark > applied.watermark {
                    applied.watermark = watermark;
                    ctx.put(APPLIED_POS_KEY, &ordo_raft::codec::encode(&watermark));
                    // Point deletes, not a range delete: range tombstones in
                    // the memtable slow every later read of the whole DB.
                    let below: Vec<TxnPos> = applied.done.range(..=watermark).copied().collect();
                    for d in below {
                        ctx.delete(&done_key(d));
                        applied.done.remove(&d);
                    }
                }
                if pos > applied.watermark {
                    applied.done.insert(pos);
                    ctx.put(&done_key(pos), b"");
                }
            }
            ShardCommand::Collect { through_epoch } => {
                let mut collected = self.collected.lock();
                if through_epoch > *collected {
                    *collected = through_epoch;
                    ctx.put(COLLECTED_KEY, &through_epoch.to_be_bytes());
                }
                let mut outcomes = self.outcomes.lock();
                let keep = outcomes.split_off(&TxnPos { epoch: through_epoch.saturating_add(1), index: 0 });
                for pos in std::mem::replace(&mut *outcomes, keep) {
                    ctx.delete(&outcome_key(pos));
                }
            }
        }
        Vec::new()
    }

    fn reload(&self, gid: GroupId, db: &rocksdb::DB) {
        let progress =
            read_progress(gid, db).unwrap_or_else(|e| panic!("cannot read sequenced progress of group {gid}: {e}"));
        *self.applied.lock() = progress;
        let outcomes = read_positions(gid, db, OUTCOME_PREFIX)
            .unwrap_or_else(|e| panic!("cannot read outcomes of group {gid}: {e}"));
        *self.outcomes.lock() = outcomes;
        let collected = read_collected(gid, db).unwrap_or_else(|e| panic!("cannot read group {gid}: {e}"));
        *self.collected.lock() = collected;
    }
}

/// Reads of a vShard replica's applied state. Callers decide freshness
/// (e.g. a leader read barrier first).
#[derive(Clone)]
pub struct ShardReader {
    engine: Arc<Engine>,
}

impl ShardReader {
    pub fn new(engine: Arc<Engine>) -> ShardReader {
        ShardReader { engine }
    }

    pub fn get(&self, gid: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.engine.db().get(keys::key(gid, Section::Data, key))
    }

    /// [`ShardReader::get`] as of `snapshot`.
    pub fn get_at(
        &self,
        gid: GroupId,
        key: &[u8],
        snapshot: &OwnedSnapshot,
    ) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.engine.db().get_opt(keys::key(gid, Section::Data, key), &snapshot.read_options())
    }

    /// The sequenced transactions this replica of `gid` has applied.
    pub fn sequenced_progress(&self, gid: GroupId) -> Result<SequencedProgress, String> {
        read_progress(gid, self.engine.db())
    }

    /// How many outcomes this replica of `gid` stores.
    pub fn outcomes_stored(&self, gid: GroupId) -> Result<usize, String> {
        let start = keys::key(gid, Section::Data, OUTCOME_PREFIX);
        let end = keys::prefix_end(&start).expect("prefix does not end in 0xFF");
        let mut n = 0;
        for item in self.engine.db().iterator(IteratorMode::From(&start, Direction::Forward)) {
            if *item.map_err(|e| e.to_string())?.0 >= *end {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Whether this replica of `gid` stores an outcome in an epoch up to
    /// `through_epoch`.
    pub fn has_outcome_through(&self, gid: GroupId, through_epoch: u64) -> Result<bool, String> {
        let start = keys::key(gid, Section::Data, OUTCOME_PREFIX);
        let end =
            keys::key(gid, Section::Data, &outcome_key(TxnPos { epoch: through_epoch.saturating_add(1), index: 0 }));
        let mut it = self.engine.db().iterator(IteratorMode::From(&start, Direction::Forward));
        match it.next() {
            Some(item) => Ok(*item.map_err(|e| e.to_string())?.0 < *end),
            None => Ok(false),
        }
    }

    /// The epoch `gid` was collected through (see [`COLLECTED_KEY`]).
    pub fn collected_through(&self, gid: GroupId) -> Result<u64, String> {
        read_collected(gid, self.engine.db())
    }

    /// Whether this replica of `gid` has applied sequenced position `pos`.
    pub fn is_applied(&self, gid: GroupId, pos: TxnPos) -> Result<bool, String> {
        if self.get(gid, &done_key(pos)).map_err(|e| e.to_string())?.is_some() {
            return Ok(true);
        }
        // The watermark alone: one key read, no scan of the positions
        // applied above it.
        Ok(pos <= read_watermark(gid, self.engine.db())?)
    }

    /// Every `(key, value)` of `gid` whose key starts with `prefix`.
    pub fn scan_prefix(&self, gid: GroupId, prefix: &[u8]) -> Result<Pairs, ScanError> {
        self.scan_prefix_at(gid, prefix, None)
    }

    /// Every row of `gid` under `prefix` at `at` (see [`crate::history`]),
    /// read from `snapshot`.
    pub fn scan_as_of(
        &self,
        gid: GroupId,
        prefix: &[u8],
        at: history::ReadPoint,
        snapshot: &OwnedSnapshot,
    ) -> Result<Pairs, ScanError> {
        history::scan_as_of(&self.engine, gid, prefix, at, snapshot)
    }

    /// Drops `gid`'s row versions no read at `horizon` or later needs, from
    /// row key `from` on, reading about `keys_max` keys (see
    /// [`history::collect`]).
    pub fn collect_history(
        &self,
        gid: GroupId,
        horizon: history::ReadPoint,
        from: Option<&[u8]>,
        keys_max: usize,
    ) -> Result<history::Collected, String> {
        history::collect(&self.engine, gid, horizon, from, keys_max)
    }

    /// The log index `gid`'s replica had applied when `snapshot` was taken.
    pub fn applied_index_at(&self, gid: GroupId, snapshot: &OwnedSnapshot) -> Result<u64, String> {
        ordo_raft::applied_index_at(gid, &self.engine, snapshot)
    }

    /// A snapshot of every group's data as of now.
    pub fn snapshot(&self) -> OwnedSnapshot {
        OwnedSnapshot::take(&self.engine)
    }

    /// [`ShardReader::scan_prefix`] as of `snapshot` (None: now).
    pub fn scan_prefix_at(
        &self,
        gid: GroupId,
        prefix: &[u8],
        snapshot: Option<&OwnedSnapshot>,
    ) -> Result<Pairs, ScanError> {
        let start = keys::key(gid, Section::Data, prefix);
        let end = keys::prefix_end(&start).expect("group keys never end in 0xFF");
        let mut out = Vec::new();
        let opts = snapshot.map(|s| s.read_options()).unwrap_or_default();
        for item in self.engine.db().iterator_opt(IteratorMode::From(&start, Direction::Forward), opts) {
            let (k, v) = item.map_err(|e| ScanError::Storage(e.to_string()))?;
            if *k >= *end {
                break;
            }
            if out.len() >= SCAN_ROWS_MAX {
                return Err(ScanError::TooManyRows(SCAN_ROWS_MAX));
            }
            out.push((k[keys::SECTION_PREFIX_LEN..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

fn read_collected(gid: GroupId, db: &rocksdb::DB) -> Result<u64, String> {
    match db.get(keys::key(gid, Section::Data, COLLECTED_KEY)).map_err(|e| e.to_string())? {
        Some(b) => Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| "corrupt collected epoch")?)),
        None => Ok(0),
    }
}

fn read_watermark(gid: GroupId, db: &rocksdb::DB) -> Result<TxnPos, String> {
    match db.get(keys::key(gid, Section::Data, APPLIED_POS_KEY)).map_err(|e| e.to_string())? {
        Some(b) => ordo_raft::codec::decode(&b).map_err(|e| e.to_string()),
        None => Ok(TxnPos::default()),
    }
}

fn read_progress(gid: GroupId, db: &rocksdb::DB) -> Result<SequencedProgress, String> {
    let watermark = read_watermark(gid, db)?;
    let done = read_positions(gid, db, DONE_PREFIX)?;
    Ok(SequencedProgress { watermark, done })
}

/// The positions stored under `prefix` (`DONE_PREFIX`, `OUTCOME_PREFIX`).
fn read_positions(gid: GroupId, db: &rocksdb::DB, prefix: &[u8]) -> Result<std::collections::BTreeSet<TxnPos>, String> {
    let start = keys::key(gid, Section::Data, prefix);
    let end = keys::prefix_end(&start).expect("prefix does not end in 0xFF");
    let mut out = std::collections::BTreeSet::new();
    for item in db.iterator(IteratorMode::From(&start, Direction::Forward)) {
        let (k, _) = item.map_err(|e| e.to_string())?;
        if *k >= *end {
            break;
        }
        out.insert(decode_pos_key(prefix, &k[keys::SECTION_PREFIX_LEN..]).ok_or("corrupt position key")?);
    }
    Ok(out)
}
