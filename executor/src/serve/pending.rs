//! Writes a vShard's leader has queued in the group's log and not applied
//! yet, which later writes of the vShard read: early lock release
//! (controlled lock violation, Graefe et al., SIGMOD 2013).
//!
//! A single-vShard write computes its rows under its locks, queues its
//! entry for the leader's term ([`Consensus::submit`]), records its rows
//! here and only then releases its locks; it answers its client once the
//! entry is applied. A later conflicting write, granted when the locks go,
//! reads these rows over the applied ones, and its entry is queued after
//! the first: it commits only if everything it read commits (Raft commits
//! a prefix of the log, and an entry queued for a term that has ended is
//! refused). So a lock is held for the computation, not the Raft round.
//!
//! Nothing else reads these rows: reads outside writes see applied rows
//! only; a write that ends without an entry (nothing to change, or an
//! error such as a duplicate key) waits until what it read has resolved,
//! and fails if any of it did not apply; a sequenced participant waits
//! until everything queued before its locks were granted has resolved
//! ([`PendingWrites::drained`]) and reads applied rows. So no pending row
//! reaches a client, another participant or another vShard.
//!
//! The rows belong to one term of the leader. The first write of a newer
//! term (past its write barrier: every entry of an earlier term is applied
//! or gone for good) drops them. Within a term an entry can fail too: a
//! leader whose lease lapsed refuses writes until it is renewed. RaftCore
//! counts each refusal before it takes its next message
//! ([`Consensus::refused_writes`]), and a later write checks the count
//! after its barrier (which RaftCore answers after the refused write):
//! a refusal, or an entry that resolves without applying, makes the term
//! *failed* — the pending rows may be rows that never commit, so no write
//! may begin until every entry queued before has resolved (their rows
//! leave as they do); then the applied rows are the truth again.
//!
//! [`Consensus::submit`]: ordo_raft::Consensus::submit
//! [`Consensus::refused_writes`]: ordo_raft::Consensus::refused_writes

use std::collections::BTreeMap;
use std::time::Duration;

use ordo_raft::RequestId;
use ordo_vshard::shard::RowWrite;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::constants::{PENDING_BYTES_MAX, PENDING_ENTRIES_MAX};

/// Every vShard's queued, unapplied writes on this node (those it leads).
pub struct PendingWrites {
    /// Whether writes may leave their rows pending (release their locks
    /// once queued); when not, every write keeps its locks until applied.
    enabled: bool,
    shards: Vec<Mutex<ShardPending>>,
    /// Bumped whenever an entry of the vShard resolves or its rows are
    /// dropped, for [`PendingWrites::drained`] and [`PendingWrites::resolved`].
    changed: Vec<watch::Sender<u64>>,
}

/// Why a write may not use (or wait for) a vShard's pending rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingError {
    /// A newer term began on this vShard: the caller's term is over.
    TermOver,
    /// An entry queued in the caller's term failed: the term is over, or
    /// about to be; nothing of the term may read on.
    TermFailed,
    /// Waited longer than the bound.
    TimedOut,
}

impl std::fmt::Display for PendingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PendingError::TermOver => "the vShard's leader changed",
            PendingError::TermFailed => {
                "a write queued by this leader failed; writes wait until those before it resolve"
            }
            PendingError::TimedOut => "queued writes were not applied in time",
        })
    }
}

#[derive(Default)]
struct ShardPending {
    term: u64,
    /// An entry of the term failed (see the module): no write may begin
    /// until `entries` is empty.
    failed: bool,
    /// Entries of the term that failed, for answers that read pending
    /// rows and must learn whether those committed.
    failures: u64,
    /// The group's count of refused writes when last looked at.
    refused_seen: u64,
    next_seq: u64,
    /// The newest queued value of each key (`None`: deleted) and the entry
    /// that wrote it.
    rows: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    entries: BTreeMap<u64, Entry>,
    /// Requests with an entry queued here, for retries of them.
    ids: BTreeMap<RequestId, u64>,
    bytes: usize,
}

struct Entry {
    keys: Vec<Vec<u8>>,
    id: Option<RequestId>,
    bytes: usize,
}

impl ShardPending {
    /// Enters `term` having seen `refused` refusals of the group: rows of
    /// an older term are dropped, a new refusal fails the term (see the
    /// module). Returns the term's failures so far.
    fn enter(&mut self, term: u64, refused: u64) -> Result<u64, PendingError> {
        if term > self.term {
            *self = ShardPending { term, refused_seen: refused, ..ShardPending::default() };
        }
        if term < self.term {
            return Err(PendingError::TermOver);
        }
        if refused != self.refused_seen {
            self.refused_seen = refused;
            if !self.entries.is_empty() {
                self.fail();
            }
        }
        if self.failed && self.entries.is_empty() {
            self.failed = false;
        }
        if self.failed {
            return Err(PendingError::TermFailed);
        }
        Ok(self.failures)
    }

