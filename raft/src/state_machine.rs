//! `RaftStateMachine` for one group. The storage side (applied state,
//! snapshots, atomic batches) is shared by every group; what a command does
//! is the group's [`GroupLogic`].
//!
//! Each batch of applied entries is one RocksDB write that also records the
//! last applied log id, so after a crash the data and the applied position
//! always agree and openraft re-applies exactly the missing entries.

use std::io;
use std::sync::Arc;

use futures::TryStreamExt;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use ordo_metrics::RaftMetrics;
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use crate::constants::{REQUEST_REPLY_BYTES_MAX, REQUEST_RETENTION_MS};
use crate::engine::Engine;
use crate::entry_codec::{decode, encode};
use crate::groups::group_kind;
use crate::keys::{self, GroupId, Section};
use crate::log_store::AppendTimes;
use crate::requests::{
    expiry_key, record_key, PendingRecords, RequestId, RequestRecord, RequestReply, EXPIRY_PREFIX, RECORD_PREFIX,
};
use crate::types::{
    Command, LogId, Reply, RequestCommand, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};

/// Where a command's effects go: a write batch over the group's data keys.
pub struct ApplyContext<'a> {
    gid: GroupId,
    /// The log index of the entry being applied: the same on every replica.
    index: u64,
    batch: &'a mut WriteBatch,
    db: &'a DB,
    /// Request records of this apply batch (see [`crate::requests`]).
    pending: &'a mut PendingRecords,
}

impl ApplyContext<'_> {
    pub fn group_id(&self) -> GroupId {
        self.gid
    }

    /// The Raft log index of the entry being applied.
    pub fn log_index(&self) -> u64 {
        self.index
    }

    /// Puts `value` at data key `suffix` of this group.
    pub fn put(&mut self, suffix: &[u8], value: &[u8]) {
        self.batch.put(keys::key(self.gid, Section::Data, suffix), value);
    }

    pub fn delete(&mut self, suffix: &[u8]) {
        self.batch.delete(keys::key(self.gid, Section::Data, suffix));
    }

    /// Deletes every data key of this group that starts with `prefix`.
    pub fn delete_prefix(&mut self, prefix: &[u8]) {
        let start = keys::key(self.gid, Section::Data, prefix);
        let end = keys::prefix_end(&start).expect("group keys never end in 0xFF");
        self.batch.delete_range(start, end);
    }

    /// Deletes the data keys of this group in `[start, end)`.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) {
        self.batch.delete_range(keys::key(self.gid, Section::Data, start), keys::key(self.gid, Section::Data, end));
    }

    /// Reads committed state (not the writes of this batch).
    pub fn get(&self, suffix: &[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error> {
        self.db.get(keys::key(self.gid, Section::Data, suffix))
    }

    pub(crate) fn db(&self) -> &DB {
        self.db
    }

    pub(crate) fn pending(&self) -> &PendingRecords {
        self.pending
    }

    pub(crate) fn pending_mut(&mut self) -> &mut PendingRecords {
        self.pending
    }
}

/// Request records (see [`crate::requests`]).
impl ApplyContext<'_> {
    /// The record of request `id` as a command stamped `stamp_ms` sees it.
    pub fn applied_request(&self, id: RequestId, stamp_ms: u64) -> Result<Option<RequestRecord>, String> {
        let record = match self.pending().records.get(&id) {
            Some(r) => Some(r.clone()),
            None => match self.get(&record_key(id)).map_err(|e| e.to_string())? {
                Some(b) => Some(crate::codec::decode::<RequestRecord>(&b).map_err(|e| e.to_string())?),
                None => None,
            },
        };
        Ok(record.filter(|r| r.live_at(stamp_ms)))
    }

    /// Records that request `id`, stamped `stamp_ms`, was applied with `reply`.
    pub fn record_request(&mut self, id: RequestId, stamp_ms: u64, reply: &[u8]) {
        let kept = (reply.len() <= REQUEST_REPLY_BYTES_MAX).then(|| reply.to_vec());
        let record = RequestRecord { stamp_ms, reply: kept };
        self.put(&record_key(id), &crate::codec::encode(&record));
        self.put(&expiry_key(stamp_ms, id), b"");
        self.pending_mut().records.insert(id, record);
    }

    /// Removes the records a command stamped `stamp_ms` no longer sees.
    /// Deletes every expired one (stored or pending), so what remains does
    /// not depend on how entries fell into apply batches.
    pub fn expire_requests(&mut self, stamp_ms: u64) -> Result<(), String> {
        let Some(cutoff) = stamp_ms.checked_sub(REQUEST_RETENTION_MS) else { return Ok(()) };
        let start = keys::key(self.group_id(), Section::Data, EXPIRY_PREFIX);
        let end = keys::key(self.group_id(), Section::Data, &[EXPIRY_PREFIX, &cutoff.to_be_bytes()].concat());
        let mut expired = Vec::new();
        for item in self.db().iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item.map_err(|e| e.to_string())?;
            if *k >= *end {
                break;
            }
            expired.push(k[keys::SECTION_PREFIX_LEN..].to_vec());
        }
        for k in expired {
            let id_bytes = &k[EXPIRY_PREFIX.len() + 8..];
            self.delete(&[RECORD_PREFIX, id_bytes].concat());
            self.delete(&k);
        }
        let old: Vec<(RequestId, u64)> = self
            .pending()
            .records
            .iter()
            .filter(|(_, r)| r.stamp_ms < cutoff)
            .map(|(id, r)| (*id, r.stamp_ms))
            .collect();
        for (id, stamp) in old {
            self.delete(&record_key(id));
            self.delete(&expiry_key(stamp, id));
            self.pending_mut().records.remove(&id);
        }
        Ok(())
    }
}

