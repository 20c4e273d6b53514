//! Per-vShard deterministic lock manager (Calvin's scheduler).
//!
//! A transaction declares all its locks at once — read or write, on key
//! ranges (one key, a partition's prefix, a whole table) — when it is
//! *enqueued*. Requests are granted strictly in enqueue order: a request
//! is granted once no earlier request still in the table conflicts with it
//! (overlapping ranges, at least one write). So transactions that do not
//! conflict run concurrently, conflicting ones run in enqueue order, and
//! because a transaction never asks for more locks after enqueueing there
//! are no deadlocks. The vShard's scheduler enqueues sequenced
//! transactions in the global epoch order; single-shard transactions are
//! enqueued as they arrive on the leader.
//!
//! A *snapshot read* ([`LockTable::enqueue_snapshot_read`]) waits only for
//! the earlier *sequenced* writes it overlaps ([`LockTable::enqueue_sequenced`]:
//! a cross-shard transaction may already be visible on another vShard, so a
//! read after it must see it here too), and no later request waits for it.
//! An unfinished single-shard write is visible to no reader and
//! acknowledged to no one (it may have left the table before it commits:
//! its leader lets later *writes* read its rows, see `ordo_executor`'s
//! pending writes), so a read that does not wait for it is simply ordered
//! before it.
//! A snapshot reader takes its rows from one storage snapshot, which may
//! hold writes granted after it: it is ordered after those. A reader may
//! also find out which sequenced writes it waits for ([`Ticket::blockers`],
//! tagged with their position and writer vShards) and order itself before
//! those that no vShard has applied yet (the vShard leader decides that).
//! The lock table only reports; it never grants a request early.
//!
//! The table also places single-shard writes in the global order for the
//! row versions queries over several vShards read: [`Ticket::after`] is
//! the latest sequenced position ordered before a request, and
//! [`LockTable::sequenced_through`] tells a read as of an epoch whether
//! any sequenced request of that epoch or before is still here.
//!
//! This crate is the lock table alone; the loop that reads the epoch log
//! and runs each position lives with the executor, which it calls into
//! (see `ordo_executor`'s `scheduling` module).
//!
//! Dependency rule: depends on `ordo-raft` (key ranges) and `ordo-vshard`
//! (positions) only; it never looks inside what it orders.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_raft::keys::prefix_end;
use ordo_vshard::shard::TxnPos;
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    Read,
    Write,
}

/// A half-open key range `[start, end)`; `end: None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockSpan {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub mode: LockMode,
}

impl LockSpan {
    /// Exactly one key.
    pub fn key(key: &[u8], mode: LockMode) -> LockSpan {
        let mut end = key.to_vec();
        end.push(0);
        LockSpan { start: key.to_vec(), end: Some(end), mode }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: &[u8], mode: LockMode) -> LockSpan {
        LockSpan { start: prefix.to_vec(), end: prefix_end(prefix), mode }
    }

    /// The whole key space of the vShard.
    pub fn all(mode: LockMode) -> LockSpan {
        LockSpan { start: Vec::new(), end: None, mode }
    }

    fn overlaps(&self, other: &LockSpan) -> bool {
        let before = |end: &Option<Vec<u8>>, start: &[u8]| matches!(end, Some(e) if e.as_slice() <= start);
        !before(&self.end, &other.start) && !before(&other.end, &self.start)
    }

    fn conflicts(&self, other: &LockSpan) -> bool {
        (self.mode == LockMode::Write || other.mode == LockMode::Write) && self.overlaps(other)
    }

    /// Whether this span covers all of `[start, end)` with at least `mode`.
    pub fn covers(&self, start: &[u8], end: Option<&[u8]>, mode: LockMode) -> bool {
        if mode == LockMode::Write && self.mode != LockMode::Write {
            return false;
        }
        let starts_ok = self.start.as_slice() <= start;
        let ends_ok = match (&self.end, end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs <= mine.as_slice(),
        };
        starts_ok && ends_ok
    }
}

/// Most requests waiting or held in one vShard's lock table; more are
/// refused (the caller reports a retryable overload).
pub const LOCK_REQUESTS_MAX: usize = 16_384;

