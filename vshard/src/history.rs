//! Multi-version history of a vShard's rows (MVCC), for reads that span
//! vShards.
//!
//! The row keys (`table_id ++ memcomparable(pk)`) hold each row's newest
//! value, which every transaction and single-vShard read uses. Next to them,
//! every row write is also kept as a *version* under
//! `HISTORY_PREFIX ++ row key ++ !version` (newest first), so a query that
//! spans vShards can read each of them as of one cut of the global order
//! without locking anything.
//!
//! A [`Version`] is a place in the vShard's serial order that all vShards
//! agree on at epoch boundaries:
//! - a sequenced transaction's writes are at `(epoch, index, 0)`: its
//!   position in the global order;
//! - a single-shard write is at `(after.epoch, after.index, log index)`,
//!   where `after` is the last sequenced position its vShard ordered before
//!   it (`ShardCommand::Write::after`), so it sorts after every sequenced
//!   transaction it may depend on and before every one that may depend on it.
//!
//! A query reads every vShard at a [`ReadPoint`]: the end of epoch `E`, and
//! on each vShard its log up to an index `k` taken once the vShard applied
//! every cross-shard transaction up to `E` (the versions up to
//! `(E, MAX, MAX)` whose single-shard writes are at or below `k`). It sees
//! every cross-shard transaction of epochs up to `E` whole, none after, and
//! single-shard writes consistently with them (see `docs/ARCHITECTURE.md`,
//! Read path).
//!
//! History keys start with [`UNHASHED_PREFIX`]: they are replicated and part
//! of Raft snapshots, but not of the replica checksum, because each replica
//! drops versions no read can need on its own schedule ([`collect`]).

use rocksdb::{Direction, IteratorMode, WriteBatch};

use ordo_raft::codec::Pairs;

use crate::constants::{COLLECT_BATCH_KEYS_MAX, SCAN_ROWS_MAX, STEPS_BEFORE_SEEK};
use crate::types::{ScanError, TxnPos};
use ordo_raft::engine::{Engine, OwnedSnapshot};
use ordo_raft::keys::{self, GroupId, Section};

pub use ordo_raft::keys::UNHASHED_PREFIX;
/// Data key prefix of row versions.
pub const HISTORY_PREFIX: &[u8] = b"\xff~h";
/// Data key of the oldest [`ReadPoint`] this replica can still be read at.
pub const HORIZON_KEY: &[u8] = b"\xff~z";
/// Bytes of an encoded version at the end of a history key.
const VERSION_BYTES: usize = 8 + 4 + 8;

/// A row version's place in the vShard's serial order (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub epoch: u64,
    pub index: u32,
    pub seq: u64,
}

impl Version {
    /// The writes of the sequenced transaction at `pos`.
    pub fn sequenced(pos: TxnPos) -> Version {
        Version { epoch: pos.epoch, index: pos.index, seq: 0 }
    }

    /// A single-shard write logged at `log_index`, ordered after `after`.
    pub fn single(after: TxnPos, log_index: u64) -> Version {
        assert!(log_index > 0, "log indexes start at 1");
        Version { epoch: after.epoch, index: after.index, seq: log_index }
    }

    /// The newest version a read as of the end of `epoch` may see.
    pub fn end_of_epoch(epoch: u64) -> Version {
        Version { epoch, index: u32::MAX, seq: u64::MAX }
    }

    /// Whether a read at `at` sees this version.
    pub fn visible_at(&self, at: ReadPoint) -> bool {
        *self <= Version::end_of_epoch(at.epoch) && (self.seq == 0 || self.seq <= at.index)
    }

    /// Bitwise complement, so newer versions sort first.
    fn encode_desc(&self) -> [u8; VERSION_BYTES] {
        let mut out = [0u8; VERSION_BYTES];
        out[..8].copy_from_slice(&(!self.epoch).to_be_bytes());
        out[8..12].copy_from_slice(&(!self.index).to_be_bytes());
        out[12..].copy_from_slice(&(!self.seq).to_be_bytes());
        out
    }

    fn decode_desc(b: &[u8]) -> Version {
        assert_eq!(b.len(), VERSION_BYTES);
        Version {
            epoch: !u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            index: !u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
            seq: !u64::from_be_bytes(b[12..].try_into().expect("8 bytes")),
        }
    }
}

