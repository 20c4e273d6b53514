//! `RaftLogStorage` for one group: its log, vote and committed id, stored in
//! the node's shared RocksDB under the group's key prefix.
//!
//! Appends are written unsynced (readable at once, as openraft requires) and
//! acknowledged through the engine's WAL syncer, which fsyncs the appends of
//! every group waiting at that moment together.
//!
//! The newest entries are also kept in memory ([`EntryCache`], as TiKV's
//! entry cache): replication and apply read what was just appended, and
//! reading it back from RocksDB cost a vShard leader nearly all its CPU
//! once the log had been flushed to SST files (a profile after a restart:
//! iterator seeks loading and copying large data blocks).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use ordo_metrics::RaftMetrics;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::engine::Engine;
use crate::entry_codec::{decode, encode};
use crate::groups::group_kind;
use crate::keys::{self, GroupId, Section};
use crate::types::{Entry, LogId, TypeConfig, Vote};

use crate::constants::{APPEND_TIMES_MAX, ENTRY_CACHE_BYTES_MAX};

/// The newest entries of one group's log, contiguous by index.
#[derive(Default)]
struct EntryCache {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, e: Entry, bytes: usize) {
        if self.last_index().is_some_and(|last| last + 1 != e.log_id.index) {
            // Not contiguous (should not happen: truncation trims first).
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        self.entries.push_back((e, bytes));
        while self.bytes > ENTRY_CACHE_BYTES_MAX && self.entries.len() > 1 {
            let (_, b) = self.entries.pop_front().expect("more than one entry");
            self.bytes -= b;
        }
    }

    /// Drops entries with index >= `from`.
    fn truncate(&mut self, from: u64) {
        while self.last_index().is_some_and(|i| i >= from) {
            let (_, b) = self.entries.pop_back().expect("has a last entry");
            self.bytes -= b;
        }
    }

    /// Drops entries with index <= `upto`.
    fn purge(&mut self, upto: u64) {
        while self.first_index().is_some_and(|i| i <= upto) {
            let (_, b) = self.entries.pop_front().expect("has a first entry");
            self.bytes -= b;
        }
    }

    /// Entries `start..end` when all of them are here.
    fn range(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        if start >= end {
            return Some(Vec::new());
        }
        let first = self.first_index()?;
        if start < first || end - 1 > self.last_index()? {
            return None;
        }
        let from = (start - first) as usize;
        let out: Vec<Entry> = self.entries.range(from..from + (end - start) as usize).map(|(e, _)| e.clone()).collect();
        debug_assert_eq!(out.first().map(|e| e.log_id.index), Some(start));
        Some(out)
    }
}

#[derive(Clone)]
pub struct LogStore {
    gid: GroupId,
    engine: Arc<Engine>,
    cache: Arc<parking_lot::Mutex<EntryCache>>,
    metrics: RaftMetrics,
    times: AppendTimes,
}

/// When this replica appended its latest entries, so that applying them
/// tells how long their commit took (`RaftMetrics::committed`). Holds at
/// most [`APPEND_TIMES_MAX`] entries; older ones are dropped unmeasured.
#[derive(Clone, Default)]
pub(crate) struct AppendTimes(Arc<parking_lot::Mutex<VecDeque<(u64, Instant)>>>);

impl AppendTimes {
    fn appended(&self, indexes: impl Iterator<Item = u64>, at: Instant) {
        let mut q = self.0.lock();
        for i in indexes {
            if q.len() == APPEND_TIMES_MAX {
                q.pop_front();
            }
            q.push_back((i, at));
        }
    }

    /// Forgets entries from `from` on (the log was truncated there).
    fn truncated(&self, from: u64) {
        let mut q = self.0.lock();
        while q.back().is_some_and(|&(i, _)| i >= from) {
            q.pop_back();
        }
    }

