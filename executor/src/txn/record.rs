//! What a participant of a sequenced transaction records with its writes:
//! the rows of its vShard the program read as of the position (so a
//! participant that evaluates later reads them unchanged) and, on the
//! lowest participant, the client's result.

use ordo_expr::ExecResult;
use ordo_raft::codec::Pairs;
use ordo_raft::groups::vshard_group;
use ordo_vshard::shard::{ScanError, ShardReader, TxnPos};
use serde::{Deserialize, Serialize};

use crate::codec::decode;
use crate::constants::PROGRAM_READ_BYTES_MAX;
use crate::txn::program::{read_bytes, TxnResult};

/// What a participant records with its writes for a transaction.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TxnRecord {
    /// On the lowest participant: what the client gets.
    pub result: Option<TxnResult>,
    /// Every read of this vShard's rows the program made, as of its
    /// position, in the order it made them.
    pub reads: Vec<CachedRead>,
}

/// One read of a participant's rows (`prefix`: a scan of every row under
/// `key`, else the row at `key`) and what it returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedRead {
    pub prefix: bool,
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "ordo_raft::codec::byte_pairs")]
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// The scan alone was over `PROGRAM_READ_BYTES_MAX`: its rows are not
    /// kept (`rows` is empty) and a read of it fails, as it did when the
    /// program made it.
    pub over_limit: bool,
}

impl TxnRecord {
    /// The read of `key` (`prefix`: scan) the program made.
    pub fn read(&self, prefix: bool, key: &[u8]) -> Option<&CachedRead> {
        self.reads.iter().find(|r| r.prefix == prefix && r.key == key)
    }
}

/// The record this replica of `vshard` stores for sequenced position `pos`
/// (`None`: it stored none — nothing read and no result — or it was
/// collected).
pub fn stored_record(reader: &ShardReader, vshard: u32, pos: TxnPos) -> ExecResult<Option<TxnRecord>> {
    let bytes =
        reader.get(vshard_group(vshard), &ordo_vshard::shard::outcome_key(pos)).map_err(ordo_expr::storage_error)?;
    bytes.map(|b| decode(&b)).transpose()
}

/// A participant's scan of its own rows as a program reads it: the rows;
/// `None` when the scan alone is over a bound (rows or bytes), which fails
/// the program wherever and whenever it is read; or a storage error
/// (`Unavailable`: this attempt's trouble).
pub fn program_scan(scanned: Result<Pairs, ScanError>) -> ExecResult<Option<Pairs>> {
    match scanned {
        Ok(rows) if read_bytes(&rows) <= PROGRAM_READ_BYTES_MAX => Ok(Some(rows)),
        Ok(_) | Err(ScanError::TooManyRows(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