/// What kind of request holds a place in the order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A single-shard request: waits for and holds back what it overlaps.
    Local,
    /// A cross-shard transaction's share, in the global order: like
    /// `Local`, and snapshot reads wait for it.
    Sequenced,
    /// Waits for earlier `Sequenced` writes only; nothing waits for it.
    SnapshotRead,
}

struct Request {
    spans: Vec<LockSpan>,
    kind: Kind,
    granted: bool,
    wake: Option<oneshot::Sender<()>>,
    /// For sequenced requests: which transaction it is.
    tag: Option<Arc<SequencedTag>>,
}

/// What a snapshot read needs to know of a sequenced write it would wait
/// for (see `Ticket::blockers`): its position and the vShards where it
/// writes — it is visible nowhere while none of those has applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencedTag {
    pub pos: TxnPos,
    pub writers: Vec<u32>,
}

#[derive(Default)]
struct Table {
    next: u64,
    requests: BTreeMap<u64, Request>,
    /// The latest sequenced position this table has ordered a request
    /// after: every `Sequenced` request's, and the floors given to
    /// [`LockTable::enqueue_after`]. Only grows.
    last: TxnPos,
}

impl Table {
    /// The earlier requests a request of `kind` over `spans` at `id` waits for.
    fn earlier_conflicts<'a>(
        &'a self,
        id: u64,
        kind: Kind,
        spans: &'a [LockSpan],
    ) -> impl Iterator<Item = &'a Request> + 'a {
        self.requests
            .range(..id)
            .map(|(_, r)| r)
            .filter(move |r| match kind {
                Kind::SnapshotRead => r.kind == Kind::Sequenced,
                Kind::Local | Kind::Sequenced => r.kind != Kind::SnapshotRead,
            })
            .filter(|r| r.spans.iter().any(|a| spans.iter().any(|b| a.conflicts(b))))
    }

    fn conflicts_with_earlier(&self, id: u64, kind: Kind, spans: &[LockSpan]) -> bool {
        self.earlier_conflicts(id, kind, spans).next().is_some()
    }

    /// Grants every waiting request no earlier one conflicts with.
    fn grant_waiting(&mut self) {
        let waiting: Vec<u64> = self.requests.iter().filter(|(_, r)| !r.granted).map(|(id, _)| *id).collect();
        for id in waiting {
            let spans = std::mem::take(&mut self.requests.get_mut(&id).expect("present").spans);
            let kind = self.requests[&id].kind;
            let blocked = self.conflicts_with_earlier(id, kind, &spans);
            let r = self.requests.get_mut(&id).expect("present");
            r.spans = spans;
            if !blocked {
                r.granted = true;
                if let Some(w) = r.wake.take() {
                    let _ = w.send(());
                }
            }
        }
    }
}

/// Resolves once a request leaves the lock table after it was made.
pub type ReleaseNotice = std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>;

/// A [`ReleaseNotice`] on `released`, armed now (so no later release is
/// missed while the caller looks at the table).
fn release_notice(released: &Arc<Notify>) -> ReleaseNotice {
    let mut notice = Box::pin(released.clone().notified_owned());
    notice.as_mut().enable();
    notice
}

/// One vShard's lock table.
#[derive(Clone, Default)]
pub struct LockTable {
    table: Arc<Mutex<Table>>,
    /// Notified whenever a request leaves the table.
    released: Arc<Notify>,
}

/// A place in the lock table's order; [`Ticket::granted`] waits for it.
pub struct Ticket {
    guard: LockGuard,
    wait: Option<oneshot::Receiver<()>>,
    after: TxnPos,
}

/// Held locks; dropping it releases them and wakes whoever may go next.
pub struct LockGuard {
    table: Arc<Mutex<Table>>,
    released: Arc<Notify>,
    id: u64,
}

/// A lock table's occupancy, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LockStats {
    pub requests: usize,
    pub granted: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overloaded(pub usize);

impl LockTable {
    /// Takes a place in the order now (synchronously, so the caller fixes
    /// the order) for `spans`.
    pub fn enqueue(&self, spans: Vec<LockSpan>) -> Result<Ticket, Overloaded> {
        self.enqueue_after(spans, TxnPos::default())
    }

