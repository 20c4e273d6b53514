//! One vShard's data: its commands (row writes), their apply, local reads.
//!
//! Row keys inside a vShard are `table_id (u64 BE) ++ memcomparable(pk)`,
//! so one table's rows in a shard are one contiguous range.

use std::sync::Arc;

use rocksdb::{Direction, IteratorMode};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::keys::{self, GroupId, Section};
use crate::raft::{ApplyContext, GroupLogic};

/// One row write: `value: None` deletes the row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowWrite {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// A command replicated through a vShard's log. Commands carry their
/// effects (write sets), not statements: applying one is deterministic by
/// construction, whatever node computed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShardCommand {
    Write(Vec<RowWrite>),
    /// Removes every row of a dropped table from this shard.
    DropTable { table_id: u64 },
}

impl ShardCommand {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
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

/// The apply side of every vShard group.
pub struct ShardLogic;

impl GroupLogic for ShardLogic {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8> {
        let cmd: ShardCommand = match crate::codec::decode(command) {
            Ok(c) => c,
            Err(e) => {
                // Every replica fails the same way on the same bytes, so
                // skipping keeps them identical; the proposer sees the error.
                tracing::error!(group = ctx.group_id(), "undecodable shard command: {e}");
                return b"undecodable command".to_vec();
            }
        };
        match cmd {
            ShardCommand::Write(writes) => {
                for w in writes {
                    match w.value {
                        Some(v) => ctx.put(&w.key, &v),
                        None => ctx.delete(&w.key),
                    }
                }
            }
            ShardCommand::DropTable { table_id } => ctx.delete_prefix(&table_prefix(table_id)),
        }
        Vec::new()
    }
}

/// Reads of a vShard replica's applied state. Callers decide freshness
/// (e.g. a leader read barrier first).
#[derive(Clone)]
pub struct ShardReader {
    engine: Arc<Engine>,
}

/// Bound on rows one scan returns; larger scans fail instead of exhausting memory.
pub const SCAN_ROWS_MAX: usize = 1_000_000;

impl ShardReader {
    pub fn new(engine: Arc<Engine>) -> ShardReader {
        ShardReader { engine }
    }

    pub fn get(&self, gid: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.engine.db().get(keys::key(gid, Section::Data, key))
    }

    /// Every `(key, value)` of `gid` whose key starts with `prefix`.
    pub fn scan_prefix(&self, gid: GroupId, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, String> {
        let start = keys::key(gid, Section::Data, prefix);
        let end = keys::prefix_end(&start).expect("group keys never end in 0xFF");
        let mut out = Vec::new();
        for item in self.engine.db().iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            if *k >= *end {
                break;
            }
            if out.len() >= SCAN_ROWS_MAX {
                return Err(format!("scan exceeds {SCAN_ROWS_MAX} rows"));
            }
            out.push((k[keys::SECTION_PREFIX_LEN..].to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}