/// Where a read of a vShard's versions stands: the end of sequencer epoch
/// `epoch`, and the vShard's log up to `index` (the vShard applied every
/// cross-shard transaction up to `epoch` at or below it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadPoint {
    pub epoch: u64,
    pub index: u64,
}

impl ReadPoint {
    fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.epoch.to_be_bytes());
        out[8..].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<ReadPoint> {
        let b: &[u8; 16] = b.try_into().ok()?;
        Some(ReadPoint {
            epoch: u64::from_be_bytes(b[..8].try_into().expect("8 bytes")),
            index: u64::from_be_bytes(b[8..].try_into().expect("8 bytes")),
        })
    }

    /// Whether every version visible here is visible at `other` too, or
    /// superseded there by one that is.
    pub fn covered_by(&self, other: ReadPoint) -> bool {
        self.epoch <= other.epoch && self.index <= other.index
    }
}

/// The data key of `row_key`'s version `v`. Row keys are self-delimiting
/// (no row key is a prefix of another), so a row's versions are contiguous.
pub fn version_key(row_key: &[u8], v: Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(HISTORY_PREFIX.len() + row_key.len() + VERSION_BYTES);
    k.extend_from_slice(HISTORY_PREFIX);
    k.extend_from_slice(row_key);
    k.extend_from_slice(&v.encode_desc());
    k
}

/// The history key prefix of every row key starting with `prefix`.
pub fn history_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut k = HISTORY_PREFIX.to_vec();
    k.extend_from_slice(prefix);
    k
}

/// A stored version's value: the row, or `None` if the write deleted it.
pub fn encode_value(row: Option<&[u8]>) -> Vec<u8> {
    match row {
        None => vec![0],
        Some(r) => {
            let mut v = Vec::with_capacity(1 + r.len());
            v.push(1);
            v.extend_from_slice(r);
            v
        }
    }
}

fn decode_value(v: &[u8]) -> Result<Option<&[u8]>, String> {
    match v.split_first() {
        Some((0, _)) => Ok(None),
        Some((1, row)) => Ok(Some(row)),
        _ => Err("corrupt row version".into()),
    }
}

/// Splits a history key (without the group's section prefix) into its row
/// key and version.
fn split_key(k: &[u8]) -> Result<(&[u8], Version), String> {
    let rest = k.strip_prefix(HISTORY_PREFIX).ok_or("not a history key")?;
    if rest.len() < VERSION_BYTES {
        return Err("corrupt history key".into());
    }
    let (row, v) = rest.split_at(rest.len() - VERSION_BYTES);
    Ok((row, Version::decode_desc(v)))
}

/// The oldest read point `gid`'s replica can be read at (zero: any).
pub fn horizon(engine: &Engine, gid: GroupId, snapshot: Option<&OwnedSnapshot>) -> Result<ReadPoint, String> {
    let key = keys::key(gid, Section::Data, HORIZON_KEY);
    let got = match snapshot {
        Some(s) => engine.db().get_opt(key, &s.read_options()),
        None => engine.db().get(key),
    };
    match got.map_err(|e| e.to_string())? {
        None => Ok(ReadPoint::default()),
        Some(b) => ReadPoint::decode(&b).ok_or_else(|| "corrupt version horizon".to_string()),
    }
}