/// What a group's commands mean. Must be deterministic: the same commands
/// on the same state give the same writes and replies on every replica.
pub trait GroupLogic: Send + Sync + 'static {
    /// Applies one committed command and returns the reply for its proposer.
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Vec<u8>;

    /// Called after the effects of one or more `apply` calls are written to
    /// RocksDB (readable), e.g. to wake readers of the data.
    fn after_write(&self) {}

    /// Called at open and after a snapshot replaced the group's data, so
    /// in-memory views (e.g. the catalog) can be rebuilt from RocksDB.
    fn reload(&self, _gid: GroupId, _db: &DB) {}
}

/// Applies a client request's command once: a retry of a request applied
/// before gets the reply recorded then. Returns an encoded [`RequestReply`].
fn apply_request(ctx: &mut ApplyContext<'_>, logic: &dyn GroupLogic, req: RequestCommand) -> io::Result<Vec<u8>> {
    ctx.expire_requests(req.stamp_ms).map_err(io_err)?;
    if let Some(record) = ctx.applied_request(req.id, req.stamp_ms).map_err(io_err)? {
        // Rare (a retry that raced its first attempt into the log): worth a line.
        tracing::info!(group = ctx.group_id(), index = ctx.log_index(), id = ?req.id, "request seen again: first reply kept");
        return Ok(encode(&RequestReply::Duplicate(record.reply)));
    }
    if !req.id.may_apply_at(req.stamp_ms) {
        return Ok(encode(&RequestReply::TooLate));
    }
    let own = logic.apply(ctx, &req.command);
    let reply = req.reply.unwrap_or(own);
    ctx.record_request(req.id, req.stamp_ms, &reply);
    Ok(encode(&RequestReply::Applied(reply)))
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

pub struct StateMachineStore {
    gid: GroupId,
    engine: Arc<Engine>,
    metrics: RaftMetrics,
    times: AppendTimes,
    logic: Arc<dyn GroupLogic>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    pending: PendingRecords,
}

type AppliedState = (Option<LogId>, StoredMembership);

impl StateMachineStore {
    /// Group `gid`'s state machine, recording applies and snapshots in
    /// `metrics` (the node's), and the commit latency of entries whose
    /// append the log store put in `times`.
    pub(crate) fn open(
        gid: GroupId,
        engine: Arc<Engine>,
        logic: Arc<dyn GroupLogic>,
        metrics: RaftMetrics,
        times: AppendTimes,
    ) -> io::Result<StateMachineStore> {
        let applied: AppliedState = match engine.db().get(keys::key(gid, Section::Applied, b"")).map_err(io_err)? {
            Some(bytes) => decode(&bytes)?,
            None => (None, StoredMembership::default()),
        };
        logic.reload(gid, engine.db());
        Ok(StateMachineStore {
            gid,
            engine,
            metrics,
            times,
            logic,
            last_applied: applied.0,
            membership: applied.1,
            pending: PendingRecords::default(),
        })
    }

    fn applied_key(&self) -> Vec<u8> {
        keys::key(self.gid, Section::Applied, b"")
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<AppliedState, io::Error> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let start = std::time::Instant::now();
        let mut batch = WriteBatch::default();
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let reply = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(cmd @ (Command::App(_) | Command::Request(_))) => {
                    let mut ctx = ApplyContext {
                        gid: self.gid,
                        index: entry.log_id.index,
                        batch: &mut batch,
                        db: self.engine.db(),
                        pending: &mut self.pending,
                    };
                    match cmd {
                        Command::Request(req) => apply_request(&mut ctx, self.logic.as_ref(), *req)?,
                        Command::App(cmd) => self.logic.apply(&mut ctx, &cmd),
                        Command::Checksum => unreachable!("matched above"),
                    }
                }
                EntryPayload::Normal(Command::Checksum) => {
                    // Hash the state as of this entry: earlier entries of
                    // this round must be in RocksDB first.
                    // With the applied position of the entries before it, so
                    // data and position agree after a crash here (and in a
                    // snapshot built meanwhile).
                    let applied: AppliedState = (self.last_applied, self.membership.clone());
                    batch.put(self.applied_key(), encode(&applied));
                    self.engine.write(std::mem::take(&mut batch)).map_err(io_err)?;
                    let hash = data_checksum(self.gid, &self.engine)?;
                    let index = entry.log_id.index;
                    let (start, _) = keys::section_range(self.gid, Section::Checksum);
                    batch.delete_range(start, keys::key(self.gid, Section::Checksum, &index.to_be_bytes()));
                    batch.put(keys::key(self.gid, Section::Checksum, &index.to_be_bytes()), hash.to_be_bytes());
                    encode(&(index, hash))
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            assert!(self.last_applied.is_none_or(|l| l.index < entry.log_id.index), "applied out of order");
            self.last_applied = Some(entry.log_id);
            replies.push((responder, reply));
        }
        let applied: AppliedState = (self.last_applied, self.membership.clone());
        batch.put(self.applied_key(), encode(&applied));
        self.engine.write(batch).map_err(io_err)?;
        self.pending.clear();
        self.logic.after_write();
        let kind = group_kind(self.gid);
        self.metrics.applied(kind, replies.len() as u64, ordo_metrics::seconds_since(start));
        if let Some(last) = self.last_applied {
            for appended in self.times.take_through(last.index) {
                self.metrics.committed(kind, start.saturating_duration_since(appended).as_secs_f64());
            }
        }
        for (responder, reply) in replies {
            if let Some(r) = responder {
                r.send(Reply(reply));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { gid: self.gid, engine: self.engine.clone(), metrics: self.metrics.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SnapshotData) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = decode(&data)?;
        let (start, end) = keys::section_range(self.gid, Section::Data);
        let mut batch = WriteBatch::default();
        batch.delete_range(start, end);
        for (k, v) in rows {
            batch.put(keys::key(self.gid, Section::Data, &k), v);
        }
        let applied: AppliedState = (meta.last_log_id, meta.last_membership.clone());
        batch.put(self.applied_key(), encode(&applied));
        batch.put(keys::key(self.gid, Section::Snapshot, b""), encode(&(meta.clone(), data)));
        self.engine.write_durable(batch).await.map_err(io_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.pending.clear();
        self.logic.reload(self.gid, self.engine.db());
        self.metrics.snapshot_installed(group_kind(self.gid));
        // Entries the snapshot covers are not applied here: not measured.
        if let Some(l) = meta.last_log_id {
            self.times.take_through(l.index);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        load_snapshot(self.gid, &self.engine)
    }
}

/// A stable 64-bit hash (FNV-1a) of every key and value of the group's
/// data section, in key order, each prefixed by its length — except the
/// keys under `keys::UNHASHED_PREFIX`, which replicas prune each on
/// their own schedule.
pub fn data_checksum(gid: GroupId, engine: &Engine) -> io::Result<u64> {
    let (start, end) = keys::section_range(gid, Section::Data);
    let unhashed = keys::key(gid, Section::Data, keys::UNHASHED_PREFIX);
    let unhashed_end = keys::prefix_end(&unhashed).expect("group keys never end in 0xFF");
    let mut h = crate::hash::Fnv64::new();
    let mut it = engine.db().raw_iterator();
    it.seek(&start);
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if k >= end.as_slice() {
            break;
        }
        if k.starts_with(&unhashed) {
            it.seek(&unhashed_end);
            continue;
        }
        for part in [&k[keys::SECTION_PREFIX_LEN..], v] {
            h.write(&(part.len() as u64).to_be_bytes());
            h.write(part);
        }
        it.next();
    }
    it.status().map_err(io_err)?;
    Ok(h.finish())
}

/// The log index `gid`'s replica had applied when `snapshot` was taken (its
/// data and applied position are written in one batch, so they agree).
pub fn applied_index_at(gid: GroupId, engine: &Engine, snapshot: &crate::engine::OwnedSnapshot) -> Result<u64, String> {
    let bytes = engine
        .db()
        .get_opt(keys::key(gid, Section::Applied, b""), &snapshot.read_options())
        .map_err(|e| e.to_string())?;
    match bytes {
        Some(b) => {
            let applied: AppliedState = decode(&b).map_err(|e| e.to_string())?;
            Ok(applied.0.map_or(0, |l| l.index))
        }
        None => Ok(0),
    }
}

/// The checksum this replica took at log `index`, if it has applied it.
pub fn stored_checksum(gid: GroupId, engine: &Engine, index: u64) -> io::Result<Option<u64>> {
    let v = engine.db().get(keys::key(gid, Section::Checksum, &index.to_be_bytes())).map_err(io_err)?;
    Ok(v.map(|b| u64::from_be_bytes(b.as_slice().try_into().unwrap_or([0; 8]))))
}

fn load_snapshot(gid: GroupId, engine: &Engine) -> io::Result<Option<Snapshot>> {
    match engine.db().get(keys::key(gid, Section::Snapshot, b"")).map_err(io_err)? {
        Some(bytes) => {
            let (meta, data): (SnapshotMeta, Vec<u8>) = decode(&bytes)?;
            Ok(Some(Snapshot { meta, snapshot: SnapshotData::new(data) }))
        }
        None => Ok(None),
    }
}

/// Builds a snapshot from a consistent RocksDB snapshot of the group's data
/// and applied state, while the state machine keeps applying.
pub struct SnapshotBuilder {
    gid: GroupId,
    engine: Arc<Engine>,
    metrics: RaftMetrics,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let db = self.engine.db();
        let snap = db.snapshot();
        let applied: AppliedState = match snap.get(keys::key(self.gid, Section::Applied, b"")).map_err(io_err)? {
            Some(bytes) => decode(&bytes)?,
            None => (None, StoredMembership::default()),
        };
        let (start, end) = keys::section_range(self.gid, Section::Data);
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for item in snap.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(io_err)?;
            if *k >= *end {
                break;
            }
            rows.push((k[keys::SECTION_PREFIX_LEN..].to_vec(), v.to_vec()));
        }
        let data = encode(&rows);
        let meta = SnapshotMeta { last_log_id: applied.0, last_membership: applied.1 };
        let mut batch = WriteBatch::default();
        batch.put(keys::key(self.gid, Section::Snapshot, b""), encode(&(meta.clone(), data.clone())));
        self.engine.write(batch).map_err(io_err)?;
        self.metrics.snapshot_built(group_kind(self.gid));
        Ok(Snapshot { meta, snapshot: SnapshotData::new(data) })
    }
}
