//! `RaftLogStorage` for one group: its log, vote and committed id, stored in
//! the node's shared RocksDB under the group's key prefix.
//!
//! Appends are written unsynced (readable at once, as openraft requires) and
//! acknowledged through the engine's WAL syncer, which fsyncs the appends of
//! every group waiting at that moment together.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::codec::{decode, encode};
use super::types::{Entry, LogId, TypeConfig, Vote};
use crate::engine::Engine;
use crate::keys::{self, GroupId, Section};

#[derive(Clone)]
pub struct LogStore {
    gid: GroupId,
    engine: Arc<Engine>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl LogStore {
    pub fn new(gid: GroupId, engine: Arc<Engine>) -> LogStore {
        LogStore { gid, engine }
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
        let end_key = match range.end_bound() {
            Bound::Included(&i) => keys::log_key(self.gid, i + 1),
            Bound::Excluded(&i) => keys::log_key(self.gid, i),
            Bound::Unbounded => keys::section_range(self.gid, Section::Log).1,
        };
        let start_key = keys::log_key(self.gid, start);
        let mut out = Vec::new();
        for item in self.engine.db().iterator(IteratorMode::From(&start_key, Direction::Forward)) {
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
        for e in entries {
            batch.put(keys::log_key(self.gid, e.log_id.index), encode(&e));
        }
        self.engine.write(batch).map_err(io_err)?;
        self.engine.sync_then(Box::new(move |r| callback.io_completed(r.map_err(io::Error::other))));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index + 1).unwrap_or(0);
        let (_, end) = keys::section_range(self.gid, Section::Log);
        let mut batch = WriteBatch::default();
        batch.delete_range(keys::log_key(self.gid, from), end);
        self.engine.write(batch).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let (start, _) = keys::section_range(self.gid, Section::Log);
        let mut batch = WriteBatch::default();
        batch.put(keys::key(self.gid, Section::Purged, b""), encode(&log_id));
        batch.delete_range(start, keys::log_key(self.gid, log_id.index + 1));
        self.engine.write(batch).map_err(io_err)
    }
}