    /// Takes the append times of the entries up to `index`.
    pub(crate) fn take_through(&self, index: u64) -> Vec<Instant> {
        let mut q = self.0.lock();
        let mut out = Vec::new();
        while let Some(&(_, at)) = q.front().filter(|&&(i, _)| i <= index) {
            q.pop_front();
            out.push(at);
        }
        out
    }
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogStore {
    /// Group `gid`'s log, recording appends in `metrics` (the node's) and
    /// their times in `times` (which the group's state machine reads).
    pub(crate) fn new(gid: GroupId, engine: Arc<Engine>, metrics: RaftMetrics, times: AppendTimes) -> LogStore {
        LogStore { gid, engine, cache: Arc::default(), metrics, times }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, section: Section) -> io::Result<Option<T>> {
        match self.engine.db().get(keys::key(self.gid, section, b"")).map_err(io_err)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn last_entry(&self) -> io::Result<Option<Entry>> {
        let (start, end) = keys::section_range(self.gid, Section::Log);
        let mut it = self.engine.db().iterator(IteratorMode::From(&end, Direction::Reverse));
        match it.next() {
            Some(Ok((k, v))) if *k >= *start && *k < *end => Ok(Some(decode(&v)?)),
            Some(Err(e)) => Err(io_err(e)),
            _ => Ok(None),
        }
    }

    /// True once this replica has ever voted or logged: its group exists.
    pub fn is_initialized(&self) -> io::Result<bool> {
        Ok(self.get::<Vote>(Section::Vote)?.is_some() || self.last_entry()?.is_some())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Some(i + 1),
            Bound::Excluded(&i) => Some(i),
            Bound::Unbounded => None,
        };
        if let Some(hit) = end.and_then(|end| self.cache.lock().range(start, end)) {
            return Ok(hit);
        }
        let end_key = match end {
            Some(i) => keys::log_key(self.gid, i),
            None => keys::section_range(self.gid, Section::Log).1,
        };
        let start_key = keys::log_key(self.gid, start);
        let mut out = Vec::new();
        // The upper bound lets RocksDB stop at the range's end instead of
        // reading the next group's blocks.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(end_key.clone());
        for item in self.engine.db().iterator_opt(IteratorMode::From(&start_key, Direction::Forward), opts) {
            let (k, v) = item.map_err(io_err)?;
            if *k >= *end_key {
                break;
            }
            let entry: Entry = decode(&v)?;
            debug_assert_eq!(entry.log_id.index, keys::log_index_of(&k));
            out.push(entry);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get(Section::Vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let purged: Option<LogId> = self.get(Section::Purged)?;
        let last = self.last_entry()?.map(|e| e.log_id).or(purged);
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        batch.put(keys::key(self.gid, Section::Vote, b""), encode(vote));
        self.engine.write_durable(batch).await.map_err(io_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        batch.put(keys::key(self.gid, Section::Committed, b""), encode(&committed));
        self.engine.write(batch).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get::<Option<LogId>>(Section::Committed)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        for e in entries {
            let bytes = encode(&e);
            batch.put(keys::log_key(self.gid, e.log_id.index), &bytes);
            appended.push((e, bytes.len()));
        }
        self.engine.write(batch).map_err(io_err)?;
        let start = Instant::now();
        self.times.appended(appended.iter().map(|(e, _)| e.log_id.index), start);
        let mut cache = self.cache.lock();
        for (e, bytes) in appended {
            cache.push(e, bytes);
        }
        drop(cache);
        let (metrics, kind) = (self.metrics.clone(), group_kind(self.gid));
        self.engine.sync_then(Box::new(move |r| {
            metrics.appended(kind, ordo_metrics::seconds_since(start));
            callback.io_completed(r.map_err(io::Error::other))
        }));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        let (_, end) = keys::section_range(self.gid, Section::Log);
        let mut batch = WriteBatch::default();
        batch.delete_range(keys::log_key(self.gid, from), end);
        self.cache.lock().truncate(from);
        self.times.truncated(from);
        self.engine.write(batch).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let (start, _) = keys::section_range(self.gid, Section::Log);
        let mut batch = WriteBatch::default();
        batch.put(keys::key(self.gid, Section::Purged, b""), encode(&log_id));
        batch.delete_range(start, keys::log_key(self.gid, log_id.index + 1));
        self.cache.lock().purge(log_id.index);
        self.engine.write(batch).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;
    use openraft::entry::RaftEntry;

    fn entry(index: u64) -> Entry {
        let id = LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 1, node_id: 1 }, index);
        Entry::new_normal(id, Command::App(vec![0; 10]))
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn entry_cache_serves_only_ranges_it_holds_whole() {
        let mut c = EntryCache::default();
        for i in 5..=9 {
            c.push(entry(i), 100);
        }
        assert_eq!(indexes(c.range(6, 9)), Some(vec![6, 7, 8]));
        assert_eq!(indexes(c.range(5, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(c.range(4, 7).map(|v| v.len()), None, "starts before the cache");
        assert_eq!(c.range(8, 11).map(|v| v.len()), None, "ends after the cache");
        c.truncate(8);
        assert_eq!(c.last_index(), Some(7));
        c.push(entry(8), 100);
        c.purge(6);
        assert_eq!((c.first_index(), c.last_index(), c.bytes), (Some(7), Some(8), 200));
        // A gap (never expected) empties the cache rather than serving a hole.
        c.push(entry(12), 100);
        assert_eq!((c.first_index(), c.bytes), (Some(12), 100));
        // The byte bound evicts the oldest entries.
        for i in 13..20 {
            c.push(entry(i), ENTRY_CACHE_BYTES_MAX / 4);
        }
        assert!(c.bytes <= ENTRY_CACHE_BYTES_MAX && c.last_index() == Some(19));
    }
}