/// Every row under `prefix` of `gid` at `at`, in key order: for each row
/// key, its newest version visible there, if it is not a deletion. Fails
/// if the replica dropped versions the read needs.
pub fn scan_as_of(
    engine: &Engine,
    gid: GroupId,
    prefix: &[u8],
    at: ReadPoint,
    snapshot: &OwnedSnapshot,
) -> Result<Pairs, ScanError> {
    let floor = horizon(engine, gid, Some(snapshot)).map_err(ScanError::Storage)?;
    if !floor.covered_by(at) {
        return Err(ScanError::TooOld { epoch: at.epoch, horizon: floor.epoch });
    }
    let start = keys::key(gid, Section::Data, &history_prefix(prefix));
    let end = keys::prefix_end(&start).expect("group keys never end in 0xFF");
    let mut it = engine.db().raw_iterator_opt(snapshot.read_options());
    it.seek(&start);
    let mut out = Vec::new();
    // The row being passed over (its visible version is decided) and how
    // many of its versions were stepped over.
    let mut done_row: Option<Vec<u8>> = None;
    let mut steps = 0;
    while let (Some(k), Some(value)) = (it.key(), it.value()) {
        if k >= end.as_slice() {
            break;
        }
        let (row, v) = split_key(&k[keys::SECTION_PREFIX_LEN..]).map_err(ScanError::Storage)?;
        let decided = done_row.as_deref() == Some(row);
        if decided || !v.visible_at(at) {
            steps += 1;
            // Where to jump when a row has many versions to pass: past all
            // of them once decided, or to the newest the epoch allows. Both
            // lie ahead; versions of the epoch written after the read's
            // index are stepped over one by one (few: written meanwhile).
            let ahead = if steps < STEPS_BEFORE_SEEK {
                None
            } else if decided {
                Some(version_key(row, Version::default()))
            } else if v > Version::end_of_epoch(at.epoch) {
                Some(version_key(row, Version::end_of_epoch(at.epoch)))
            } else {
                None
            };
            match ahead {
                Some(target) => {
                    let here = k.to_vec();
                    it.seek(keys::key(gid, Section::Data, &target));
                    if it.key() == Some(here.as_slice()) {
                        it.next();
                    }
                    steps = 0;
                }
                None => it.next(),
            }
            continue;
        }
        steps = 0;
        let row = row.to_vec();
        if let Some(row_value) = decode_value(value).map_err(ScanError::Storage)? {
            if out.len() >= SCAN_ROWS_MAX {
                return Err(ScanError::TooManyRows(SCAN_ROWS_MAX));
            }
            out.push((row.clone(), row_value.to_vec()));
        }
        done_row = Some(row);
        it.next();
    }
    it.status().map_err(|e| ScanError::Storage(e.to_string()))?;
    Ok(out)
}

/// What one [`collect`] step did.
#[derive(Debug, PartialEq, Eq)]
pub struct Collected {
    pub dropped: usize,
    /// The row key the next step starts at; `None`: the step reached the
    /// end of the history.
    pub next: Option<Vec<u8>>,
}