    fn fail(&mut self) {
        self.failed = true;
        self.failures += 1;
    }
}

/// What became of a write's rows: left pending (its entry's number), or
/// not (the bounds are reached, the term failed or is over): the writer
/// keeps its locks until its entry resolved and every entry queued before
/// it (numbered below `upto`) has too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Pending(u64),
    Held { upto: u64 },
}

impl PendingWrites {
    pub fn new(vshards: u32, enabled: bool) -> PendingWrites {
        PendingWrites {
            enabled,
            shards: (0..vshards).map(|_| Mutex::new(ShardPending::default())).collect(),
            changed: (0..vshards).map(|_| watch::channel(0).0).collect(),
        }
    }

    fn shard(&self, vshard: u32) -> &Mutex<ShardPending> {
        &self.shards[vshard as usize]
    }

    fn bump(&self, vshard: u32) {
        self.changed[vshard as usize].send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Called by a write of `term` holding its locks, past its write
    /// barrier, with its group's count of refused writes (read after the
    /// barrier): may it read (and add to) the pending rows? Returns the
    /// term's failures so far, for [`PendingWrites::failures`].
    pub fn begin(&self, vshard: u32, term: u64, refused: u64) -> Result<u64, PendingError> {
        let (entered, newer) = {
            let mut s = self.shard(vshard).lock();
            let newer = term > s.term;
            (s.enter(term, refused), newer)
        };
        if newer {
            // The rows of the older term are gone: wake their waiters.
            self.bump(vshard);
        }
        entered
    }

    /// Entries of `term` that failed so far (0 for another term).
    pub fn failures(&self, vshard: u32, term: u64) -> Option<u64> {
        let s = self.shard(vshard).lock();
        (s.term == term).then_some(s.failures)
    }

    /// The queued value of `key`, if a pending write of `term` has one
    /// (`Some(None)`: deleted).
    pub fn get(&self, vshard: u32, term: u64, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let s = self.shard(vshard).lock();
        if s.term != term {
            return None;
        }
        s.rows.get(key).map(|(_, v)| v.clone())
    }

    /// The queued values of the keys under `prefix`, in key order.
    pub fn scan(&self, vshard: u32, term: u64, prefix: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let s = self.shard(vshard).lock();
        if s.term != term {
            return Vec::new();
        }
        let range = s.rows.range(prefix.to_vec()..).take_while(|(k, _)| k.starts_with(prefix));
        range.map(|(k, (_, v))| (k.clone(), v.clone())).collect()
    }

    /// The entry of request `id` queued here in `term`, if any: a retry
    /// of it must wait for it ([`PendingWrites::resolved`]) rather than
    /// compute the request again over its rows.
    pub fn queued_request(&self, vshard: u32, term: u64, id: RequestId) -> Option<u64> {
        let s = self.shard(vshard).lock();
        (s.term == term).then(|| s.ids.get(&id).copied()).flatten()
    }

    /// Numbers an entry of `term` about to be queued, before it is: a
    /// refusal of it is then always seen with the entry still here (see
    /// [`ShardPending::enter`]). `Held` when its rows will not be left
    /// pending (disabled, the bounds are reached, or the term failed or is
    /// over): the writer keeps its locks until its entry resolved and every
    /// entry numbered below `upto` has too.
    pub fn reserve(&self, vshard: u32, term: u64, writes: &[RowWrite], id: Option<RequestId>) -> Added {
        let bytes: usize = writes.iter().map(|w| w.key.len() + w.value.as_ref().map_or(0, Vec::len)).sum();
        let mut s = self.shard(vshard).lock();
        let full = s.entries.len() >= PENDING_ENTRIES_MAX || s.bytes.saturating_add(bytes) > PENDING_BYTES_MAX;
        if !self.enabled || s.term != term || s.failed || full {
            return Added::Held { upto: s.next_seq };
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        if let Some(id) = id {
            s.ids.insert(id, seq);
        }
        s.bytes += bytes;
        s.entries.insert(seq, Entry { keys: Vec::new(), id, bytes });
        Added::Pending(seq)
    }

    /// Records the rows of reserved entry `seq`, now queued, so that later
    /// writes read them once the writer releases its locks. `false` if the
    /// entry is gone (its term ended meanwhile): the writer keeps its locks.
    pub fn fill(&self, vshard: u32, term: u64, seq: u64, writes: &[RowWrite]) -> bool {
        let mut s = self.shard(vshard).lock();
        if s.term != term || !s.entries.contains_key(&seq) {
            return false;
        }
        for w in writes {
            s.rows.insert(w.key.clone(), (seq, w.value.clone()));
        }
        let keys = writes.iter().map(|w| w.key.clone()).collect();
        s.entries.get_mut(&seq).expect("checked above").keys = keys;
        true
    }

    /// The number the next entry recorded would get: every entry recorded
    /// so far is numbered below it.
    pub fn next(&self, vshard: u32) -> u64 {
        self.shard(vshard).lock().next_seq
    }

    /// Reserved entry `seq` was never queued: it goes, failing nothing.
    pub fn withdraw(&self, vshard: u32, term: u64, seq: u64) {
        self.resolve(vshard, term, seq, true);
    }

    /// Entry `seq` of `term` is applied (its rows are in storage: readers
    /// fall through to them), or failed (`applied: false`, see the module).
    pub fn resolve(&self, vshard: u32, term: u64, seq: u64, applied: bool) {
        {
            let mut s = self.shard(vshard).lock();
            if s.term != term {
                return;
            }
            if let Some(entry) = s.entries.remove(&seq) {
                for key in &entry.keys {
                    if s.rows.get(key).is_some_and(|(by, _)| *by == seq) {
                        s.rows.remove(key);
                    }
                }
                if let Some(id) = entry.id {
                    s.ids.remove(&id);
                }
                s.bytes -= entry.bytes;
            }
            if !applied {
                s.fail();
            }
        }
        self.bump(vshard);
    }

    /// Waits until entry `seq` of `term` has resolved.
    pub async fn resolved(&self, vshard: u32, term: u64, seq: u64, wait: Duration) -> Result<(), PendingError> {
        self.wait(vshard, wait, |s| {
            if s.term < term {
                return Some(Err(PendingError::TermOver));
            }
            (s.term > term || !s.entries.contains_key(&seq)).then_some(Ok(()))
        })
        .await
    }

    /// Waits until every entry of `term` numbered below `upto` has resolved
    /// (applied or not): for a sequenced participant of `term` that holds
    /// its locks and passed its write barrier in `term` (which settles the
    /// entries of older terms), with `upto` from [`PendingWrites::next`]
    /// after its grant; and for a write that kept its locks.
    pub async fn drained(&self, vshard: u32, term: u64, upto: u64, wait: Duration) -> Result<(), PendingError> {
        self.wait(vshard, wait, |s| {
            if s.term < term {
                return Some(Ok(()));
            }
            if s.term > term {
                return Some(Err(PendingError::TermOver));
            }
            s.entries.range(..upto).next().is_none().then_some(Ok(()))
        })
        .await
    }

    /// Waits (up to `wait`) until `done` gives an answer on the vShard's state.
    async fn wait(
        &self,
        vshard: u32,
        wait: Duration,
        mut done: impl FnMut(&ShardPending) -> Option<Result<(), PendingError>>,
    ) -> Result<(), PendingError> {
        let mut changed = self.changed[vshard as usize].subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            changed.borrow_and_update();
            if let Some(answer) = done(&self.shard(vshard).lock()) {
                return answer;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(PendingError::TimedOut),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> RowWrite {
        RowWrite { key: key.as_bytes().to_vec(), value: Some(value.as_bytes().to_vec()) }
    }

    /// Reserves and fills an entry, as a write does around queueing it.
    fn add(p: &PendingWrites, vshard: u32, term: u64, writes: &[RowWrite], id: Option<RequestId>) -> Added {
        let added = p.reserve(vshard, term, writes, id);
        if let Added::Pending(seq) = added {
            assert!(p.fill(vshard, term, seq, writes));
        }
        added
    }

    fn pending(added: Added) -> u64 {
        match added {
            Added::Pending(seq) => seq,
            Added::Held { .. } => panic!("not left pending: {added:?}"),
        }
    }

    #[test]
    fn later_writes_read_queued_rows_until_they_apply() {
        let p = PendingWrites::new(1, true);
        p.begin(0, 5, 0).unwrap();
        let a = pending(add(&p, 0, 5, &[put("k1", "a"), put("k2", "a")], None));
        let b = pending(add(&p, 0, 5, &[put("k1", "b")], None));
        assert_eq!(p.get(0, 5, b"k1"), Some(Some(b"b".to_vec())));
        assert_eq!(p.scan(0, 5, b"k").len(), 2);
        // `a` applied: k2 is read from storage now, k1 still from `b`.
        p.resolve(0, 5, a, true);
        assert_eq!(p.get(0, 5, b"k2"), None);
        assert_eq!(p.get(0, 5, b"k1"), Some(Some(b"b".to_vec())));
        // Another term does not see them.
        assert_eq!(p.get(0, 4, b"k1"), None);
        p.resolve(0, 5, b, true);
        assert!(p.scan(0, 5, b"").is_empty());
        assert_eq!(p.failures(0, 5), Some(0));
    }

    #[test]
    fn a_failed_entry_stops_writes_until_those_before_resolve() {
        let p = PendingWrites::new(1, true);
        p.begin(0, 5, 0).unwrap();
        let a = pending(add(&p, 0, 5, &[put("k", "a")], None));
        let b = pending(add(&p, 0, 5, &[put("j", "b")], None));
        p.resolve(0, 5, a, false);
        assert_eq!(p.get(0, 5, b"k"), None, "a failed entry's rows are gone");
        assert_eq!(p.begin(0, 5, 0), Err(PendingError::TermFailed));
        assert_eq!(add(&p, 0, 5, &[put("k", "c")], None), Added::Held { upto: 2 });
        p.resolve(0, 5, b, true);
        assert_eq!(p.begin(0, 5, 0), Ok(1), "every entry resolved: writes go on, one failure counted");
        assert_eq!(p.begin(0, 4, 0), Err(PendingError::TermOver));
        assert_eq!(p.begin(0, 6, 0), Ok(0));
        assert_eq!(p.get(0, 6, b"j"), None);
    }

    #[test]
    fn a_refused_write_fails_the_term_while_entries_are_pending() {
        let p = PendingWrites::new(1, true);
        p.begin(0, 1, 3).unwrap();
        let a = pending(add(&p, 0, 1, &[put("k", "a")], None));
        // The group refused a write since: `a`'s rows may never commit.
        assert_eq!(p.begin(0, 1, 4), Err(PendingError::TermFailed));
        p.resolve(0, 1, a, true);
        assert_eq!(p.begin(0, 1, 4), Ok(1));
        // A refusal with nothing pending fails nothing.
        assert_eq!(p.begin(0, 1, 5), Ok(1));
    }

    #[test]
    fn a_refusal_seen_before_the_rows_are_recorded_still_fails_the_term() {
        let p = PendingWrites::new(1, true);
        p.begin(0, 1, 0).unwrap();
        // Numbered, queued and refused by RaftCore before its rows are filled in.
        let a = pending(p.reserve(0, 1, &[put("k", "a")], None));
        assert_eq!(p.begin(0, 1, 1), Err(PendingError::TermFailed), "another write notices the refusal");
        assert!(p.fill(0, 1, a, &[put("k", "a")]));
        // A write granted once `a` released its locks must not read its rows.
        assert_eq!(p.begin(0, 1, 1), Err(PendingError::TermFailed));
        p.resolve(0, 1, a, false);
        assert_eq!(p.begin(0, 1, 1), Ok(2));
        assert_eq!(p.get(0, 1, b"k"), None);
    }

    #[test]
    fn disabled_it_leaves_nothing_pending() {
        let p = PendingWrites::new(1, false);
        p.begin(0, 1, 0).unwrap();
        assert_eq!(p.reserve(0, 1, &[put("k", "a")], None), Added::Held { upto: 0 });
        assert_eq!(p.get(0, 1, b"k"), None);
    }

    #[test]
    fn the_bounds_refuse_to_record_more() {
        let p = PendingWrites::new(1, true);
        p.begin(0, 1, 0).unwrap();
        for i in 0..PENDING_ENTRIES_MAX {
            pending(add(&p, 0, 1, &[put(&format!("k{i}"), "v")], None));
        }
        let upto = PENDING_ENTRIES_MAX as u64;
        assert_eq!(add(&p, 0, 1, &[put("one more", "v")], None), Added::Held { upto });
        let big = RowWrite { key: b"big".to_vec(), value: Some(vec![0; PENDING_BYTES_MAX + 1]) };
        let q = PendingWrites::new(1, true);
        q.begin(0, 1, 0).unwrap();
        assert_eq!(add(&q, 0, 1, &[big], None), Added::Held { upto: 0 });
    }

    #[tokio::test]
    async fn drained_waits_for_what_was_queued_before_it() {
        let p = std::sync::Arc::new(PendingWrites::new(1, true));
        p.begin(0, 2, 0).unwrap();
        let a = pending(add(&p, 0, 2, &[put("k", "a")], None));
        let short = Duration::from_millis(10);
        let upto = p.next(0);
        assert_eq!(p.drained(0, 2, upto, short).await, Err(PendingError::TimedOut));
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.drained(0, 2, upto, Duration::from_secs(60)).await })
        };
        // Queued after `upto` was taken: not waited for.
        let c = pending(add(&p, 0, 2, &[put("k2", "c")], None));
        p.resolve(0, 2, a, true);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // Resolved without applying counts as resolved.
        let upto = p.next(0);
        p.resolve(0, 2, c, false);
        assert_eq!(p.drained(0, 2, upto, short).await, Ok(()));
        // A participant of a newer term passed its barrier: nothing to wait for.
        assert_eq!(p.drained(0, 3, u64::MAX, short).await, Ok(()));
    }
}