    /// [`LockTable::enqueue`] for a request its vShard orders after every
    /// sequenced position up to `floor` (the epochs a fenced request waited
    /// for). [`Ticket::after`] tells which sequenced position it follows.
    pub fn enqueue_after(&self, spans: Vec<LockSpan>, floor: TxnPos) -> Result<Ticket, Overloaded> {
        self.enqueue_as(spans, Kind::Local, None, floor)
    }

    /// [`LockTable::enqueue`] for a sequenced (cross-shard) input: snapshot
    /// reads wait for it. `tag` says which (see [`Ticket::blockers`]).
    pub fn enqueue_sequenced(&self, spans: Vec<LockSpan>, tag: Option<SequencedTag>) -> Result<Ticket, Overloaded> {
        let floor = tag.as_ref().map_or(TxnPos::default(), |t| t.pos);
        self.enqueue_as(spans, Kind::Sequenced, tag.map(Arc::new), floor)
    }

    /// Takes a place in the order for a snapshot read of `spans` (all
    /// `Read`): granted once no earlier sequenced write it overlaps is
    /// queued; no later request waits for it.
    pub fn enqueue_snapshot_read(&self, spans: Vec<LockSpan>) -> Result<Ticket, Overloaded> {
        assert!(spans.iter().all(|s| s.mode == LockMode::Read), "a snapshot read takes read spans only");
        self.enqueue_as(spans, Kind::SnapshotRead, None, TxnPos::default())
    }

    fn enqueue_as(
        &self,
        spans: Vec<LockSpan>,
        kind: Kind,
        tag: Option<Arc<SequencedTag>>,
        floor: TxnPos,
    ) -> Result<Ticket, Overloaded> {
        let mut t = self.table.lock();
        if t.requests.len() >= LOCK_REQUESTS_MAX {
            return Err(Overloaded(LOCK_REQUESTS_MAX));
        }
        t.last = t.last.max(floor);
        let after = t.last;
        let id = t.next;
        t.next += 1;
        let granted = !t.conflicts_with_earlier(id, kind, &spans);
        let (wake, wait) = if granted {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        t.requests.insert(id, Request { spans, kind, granted, wake, tag });
        Ok(Ticket { guard: LockGuard { table: self.table.clone(), released: self.released.clone(), id }, wait, after })
    }

    /// Whether a sequenced request of an epoch up to `epoch` (or untagged)
    /// is still in the table: not yet applied (or, for a passive
    /// participant, not yet done serving), so a read as of the end of
    /// `epoch` must wait for it (see [`LockTable::release_notice`]) — even
    /// one that only reads here: what it wrote elsewhere may depend on a
    /// single-shard write ordered before it here. Later ones it need not.
    pub fn sequenced_through(&self, epoch: u64) -> bool {
        let t = self.table.lock();
        t.requests
            .values()
            .any(|r| r.kind == Kind::Sequenced && r.tag.as_ref().is_none_or(|tag| tag.pos.epoch <= epoch))
    }

    /// Resolves once a request leaves the table after this call (take it
    /// before looking, so no release is missed).
    pub fn release_notice(&self) -> ReleaseNotice {
        release_notice(&self.released)
    }

    /// Requests waiting or held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.table.lock().requests.len()
    }

