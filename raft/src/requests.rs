//! Exactly-once requests. A client request that changes a group carries a
//! [`RequestId`], the same on every retry of it. The group's state machine
//! records the reply of each request it applied, in its data section (so
//! the records are replicated, carried by snapshots and survive leader
//! changes), and answers a retry with the recorded reply instead of
//! applying the command again. The records are not hashed by `verify`
//! (they sit under [`keys::UNHASHED_PREFIX`]): they hold each run's request
//! ids and clock stamps, and would make the content of two runs of the same
//! workload differ; they follow the log like everything else.
//!
//! Records are kept for [`REQUEST_RETENTION_MS`] of the proposers' clocks:
//! every command carries its proposer's wall-clock stamp, and expiry and
//! lookups compare stamps of the log only, so every replica decides alike
//! whatever its own clock or how its apply batches fall. A client must stop
//! retrying well within the retention (the executor asserts it at compile
//! time); clocks of the nodes are assumed to agree within the rest of it.
//! The group enforces it too: an attempt proposed more than
//! [`REQUEST_APPLY_WINDOW_MS`] after the request was first sent is refused
//! ([`RequestReply::TooLate`]), so an attempt held up somewhere (a lock
//! queue, a partitioned leader's log) cannot apply after the record of an
//! earlier one expired.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::constants::{REQUEST_APPLY_WINDOW_MS, REQUEST_RETENTION_MS};
use crate::keys::{self, Section};

/// Names one client request across its retries: the node that first sent
/// it, that node's session (a new one at every start) and a sequence
/// number within the session; and when it was first sent, by that node's
/// clock (`first_ms`, see [`RequestId::may_apply_at`]), which is not part
/// of its name in storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub node: u64,
    pub session: u64,
    pub seq: u64,
    pub first_ms: u64,
}

impl RequestId {
    /// Whether an attempt proposed at `stamp_ms` may still apply: within
    /// [`REQUEST_APPLY_WINDOW_MS`] of the first attempt, every earlier
    /// attempt that applied (stamped at or after `first_ms`) is still
    /// remembered, so applying once is guaranteed; later, it is not.
    pub fn may_apply_at(&self, stamp_ms: u64) -> bool {
        stamp_ms <= self.first_ms.saturating_add(REQUEST_APPLY_WINDOW_MS)
    }

    fn bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.node.to_be_bytes());
        b[8..16].copy_from_slice(&self.session.to_be_bytes());
        b[16..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }
}

/// Data-key prefix of the records, by request id: under the unhashed
/// prefix (`\xff~`), apart from a vShard's row versions (`\xff~h`); no
/// group's own keys start so (vShard rows start with a table id, meta and
/// sequencer keys are ASCII).
pub(crate) const RECORD_PREFIX: &[u8] = b"\xff~rq";
/// Data-key prefix of the expiry index: stamp (ms, BE) ++ request id.
pub(crate) const EXPIRY_PREFIX: &[u8] = b"\xff~rx";

pub(crate) fn record_key(id: RequestId) -> Vec<u8> {
    [RECORD_PREFIX, &id.bytes()].concat()
}

pub(crate) fn expiry_key(stamp_ms: u64, id: RequestId) -> Vec<u8> {
    [EXPIRY_PREFIX, &stamp_ms.to_be_bytes(), &id.bytes()].concat()
}

/// What a group remembers of an applied request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub stamp_ms: u64,
    /// The reply the request got; `None` when it was larger than
    /// [`REQUEST_REPLY_BYTES_MAX`] (a retry learns it was applied, not what
    /// it returned).
    #[serde(with = "serde_bytes")]
    pub reply: Option<Vec<u8>>,
}

impl RequestRecord {
    /// Whether a command stamped `stamp_ms` still sees this record: the
    /// same answer on every replica, whether or not expiry has removed it
    /// from storage yet.
    pub(crate) fn live_at(&self, stamp_ms: u64) -> bool {
        self.stamp_ms.saturating_add(REQUEST_RETENTION_MS) >= stamp_ms
    }
}

/// The answer to a proposed request, as applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestReply {
    /// Applied now; the command's reply.
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Applied before (a retry): the reply recorded then, if kept.
    Duplicate(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// Not applied: the attempt came too long after the request was first
    /// sent to tell whether an earlier attempt applied (its record could
    /// be gone), so its outcome is unknown.
    TooLate,
}

/// Records written by the apply batch in progress: RocksDB does not show
/// them until the batch is written, and later entries of the same batch
/// must see them. Bounded by the entries of one apply batch.
#[derive(Default)]
pub(crate) struct PendingRecords {
    pub(crate) records: BTreeMap<RequestId, RequestRecord>,
}

impl PendingRecords {
    /// The batch is written: its records are readable from RocksDB.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

/// The reply of request `id` if this replica has applied it (a leader
/// asks after a write barrier, before computing a write of its own).
pub fn stored_request(
    gid: crate::GroupId,
    engine: &crate::engine::Engine,
    id: RequestId,
) -> Result<Option<RequestRecord>, String> {
    match engine.db().get(keys::key(gid, Section::Data, &record_key(id))).map_err(|e| e.to_string())? {
        Some(b) => crate::codec::decode(&b).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// The wall clock, in ms since the Unix epoch: a proposer's stamp, carried
/// in the log (replicas never read their own clock for it), and a request's
/// `first_ms`, read by its sender.
pub fn stamp_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_live_for_the_retention_only() {
        let r = RequestRecord { stamp_ms: 1_000, reply: None };
        assert!(r.live_at(1_000));
        assert!(r.live_at(1_000 + REQUEST_RETENTION_MS));
        assert!(!r.live_at(1_001 + REQUEST_RETENTION_MS));
        // A proposer whose clock is behind still sees it.
        assert!(r.live_at(0));
    }

    #[test]
    fn attempts_apply_only_while_every_earlier_one_is_remembered() {
        let id = RequestId { node: 1, session: 2, seq: 3, first_ms: 10_000 };
        assert!(id.may_apply_at(10_000) && id.may_apply_at(10_000 + REQUEST_APPLY_WINDOW_MS));
        assert!(!id.may_apply_at(10_001 + REQUEST_APPLY_WINDOW_MS));
        // Any earlier attempt's record (stamped no earlier than the first
        // send) is live when the last allowed attempt applies.
        let earliest = RequestRecord { stamp_ms: id.first_ms, reply: None };
        assert!(earliest.live_at(id.first_ms + REQUEST_APPLY_WINDOW_MS));
        assert_eq!(id.bytes(), RequestId { first_ms: 0, ..id }.bytes(), "the send time is not part of the name");
    }

    #[test]
    fn records_are_replicated_but_not_hashed() {
        assert!(RECORD_PREFIX.starts_with(keys::UNHASHED_PREFIX) && EXPIRY_PREFIX.starts_with(keys::UNHASHED_PREFIX));
        assert!(!RECORD_PREFIX.starts_with(b"\xff~h") && !EXPIRY_PREFIX.starts_with(b"\xff~h"));
    }

    #[test]
    fn expiry_keys_sort_by_stamp() {
        let a = RequestId { node: 9, session: 9, seq: 9, first_ms: 0 };
        let b = RequestId { node: 1, session: 1, seq: 1, first_ms: 0 };
        assert!(expiry_key(5, a) < expiry_key(6, b));
        assert!(record_key(a).starts_with(RECORD_PREFIX));
    }
}