/// Drops versions of `gid` no read at or after `horizon` can see: for each
/// row, every version older than its newest one visible at `horizon`, and
/// that one too if it is a deletion (a later read point sees that version
/// or a newer one). Records `horizon` (or the replica's, if higher) first,
/// so a read at an older point fails instead of missing versions.
///
/// One step covers the rows from row key `from` (the start if `None`) on,
/// and stops at the first row boundary after reading `keys_max` keys, so
/// each call's work is bounded; the caller resumes at [`Collected::next`].
///
/// Each replica runs this on its own: versions are immutable once written,
/// so deleting old ones never races with apply. Not deterministic across
/// replicas, hence outside the checksum.
pub fn collect(
    engine: &Engine,
    gid: GroupId,
    horizon_at: ReadPoint,
    from: Option<&[u8]>,
    keys_max: usize,
) -> Result<Collected, String> {
    let raise = |to: ReadPoint| -> Result<ReadPoint, String> {
        let now = horizon(engine, gid, None)?;
        let raised = ReadPoint { epoch: to.epoch.max(now.epoch), index: to.index.max(now.index) };
        if raised != now {
            let mut batch = WriteBatch::default();
            batch.put(keys::key(gid, Section::Data, HORIZON_KEY), raised.encode());
            engine.write(batch).map_err(|e| e.to_string())?;
        }
        Ok(raised)
    };
    let horizon_at = raise(horizon_at)?;
    let start = keys::key(gid, Section::Data, &history_prefix(from.unwrap_or_default()));
    let end = keys::prefix_end(&keys::key(gid, Section::Data, HISTORY_PREFIX)).expect("group keys never end in 0xFF");
    let mut done = Collected { dropped: 0, next: None };
    let mut batch = WriteBatch::default();
    // The row of the previous key, and whether its visible version (at the
    // horizon) was passed already.
    let mut current: Option<(Vec<u8>, bool)> = None;
    for (read, item) in engine.db().iterator(IteratorMode::From(&start, Direction::Forward)).enumerate() {
        let (k, value) = item.map_err(|e| e.to_string())?;
        if *k >= *end {
            break;
        }
        let (row, v) = split_key(&k[keys::SECTION_PREFIX_LEN..])?;
        let same_row = current.as_ref().is_some_and(|(r, _)| r == row);
        if !same_row {
            if read >= keys_max {
                done.next = Some(row.to_vec());
                break;
            }
            current = Some((row.to_vec(), false));
        }
        let passed = &mut current.as_mut().expect("set above").1;
        if *passed {
            batch.delete(&k);
            done.dropped += 1;
        } else if v.visible_at(horizon_at) {
            *passed = true;
            if decode_value(&value)?.is_none() {
                batch.delete(&k);
                done.dropped += 1;
            }
        }
        if batch.len() >= COLLECT_BATCH_KEYS_MAX {
            engine.write(std::mem::take(&mut batch)).map_err(|e| e.to_string())?;
            // A snapshot installed meanwhile brought its sender's (maybe
            // lower) horizon along; what is dropped here needs this one.
            raise(horizon_at)?;
        }
    }
    engine.write(batch).map_err(|e| e.to_string())?;
    raise(horizon_at)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_raft::engine::Engine;

    const GID: GroupId = 7;

    fn engine() -> (std::sync::Arc<Engine>, std::path::PathBuf) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ordo-history-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Engine::open(&dir).unwrap(), dir)
    }

    fn write(e: &Engine, row: &[u8], v: Version, value: Option<&[u8]>) {
        let mut b = WriteBatch::default();
        b.put(keys::key(GID, Section::Data, &version_key(row, v)), encode_value(value));
        e.write(b).unwrap();
    }

    fn pos(epoch: u64, index: u32) -> TxnPos {
        TxnPos { epoch, index }
    }

    fn read(e: &Engine, prefix: &[u8], epoch: u64) -> Result<Vec<(String, String)>, ScanError> {
        let snap = OwnedSnapshot::take(e);
        let rows = scan_as_of(e, GID, prefix, ReadPoint { epoch, index: u64::MAX }, &snap)?;
        Ok(rows.into_iter().map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())).collect())
    }

    /// Collects the whole history in steps of at most 2 keys (and whole rows).
    fn collect_all(e: &Engine, h: ReadPoint) -> usize {
        let (mut dropped, mut from) = (0, None);
        loop {
            let step = collect(e, GID, h, from.as_deref(), 2).unwrap();
            dropped += step.dropped;
            match step.next {
                Some(next) => from = Some(next),
                None => return dropped,
            }
        }
    }

    /// The end of `epoch`, every log index included.
    fn all_of(epoch: u64) -> ReadPoint {
        ReadPoint { epoch, index: u64::MAX }
    }

    fn rows(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn history_len(e: &Engine) -> usize {
        let start = keys::key(GID, Section::Data, HISTORY_PREFIX);
        let end = keys::prefix_end(&start).unwrap();
        e.db()
            .iterator(IteratorMode::From(&start, Direction::Forward))
            .take_while(|i| *i.as_ref().unwrap().0 < *end)
            .count()
    }

    #[test]
    fn a_read_sees_each_row_as_of_the_end_of_its_epoch() {
        let (e, dir) = engine();
        // Row keys of table "t" ("t" then a self-delimiting key).
        write(&e, b"ta\0", Version::single(pos(0, 0), 1), Some(b"a1"));
        write(&e, b"tb\0", Version::single(pos(1, 3), 3), Some(b"b1"));
        write(&e, b"ta\0", Version::sequenced(pos(2, 0)), Some(b"a2"));
        // A single-shard write ordered after (2, 0): in epoch 2, after it.
        write(&e, b"ta\0", Version::single(pos(2, 0), 5), Some(b"a3"));
        write(&e, b"ta\0", Version::sequenced(pos(4, 1)), None);
        // Another table's row never shows under "t".
        write(&e, b"ua\0", Version::single(pos(0, 0), 2), Some(b"u1"));
        assert_eq!(read(&e, b"t", 0).unwrap(), rows(&[("ta\0", "a1")]));
        assert_eq!(read(&e, b"t", 1).unwrap(), rows(&[("ta\0", "a1"), ("tb\0", "b1")]));
        assert_eq!(read(&e, b"t", 2).unwrap(), rows(&[("ta\0", "a3"), ("tb\0", "b1")]));
        assert_eq!(read(&e, b"t", 3).unwrap(), rows(&[("ta\0", "a3"), ("tb\0", "b1")]));
        assert_eq!(read(&e, b"t", 4).unwrap(), rows(&[("tb\0", "b1")]), "deleted in epoch 4");
        assert_eq!(read(&e, b"ta\0", 2).unwrap(), rows(&[("ta\0", "a3")]), "one row by its key");
        // Pinned below log index 5, the single-shard write of epoch 2 is not
        // seen (applied after the read's point), the sequenced one is.
        let snap = OwnedSnapshot::take(&e);
        let pinned = scan_as_of(&e, GID, b"t", ReadPoint { epoch: 2, index: 4 }, &snap).unwrap();
        assert_eq!(pinned, vec![(b"ta\0".to_vec(), b"a2".to_vec()), (b"tb\0".to_vec(), b"b1".to_vec())]);
        drop(e);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_scan_passes_many_versions_of_a_row_and_finds_the_visible_one() {
        let (e, dir) = engine();
        for i in 1..=50u64 {
            write(&e, b"ta\0", Version::single(pos(i, 0), 10 * i), Some(format!("a{i}").as_bytes()));
            write(&e, b"tb\0", Version::single(pos(1, 0), 10 * i + 1), Some(format!("b{i}").as_bytes()));
        }
        write(&e, b"tc\0", Version::single(pos(0, 0), 1), Some(b"c"));
        assert_eq!(read(&e, b"t", 20).unwrap(), rows(&[("ta\0", "a20"), ("tb\0", "b50"), ("tc\0", "c")]));
        let snap = OwnedSnapshot::take(&e);
        // All of tb's versions are in epoch 1; the index picks among them.
        let pinned = scan_as_of(&e, GID, b"t", ReadPoint { epoch: 1, index: 301 }, &snap).unwrap();
        let pinned: Vec<_> =
            pinned.into_iter().map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())).collect();
        assert_eq!(pinned, rows(&[("ta\0", "a1"), ("tb\0", "b30"), ("tc\0", "c")]));
        drop(e);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn collecting_keeps_every_read_at_or_after_the_horizon_and_refuses_older_ones() {
        let (e, dir) = engine();
        write(&e, b"ta\0", Version::single(pos(0, 0), 1), Some(b"a1"));
        write(&e, b"ta\0", Version::sequenced(pos(2, 0)), Some(b"a2"));
        write(&e, b"ta\0", Version::single(pos(2, 0), 5), Some(b"a3"));
        write(&e, b"ta\0", Version::sequenced(pos(4, 1)), None);
        write(&e, b"tb\0", Version::single(pos(1, 3), 3), Some(b"b1"));
        let before: Vec<_> = (2..6).map(|epoch| read(&e, b"t", epoch).unwrap()).collect();
        // As of epoch 2, a1 and a2 are superseded by a3.
        assert_eq!(collect_all(&e, all_of(2)), 2);
        assert_eq!(history_len(&e), 3);
        let after: Vec<_> = (2..6).map(|epoch| read(&e, b"t", epoch).unwrap()).collect();
        assert_eq!(before, after, "reads at or after the horizon are unchanged");
        assert!(matches!(read(&e, b"t", 1), Err(ScanError::TooOld { epoch: 1, horizon: 2 })));
        // As of epoch 4, `ta` is deleted: every version of it goes.
        assert_eq!(collect_all(&e, all_of(4)), 2);
        assert_eq!(history_len(&e), 1);
        assert_eq!(read(&e, b"t", 4).unwrap(), rows(&[("tb\0", "b1")]));
        assert_eq!(collect_all(&e, all_of(3)), 0, "the horizon never moves back");
        assert!(matches!(read(&e, b"t", 3), Err(ScanError::TooOld { .. })));
        drop(e);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