    /// Requests queued and how many of them hold their locks.
    pub fn stats(&self) -> LockStats {
        let t = self.table.lock();
        LockStats { requests: t.requests.len(), granted: t.requests.values().filter(|r| r.granted).count() }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Ticket {
    pub fn is_granted(&self) -> bool {
        self.wait.is_none()
    }

    /// The latest sequenced position ordered before this request (its own,
    /// for a sequenced one): a single-shard write's row versions sort right
    /// after it (`ordo_vshard::history`). Every conflicting sequenced
    /// request enqueued before this one is at or before it, and every one
    /// enqueued later (in the same scheduler round) after it.
    pub fn after(&self) -> TxnPos {
        self.after
    }

    /// Resolves once a request leaves the table after this call (taken
    /// before looking at [`Ticket::blockers`], so no release is missed).
    pub fn release_notice(&self) -> ReleaseNotice {
        release_notice(&self.guard.released)
    }

    /// The earlier requests this one still waits for, by tag; `None` if
    /// one of them has none. For a snapshot read: the sequenced writes of
    /// its rows ordered before it and not yet done here.
    pub fn blockers(&self) -> Option<Vec<Arc<SequencedTag>>> {
        let t = self.guard.table.lock();
        let me = t.requests.get(&self.guard.id)?;
        t.earlier_conflicts(self.guard.id, me.kind, &me.spans).map(|r| r.tag.clone()).collect()
    }

    /// Waits until every lock of this request is granted.
    pub async fn granted(self) -> LockGuard {
        if let Some(w) = self.wait {
            // The sender lives in the table until granted or until the
            // table itself goes away with our guard; it is never dropped
            // unsent while we hold the guard.
            let _ = w.await;
        }
        self.guard
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        t.requests.remove(&self.id);
        t.grant_waiting();
        drop(t);
        self.released.notify_waiters();
    }
}

/// One lock table per vShard.
pub struct ShardLocks {
    tables: Vec<LockTable>,
}

impl ShardLocks {
    pub fn new(vshards: u32) -> ShardLocks {
        ShardLocks { tables: (0..vshards).map(|_| LockTable::default()).collect() }
    }

    pub fn table(&self, vshard: u32) -> &LockTable {
        &self.tables[vshard as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(k: &[u8]) -> LockSpan {
        LockSpan::key(k, LockMode::Write)
    }

    fn r(k: &[u8]) -> LockSpan {
        LockSpan::key(k, LockMode::Read)
    }

    #[tokio::test]
    async fn non_conflicting_requests_run_together_conflicting_ones_in_order() {
        let t = LockTable::default();
        let a = t.enqueue(vec![w(b"a")]).unwrap();
        let b = t.enqueue(vec![w(b"b")]).unwrap();
        let a2 = t.enqueue(vec![r(b"a")]).unwrap();
        let a3 = t.enqueue(vec![r(b"a")]).unwrap();
        assert!(a.is_granted() && b.is_granted(), "different keys: both granted");
        assert!(!a2.is_granted() && !a3.is_granted(), "reads wait for the earlier write");
        drop(a.granted().await);
        let a2 = a2.granted().await;
        let a3 = a3.granted().await; // readers share
        let a4 = t.enqueue(vec![w(b"a")]).unwrap();
        assert!(!a4.is_granted());
        drop(a2);
        assert!(!a4.is_granted(), "still one reader");
        drop(a3);
        let _a4 = a4.granted().await;
        drop(b);
        assert_eq!(t.len(), 1);
    }

    #[tokio::test]
    async fn a_later_request_never_overtakes_an_earlier_conflicting_one() {
        let t = LockTable::default();
        let first = t.enqueue(vec![LockSpan::prefix(b"t1", LockMode::Write)]).unwrap();
        let second = t.enqueue(vec![w(b"t1k"), w(b"z")]).unwrap();
        // Would be free on its own, but conflicts with `second`, which is earlier.
        let third = t.enqueue(vec![w(b"z")]).unwrap();
        assert!(first.is_granted() && !second.is_granted() && !third.is_granted());
        drop(first);
        let second = second.granted().await;
        assert!(t.enqueue(vec![r(b"q")]).unwrap().is_granted());
        drop(second);
        third.granted().await;
    }

    #[tokio::test]
    async fn a_snapshot_read_waits_for_earlier_sequenced_writes_only_and_holds_back_nothing() {
        let t = LockTable::default();
        let sequenced = t.enqueue_sequenced(vec![w(b"a")], None).unwrap();
        let local = t.enqueue(vec![w(b"c")]).unwrap();
        let read = t.enqueue_snapshot_read(vec![r(b"a"), r(b"b"), r(b"c")]).unwrap();
        let later = t.enqueue(vec![w(b"b")]).unwrap();
        assert!(sequenced.is_granted() && local.is_granted());
        assert!(!read.is_granted(), "waits for the earlier sequenced write of a");
        assert!(later.is_granted(), "a later write of b does not wait for the read");
        drop(sequenced);
        let read = read.granted().await;
        // Not for the single-shard write of c, still held: the read is
        // ordered before it.
        assert!(t.enqueue(vec![w(b"a")]).unwrap().is_granted(), "nor does a later write of a, while the read is held");
        let later_sequenced = t.enqueue_sequenced(vec![w(b"b")], None).unwrap();
        assert!(!later_sequenced.is_granted(), "sequenced writes still wait for earlier writes");
        drop((read, local, later));
        later_sequenced.granted().await;
    }

    #[tokio::test]
    async fn a_snapshot_read_names_the_sequenced_writes_it_waits_for() {
        let t = LockTable::default();
        let tag = |index, writers: &[u32]| SequencedTag { pos: TxnPos { epoch: 7, index }, writers: writers.to_vec() };
        let _a = t.enqueue_sequenced(vec![w(b"a")], Some(tag(0, &[1, 2]))).unwrap();
        let _b = t.enqueue_sequenced(vec![w(b"b")], Some(tag(1, &[3]))).unwrap();
        let _local = t.enqueue(vec![w(b"a")]).unwrap();
        let read = t.enqueue_snapshot_read(vec![r(b"a")]).unwrap();
        let blockers: Vec<SequencedTag> = read.blockers().unwrap().iter().map(|b| (**b).clone()).collect();
        assert_eq!(blockers, vec![tag(0, &[1, 2])], "the sequenced write of a only; not b's, not the local one");
        let _untagged = t.enqueue_sequenced(vec![w(b"c")], None).unwrap();
        let read_c = t.enqueue_snapshot_read(vec![r(b"c")]).unwrap();
        assert_eq!(read_c.blockers(), None, "an untagged blocker: the reader must wait");
    }

    #[test]
    fn a_request_is_ordered_after_the_latest_sequenced_position_before_it() {
        let t = LockTable::default();
        let pos = |epoch, index| TxnPos { epoch, index };
        let tag = |p: TxnPos| Some(SequencedTag { pos: p, writers: vec![0] });
        assert_eq!(t.enqueue(vec![w(b"a")]).unwrap().after(), TxnPos::default());
        let _s = t.enqueue_sequenced(vec![w(b"b")], tag(pos(3, 1))).unwrap();
        assert_eq!(t.enqueue(vec![w(b"c")]).unwrap().after(), pos(3, 1));
        // A fence floor raises it; a lower one (or an earlier position
        // enqueued again) never lowers it.
        assert_eq!(t.enqueue_after(vec![w(b"d")], pos(5, u32::MAX)).unwrap().after(), pos(5, u32::MAX));
        let _again = t.enqueue_sequenced(vec![w(b"e")], tag(pos(4, 0))).unwrap();
        assert_eq!(t.enqueue_after(vec![w(b"f")], pos(2, 0)).unwrap().after(), pos(5, u32::MAX));
        let _later = t.enqueue_sequenced(vec![w(b"g")], tag(pos(6, 0))).unwrap();
        assert_eq!(t.enqueue(vec![w(b"h")]).unwrap().after(), pos(6, 0));
    }

    #[tokio::test]
    async fn a_read_as_of_an_epoch_waits_for_the_sequenced_requests_of_that_epoch_and_before_only() {
        let t = LockTable::default();
        let tag = |epoch| Some(SequencedTag { pos: TxnPos { epoch, index: 0 }, writers: vec![0] });
        let local = t.enqueue(vec![w(b"a")]).unwrap();
        let reader = t.enqueue_sequenced(vec![r(b"b")], tag(2)).unwrap();
        let later = t.enqueue_sequenced(vec![w(b"a")], tag(5)).unwrap();
        assert!(!t.sequenced_through(1), "single-shard requests and later epochs do not count");
        assert!(t.sequenced_through(2), "a sequenced reader counts");
        let notice = t.release_notice();
        drop(reader);
        notice.await;
        assert!(!t.sequenced_through(4));
        assert!(t.sequenced_through(5));
        drop(later);
        drop(local);
        assert!(!t.sequenced_through(5));
    }

    #[test]
    fn spans_overlap_and_cover() {
        let p = LockSpan::prefix(b"ab", LockMode::Write);
        assert!(p.conflicts(&r(b"abc")));
        assert!(!p.conflicts(&r(b"ac")));
        assert!(!r(b"x").conflicts(&r(b"x")));
        assert!(LockSpan::all(LockMode::Read).conflicts(&w(b"anything")));
        assert!(p.covers(b"abz", Some(b"abz\0"), LockMode::Write));
        assert!(!p.covers(b"a", Some(b"b"), LockMode::Read));
        assert!(!r(b"k").covers(b"k", Some(b"k\0"), LockMode::Write));
        assert!(LockSpan::prefix(&[0xFF], LockMode::Read).end.is_none());
    }
}
