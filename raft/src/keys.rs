//! RocksDB key layout. One RocksDB per node holds every group it hosts; each
//! key starts with `b'g' ++ group_id(u64 BE) ++ section(u8)`, so a group's
//! Raft log, vote, applied state, snapshot and rows are each one contiguous
//! range that can be scanned or deleted on its own.

/// Identifies a Raft group on every node. See [`crate::groups`] for the well-known ones.
pub type GroupId = u64;

const GROUP_TAG: u8 = b'g';

/// The sections a group's keyspace is divided into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Section {
    /// The last vote (term + voted-for), written durably before any reply.
    Vote = b'v',
    /// The last committed log id known to this replica.
    Committed = b'c',
    /// Raft log entries, keyed by index (u64 BE so they sort).
    Log = b'l',
    /// The id of the last purged log entry.
    Purged = b'p',
    /// The state machine's last applied log id and membership.
    Applied = b'a',
    /// The latest snapshot built or installed.
    Snapshot = b's',
    /// The state machine's own data (rows for vShards, catalog for meta).
    Data = b'd',
    /// Content hashes of the data section taken at given log indexes.
    Checksum = b'h',
}

pub const SECTION_PREFIX_LEN: usize = 10;

/// Data keys starting with this are replicated (and part of snapshots) but
/// not hashed by the replica checksum: each replica prunes them on its own
/// schedule (a vShard's row versions). Starts with 0xFF, which no table id
/// of a vShard's rows does.
pub const UNHASHED_PREFIX: &[u8] = b"\xff~";

/// `g ++ gid ++ section`: the prefix of every key of `section` in `gid`.
pub fn section_prefix(gid: GroupId, section: Section) -> [u8; SECTION_PREFIX_LEN] {
    let mut k = [0u8; SECTION_PREFIX_LEN];
    k[0] = GROUP_TAG;
    k[1..9].copy_from_slice(&gid.to_be_bytes());
    k[9] = section as u8;
    k
}

/// A key in `section` of `gid` with the given suffix.
pub fn key(gid: GroupId, section: Section, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(SECTION_PREFIX_LEN + suffix.len());
    k.extend_from_slice(&section_prefix(gid, section));
    k.extend_from_slice(suffix);
    k
}

/// The key of log entry `index` of `gid`.
pub fn log_key(gid: GroupId, index: u64) -> Vec<u8> {
    key(gid, Section::Log, &index.to_be_bytes())
}

/// Decodes the index out of a key made by [`log_key`].
pub fn log_index_of(key: &[u8]) -> u64 {
    assert_eq!(key.len(), SECTION_PREFIX_LEN + 8, "not a log key");
    u64::from_be_bytes(key[SECTION_PREFIX_LEN..].try_into().expect("8 bytes"))
}

/// `[start, end)` covering every key of `section` in `gid`.
pub fn section_range(gid: GroupId, section: Section) -> (Vec<u8>, Vec<u8>) {
    let start = section_prefix(gid, section).to_vec();
    let mut end = start.clone();
    // Sections are ASCII letters, so bumping the last byte never overflows.
    *end.last_mut().expect("non-empty") += 1;
    (start, end)
}

/// The smallest key strictly greater than every key starting with `prefix`,
/// or `None` when `prefix` is all 0xFF.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_index_and_stay_in_their_group() {
        let a = log_key(7, 1);
        let b = log_key(7, 256);
        assert!(a < b);
        assert_eq!(log_index_of(&b), 256);
        let (start, end) = section_range(7, Section::Log);
        assert!(start <= a && b < end);
        assert!(log_key(8, 0) > end);
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
