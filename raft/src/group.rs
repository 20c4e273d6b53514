//! [`Consensus`]: the small interface the rest of OrdoDB uses for a Raft
//! group, and [`RaftGroup`], its openraft implementation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Config, ReadPolicy, ServerState, SnapshotPolicy};
use ordo_metrics::{Outcome, RaftMetrics};
use serde::{Deserialize, Serialize};

use crate::constants::{
    APPEND_ENTRIES_MAX, GROUP_API_QUEUE_MAX, GROUP_APPLY_QUEUE_MAX, HEARTBEAT_MS_MIN, LEADER_POLL_MS,
    LOG_KEPT_BEHIND_SNAPSHOT_MAX, PROPOSE_TIMEOUT_MS,
};
use crate::entry_codec::{decode, encode};
use crate::log_store::LogStore;
use crate::network::{GroupNetworkFactory, Transport};
use crate::requests::{stamp_now_ms, stored_request, RequestId, RequestRecord, RequestReply};
use crate::state_machine::{stored_checksum, GroupLogic, StateMachineStore};
use crate::types::{
    Command, RaftKind, RequestCommand, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote, WriteResponder,
};

/// One group's openraft instance over our storage.
type Raft = openraft::Raft<TypeConfig, StateMachineStore>;
use crate::engine::Engine;
use crate::groups::group_kind;
use crate::keys::GroupId;

#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ConsensusError {
    /// This replica is not the leader; `leader` is its best guess.
    #[error("node is not the leader of group {group} (leader: {leader:?})")]
    NotLeader { group: GroupId, leader: Option<u64> },
    #[error("group {group} cannot serve: {reason}")]
    Unavailable { group: GroupId, reason: String },
    /// A proposal whose fate this replica cannot tell: its entry may have
    /// been committed (or may still be, by another leader) or not. Never
    /// "not applied": only a request id makes retrying it safe.
    #[error("group {group}: outcome unknown: {reason}")]
    Unknown { group: GroupId, reason: String },
}

/// One group's state as `GET /v1/cluster` reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupStatus {
    pub group_id: GroupId,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub voters: Vec<u64>,
    /// On the leader: the last log index known replicated to each voter.
    pub matched: BTreeMap<u64, Option<u64>>,
}

/// A write queued by [`Consensus::submit`]: resolves with its reply once
/// applied, or with why it never will be (`NotLeader`: refused, never
/// appended; `Unknown`: appended and then dropped here, or Raft stopped).
pub type Queued = Pin<Box<dyn Future<Output = Result<RequestReply, ConsensusError>> + Send>>;

/// What the layers above need from a replicated group.
#[async_trait::async_trait]
pub trait Consensus: Send + Sync {
    fn group_id(&self) -> GroupId;
    fn status(&self) -> GroupStatus;
    /// The leader this replica knows of, if any.
    fn leader(&self) -> Option<u64>;
    fn is_leader(&self) -> bool;
    /// The term this replica leads in, if it is the leader: work started
    /// for one term must stop when it changes, even if this node leads
    /// again in a later one (another leader may have acted in between).
    fn leader_term(&self) -> Option<u64>;
    /// Replicates `command`, waits until it is applied here, returns its reply.
    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, ConsensusError>;
    /// Like [`Consensus::propose`] for a client request that may be
    /// retried: applied once per `id` (a retry gets the first reply; see
    /// [`crate::requests`]). `reply`: the reply to record, when the
    /// proposer computed it (else the logic's reply).
    async fn propose_request(
        &self,
        id: RequestId,
        command: Vec<u8>,
        reply: Option<Vec<u8>>,
    ) -> Result<RequestReply, ConsensusError>;
    /// Queues a write for the log of this replica's leadership in `term`
    /// and returns once it is queued, before it commits. A write queued
    /// after this returns is appended after it, and no write is appended
    /// once this replica no longer leads in `term` (another leader may
    /// have acted since): so a writer may let later writes read what it
    /// queued before it commits (early lock release), and each of those
    /// commits only if it does (Raft commits a log prefix) — provided they
    /// check [`Consensus::refused_writes`] after their barrier, since a
    /// leader whose lease lapsed refuses a write and may take the next
    /// one once the lease is renewed, in the same term. `id`: as for
    /// [`Consensus::propose_request`], and an attempt too late to apply
    /// is refused here, queued nowhere (`Unknown`, as that reply). The
    /// future resolves once the entry is applied here (an `App` command's
    /// reply comes as `Applied`), or fails once it cannot be: it has no
    /// timeout of its own.
    async fn submit(
        &self,
        term: u64,
        id: Option<RequestId>,
        command: Vec<u8>,
        reply: Option<Vec<u8>>,
    ) -> Result<Queued, ConsensusError>;
    /// How many writes queued by [`Consensus::submit`] were refused so far.
    /// A refusal is counted inside RaftCore before it takes its next
    /// message, so a barrier that returns after a write was queued sees
    /// the count of its refusal. Not every refusal ends the term (a
    /// leader whose lease lapsed refuses writes until it is renewed): a
    /// writer that lets later writes read a queued write must check.
    fn refused_writes(&self) -> u64;
    /// The record of request `id` if this replica applied it (on a leader,
    /// after a write barrier: whether any leader applied it).
    fn applied_request(&self, id: RequestId) -> Result<Option<RequestRecord>, ConsensusError>;
    /// Replicates a checksum point: every replica hashes its data at that
    /// log index. Returns `(index, the leader's hash)`.
    async fn checksum(&self) -> Result<(u64, u64), ConsensusError>;
    /// The hash this replica took at checksum point `index`, waiting up to
    /// `timeout` for the replica to apply it. `None` if it was superseded.
    async fn replica_checksum(&self, index: u64, timeout: Duration) -> Result<Option<u64>, ConsensusError>;
    /// On the leader: returns once every write committed before the call is
    /// applied locally, so local reads are linearizable (ReadIndex: confirms
    /// leadership with a quorum).
    async fn read_barrier(&self) -> Result<(), ConsensusError>;
    /// On the leader: returns once everything this leader knows committed is
    /// applied locally. Enough before computing a write: should this node no
    /// longer lead, the write it then proposes cannot commit. Uses the
    /// leader lease when valid (no round trip), else ReadIndex.
    async fn write_barrier(&self) -> Result<(), ConsensusError>;
    /// On the leader: `Err` while a proposal of this term timed out and may
    /// still commit (see `RaftGroup`'s `undecided`): no write may be
    /// computed until it is settled. The barriers check it too.
    fn settled(&self) -> Result<(), ConsensusError>;
    /// Waits until this replica has applied `index` (or `timeout` passes).
    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ConsensusError>;
    /// Handles a Raft message from a peer (encoded by the peer's transport).
    async fn handle_message(&self, kind: RaftKind, payload: &[u8]) -> Result<Vec<u8>, String>;
    /// If this replica leads the group, hands leadership to `to` (which
    /// must be an up-to-date voter; openraft checks that).
    async fn transfer_leader(&self, to: u64);
    /// Sends heartbeats now if this replica leads the group.
    async fn heartbeat(&self);
    async fn shutdown(&self);
}

/// What a node gives every group it hosts: its id, its one RocksDB, its
/// transport and the groups' timing knobs.
pub struct GroupHost {
    pub node_id: u64,
    pub engine: Arc<Engine>,
    pub transport: Arc<Transport>,
    pub config: GroupConfig,
    /// Recorded by every group of the node.
    pub metrics: RaftMetrics,
}

/// Timing and retention knobs shared by all groups of a node.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    pub heartbeat_ms: u64,
    pub snapshot_logs: u64,
}

impl GroupConfig {
    fn raft_config(&self) -> Result<Config, String> {
        let hb = self.heartbeat_ms.max(HEARTBEAT_MS_MIN);
        Config {
            cluster_name: "ordo".into(),
            // openraft's heartbeat timer is off (see below), but its tick
            // period is derived from `heartbeat_interval` (about a fifth of
            // it) and every tick of every group costs a pass through its
            // RaftCore. A tick of election_timeout/10 is precise enough.
            heartbeat_interval: hb * 3,
            election_timeout_min: hb * 6,
            election_timeout_max: hb * 12,
            // The node drives heartbeats of all its groups from one ticker
            // (see `heartbeat`), so they reach each peer in one message.
            enable_heartbeat: false,
            enable_pre_vote: Some(true),
            // A leader that restarts must win a new election, not resume its
            // old term: resumed, its barrier covers only what it knew
            // committed, so entries it appended before the crash (which may
            // be committed) are missing from the rows a write then reads
            // (found by ordo-chaos: a retried write queued after its own
            // first attempt, an acknowledged append overwritten).
            enable_leader_restore: Some(false),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            // Keep some log behind a snapshot so briefly lagging followers catch
            // up from the log rather than a full snapshot.
            max_in_snapshot_log_to_keep: (self.snapshot_logs / 2).min(LOG_KEPT_BEHIND_SNAPSHOT_MAX),
            purge_batch_size: (self.snapshot_logs / 4).clamp(1, 256),
            max_payload_entries: APPEND_ENTRIES_MAX,
            // Bounded per-group queues: many groups per node.
            api_channel_size: Some(GROUP_API_QUEUE_MAX),
            state_machine_channel_size: Some(GROUP_APPLY_QUEUE_MAX),
            ..Default::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

pub struct RaftGroup {
    gid: GroupId,
    node_id: u64,
    /// Writes queued by `submit` that RaftCore refused (see
    /// [`Consensus::refused_writes`]).
    refused: Arc<std::sync::atomic::AtomicU64>,
    raft: Raft,
    engine: Arc<Engine>,
    metrics: RaftMetrics,
    /// Proposals given up on and not resolved yet (see `check_decided`).
    undecided: Arc<parking_lot::Mutex<Undecided>>,
}

/// Proposals a leader gave up on (timed out) whose entries may still
/// commit, counted for the term they were made in.
#[derive(Default)]
struct Undecided {
    term: u64,
    count: u64,
}

/// Settles one proposal counted in [`Undecided`] when dropped.
struct Settle {
    undecided: Arc<parking_lot::Mutex<Undecided>>,
    term: u64,
}

impl Undecided {
    /// Counts a proposal given up on in `term`. The count is for one term
    /// and never goes back to an older one: a proposal of a term that has
    /// ended is settled by the next leader (it applies or drops the entry
    /// before it serves), so it is not counted, and it must not reset the
    /// count of the newer term.
    fn add(this: &Arc<parking_lot::Mutex<Undecided>>, term: u64) -> Settle {
        let mut u = this.lock();
        if term > u.term {
            *u = Undecided { term, count: 0 };
        }
        if term == u.term {
            u.count += 1;
        }
        Settle { undecided: this.clone(), term }
    }
}

/// A proposal in flight. Dropped before it resolved (given up on after the
/// timeout, or its caller's future cancelled, e.g. a forwarded call whose
/// connection broke), it is followed to its end on its own task and counted
/// [`Undecided`] meanwhile: the entry may still commit.
struct InFlight<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    proposal: Option<Pin<Box<F>>>,
    undecided: Arc<parking_lot::Mutex<Undecided>>,
    /// The term when the proposal was made; its entry may land in a later
    /// one (this node re-elected in between), so the count is made under
    /// the later of this and the term when it is given up.
    term: u64,
    raft: Raft,
}

impl<F> Drop for InFlight<F>
where
    F: Future + Send + 'static,
    F::Output: Send,
{
    fn drop(&mut self) {
        if let Some(proposal) = self.proposal.take() {
            let now = self.raft.metrics().borrow_watched().current_term;
            let settle = Undecided::add(&self.undecided, self.term.max(now));
            tokio::spawn(async move {
                let _ = proposal.await;
                drop(settle);
            });
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        let mut u = self.undecided.lock();
        if u.term == self.term {
            u.count = u.count.saturating_sub(1);
        }
    }
}

/// How a proposal ended, for the metrics: applied, refused (nothing
/// applied), or unknown.
fn outcome_of<T>(result: &Result<T, ConsensusError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(ConsensusError::Unknown { .. }) => Outcome::Unknown,
        Err(_) => Outcome::Refused,
    }
}

fn forward_or_unavailable<E>(
    gid: GroupId,
    e: &openraft::errors::RaftError<crate::types::TypeConfig, E>,
) -> ConsensusError
where
    E: std::fmt::Debug
        + std::fmt::Display
        + openraft::TryAsRef<openraft::errors::ForwardToLeader<crate::types::TypeConfig>>,
{
    match e.forward_to_leader() {
        Some(f) => ConsensusError::NotLeader { group: gid, leader: f.leader_id },
        None => ConsensusError::Unavailable { group: gid, reason: e.to_string() },
    }
}

impl RaftGroup {
    /// Proposes `command` and waits for its reply, up to
    /// [`PROPOSE_TIMEOUT_MS`]. Only a refusal before the entry was appended
    /// is `NotLeader`; an entry discarded by a leader change, a timeout or
    /// a stopped Raft leave the outcome unknown. A proposal given up on (or
    /// whose caller went away) is still followed to its end (see [`InFlight`]).
    async fn write(&self, command: Command) -> Result<Vec<u8>, ConsensusError> {
        let start = std::time::Instant::now();
        let result = self.write_once(command).await;
        self.metrics.proposed(group_kind(self.gid), outcome_of(&result), ordo_metrics::seconds_since(start));
        result
    }

    /// [`RaftGroup::write`] without its metrics.
    async fn write_once(&self, command: Command) -> Result<Vec<u8>, ConsensusError> {
        use openraft::errors::{ClientWriteError, RaftError};
        let unknown = |reason: String| ConsensusError::Unknown { group: self.gid, reason };
        let mut timeout = Duration::from_millis(PROPOSE_TIMEOUT_MS);
        // Fault injection: `FAILPOINTS=propose-timeout=10%return` gives up
        // on a proposal at once, after it was submitted (its entry goes on).
        if fail::eval("propose-timeout", |_| ()).is_some() {
            timeout = Duration::ZERO;
        }
        let term = self.raft.metrics().borrow_watched().current_term;
        let raft = self.raft.clone();
        let mut flight = InFlight {
            proposal: Some(Box::pin(async move { raft.client_write(command).await })),
            undecided: self.undecided.clone(),
            term,
            raft: self.raft.clone(),
        };
        let polled = tokio::time::timeout(timeout, flight.proposal.as_mut().expect("set above")).await;
        let outcome = match polled {
            Ok(outcome) => {
                flight.proposal = None;
                outcome
            }
            // Dropping `flight` counts the proposal as undecided before the
            // caller releases its locks (see `InFlight`).
            Err(_) => return Err(unknown(format!("not committed within {} ms", timeout.as_millis()))),
        };
        match outcome {
            Ok(resp) => Ok(resp.data.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader { group: self.gid, leader: f.leader_id })
            }
            Err(e @ RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(unknown(e.to_string())),
            Err(e @ RaftError::Fatal(_)) => Err(unknown(e.to_string())),
            Err(e) => Err(ConsensusError::Unavailable { group: self.gid, reason: e.to_string() }),
        }
    }

    /// Refuses while a proposal this leader gave up on (in its current
    /// term) is unresolved: a write computed now would not see that entry,
    /// which may yet commit before it (a lost update). A new term settles
    /// it: the next leader applies or drops the entry before it serves.
    fn check_decided(&self) -> Result<(), ConsensusError> {
        let term = self.raft.metrics().borrow_watched().current_term;
        let u = self.undecided.lock();
        if u.count > 0 && u.term == term {
            return Err(ConsensusError::Unavailable {
                group: self.gid,
                reason: format!("{} proposal(s) of term {term} not settled yet", u.count),
            });
        }
        Ok(())
    }

    /// Opens (or creates) this node's replica of group `gid`. `members` maps
    /// every voter's node id to its RPC address. When `bootstrap` is set and
    /// the replica has no Raft state yet, it initialises the group.
    pub async fn open(
        host: &GroupHost,
        gid: GroupId,
        members: &BTreeMap<u64, String>,
        bootstrap: bool,
        logic: Arc<dyn GroupLogic>,
    ) -> Result<Arc<RaftGroup>, String> {
        let GroupHost { node_id, engine, transport, config, metrics } = host;
        let (node_id, engine, transport) = (*node_id, engine.clone(), transport.clone());
        let times = crate::log_store::AppendTimes::default();
        let log = LogStore::new(gid, engine.clone(), metrics.clone(), times.clone());
        let initialized = log.is_initialized().map_err(|e| e.to_string())?;
        let sm =
            StateMachineStore::open(gid, engine.clone(), logic, metrics.clone(), times).map_err(|e| e.to_string())?;
        let net = GroupNetworkFactory { gid, transport };
        let cfg = Arc::new(config.raft_config()?);
        let raft = Raft::new(node_id, cfg, net, log, sm).await.map_err(|e| e.to_string())?;
        if bootstrap && !initialized {
            let nodes: BTreeMap<u64, BasicNode> = members.iter().map(|(&id, a)| (id, BasicNode::new(a))).collect();
            if let Err(e) = raft.initialize(nodes).await {
                tracing::debug!(group = gid, "initialize: {e}");
            }
        }
        Ok(Arc::new(RaftGroup {
            gid,
            node_id,
            refused: Default::default(),
            raft,
            engine,
            metrics: metrics.clone(),
            undecided: Default::default(),
        }))
    }
}

#[async_trait::async_trait]
impl Consensus for RaftGroup {
    fn group_id(&self) -> GroupId {
        self.gid
    }

    fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        GroupStatus {
            group_id: self.gid,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            commit_index: m.local_committed.map(|l| l.index),
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            voters: m.membership_config.voter_ids().collect(),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect())
                .unwrap_or_default(),
        }
    }

    fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    fn leader_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        (m.state == ServerState::Leader).then_some(m.current_term)
    }

    async fn propose(&self, command: Vec<u8>) -> Result<Vec<u8>, ConsensusError> {
        self.write(Command::App(command)).await
    }

    async fn propose_request(
        &self,
        id: RequestId,
        command: Vec<u8>,
        reply: Option<Vec<u8>>,
    ) -> Result<RequestReply, ConsensusError> {
        let request = RequestCommand { id, stamp_ms: stamp_now_ms(), command, reply };
        let bytes = self.write(Command::Request(Box::new(request))).await?;
        decode(&bytes).map_err(|e| ConsensusError::Unavailable { group: self.gid, reason: e.to_string() })
    }

    async fn submit(
        &self,
        term: u64,
        id: Option<RequestId>,
        command: Vec<u8>,
        reply: Option<Vec<u8>>,
    ) -> Result<Queued, ConsensusError> {
        use openraft::errors::ClientWriteError;
        use openraft::vote::RaftLeaderId;
        type ClientWriteResult = Result<openraft::raft::ClientWriteResponse<TypeConfig>, ClientWriteError<TypeConfig>>;
        let gid = self.gid;
        let start = std::time::Instant::now();
        let command = match id {
            None => Command::App(command),
            Some(id) => {
                let stamp_ms = stamp_now_ms();
                if !id.may_apply_at(stamp_ms) {
                    let reason = "this attempt came too long after the request was first sent to tell whether an \
                                  earlier one applied; it was not applied";
                    return Err(ConsensusError::Unknown { group: gid, reason: reason.into() });
                }
                Command::Request(Box::new(RequestCommand { id, stamp_ms, command, reply }))
            }
        };
        let leader = openraft::type_config::alias::LeaderIdOf::<TypeConfig>::new(term, self.node_id).to_committed();
        let refused = self.refused.clone();
        let (responder, applied) = WriteResponder::new(Some(Box::new(move |r: &ClientWriteResult| {
            if matches!(r, Err(ClientWriteError::ForwardToLeader(_))) {
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })));
        // Refused before it was queued: nothing will apply.
        self.raft
            .write(command)
            .with_leader(leader)
            .responder(responder)
            .await
            .map_err(|e| ConsensusError::Unavailable { group: gid, reason: e.to_string() })?;
        let metrics = self.metrics.clone();
        Ok(Box::pin(async move {
            let result = match applied.await {
                Ok(Ok(resp)) if id.is_some() => decode::<RequestReply>(&resp.data.0)
                    .map_err(|e| ConsensusError::Unavailable { group: gid, reason: e.to_string() }),
                Ok(Ok(resp)) => Ok(RequestReply::Applied(resp.data.0)),
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    Err(ConsensusError::NotLeader { group: gid, leader: f.leader_id })
                }
                Ok(Err(e)) => Err(ConsensusError::Unknown { group: gid, reason: e.to_string() }),
                Err(_) => Err(ConsensusError::Unknown { group: gid, reason: "Raft stopped".into() }),
            };
            metrics.proposed(group_kind(gid), outcome_of(&result), ordo_metrics::seconds_since(start));
            result
        }))
    }

    fn refused_writes(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn applied_request(&self, id: RequestId) -> Result<Option<RequestRecord>, ConsensusError> {
        stored_request(self.gid, &self.engine, id)
            .map_err(|reason| ConsensusError::Unavailable { group: self.gid, reason })
    }

    async fn checksum(&self) -> Result<(u64, u64), ConsensusError> {
        let bytes = self.write(Command::Checksum).await?;
        decode(&bytes).map_err(|e| ConsensusError::Unavailable { group: self.gid, reason: e.to_string() })
    }

    async fn replica_checksum(&self, index: u64, timeout: Duration) -> Result<Option<u64>, ConsensusError> {
        self.wait_applied(index, timeout).await?;
        stored_checksum(self.gid, &self.engine, index)
            .map_err(|e| ConsensusError::Unavailable { group: self.gid, reason: e.to_string() })
    }

    async fn read_barrier(&self) -> Result<(), ConsensusError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => self.check_decided(),
            Err(e) => Err(forward_or_unavailable(self.gid, &e)),
        }
    }

    fn settled(&self) -> Result<(), ConsensusError> {
        self.check_decided()
    }

    async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ConsensusError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "wait_applied")
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::Unavailable { group: self.gid, reason: e.to_string() })
    }

    async fn write_barrier(&self) -> Result<(), ConsensusError> {
        match self.raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
            Ok(_) => self.check_decided(),
            Err(e) if e.forward_to_leader().is_some() => Err(forward_or_unavailable(self.gid, &e)),
            Err(_) => self.read_barrier().await,
        }
    }

    async fn handle_message(&self, kind: RaftKind, payload: &[u8]) -> Result<Vec<u8>, String> {
        let err = |e: std::io::Error| e.to_string();
        Ok(match kind {
            RaftKind::Append => {
                let req = decode(payload).map_err(err)?;
                encode(&self.raft.append_entries(req).await.map_err(|e| e.to_string()))
            }
            RaftKind::Vote => {
                let req = decode(payload).map_err(err)?;
                encode(&self.raft.vote(req).await.map_err(|e| e.to_string()))
            }
            RaftKind::Snapshot => {
                let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = decode(payload).map_err(err)?;
                let snapshot = Snapshot { meta, snapshot: SnapshotData::new(data) };
                encode(&self.raft.install_full_snapshot(vote, snapshot).await.map_err(|e| e.to_string()))
            }
            RaftKind::TransferLeader => {
                let req = decode(payload).map_err(err)?;
                let r = match self.raft.handle_transfer_leader(req).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(fatal) => Err(fatal.to_string()),
                };
                encode(&r)
            }
        })
    }

    async fn transfer_leader(&self, to: u64) {
        if self.is_leader() {
            let _ = self.raft.trigger().transfer_leader(to).await;
        }
    }

    async fn heartbeat(&self) {
        if self.is_leader() {
            let _ = self.raft.trigger().heartbeat().await;
        }
    }

    async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Waits (up to `timeout`) until some node leads `group`.
pub async fn wait_for_leader(group: &dyn Consensus, timeout: Duration) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(l) = group.leader() {
            return Some(l);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(LEADER_POLL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_term_never_resets_the_count_of_a_newer_one() {
        let u = Arc::new(parking_lot::Mutex::new(Undecided::default()));
        let newer = Undecided::add(&u, 5);
        let older = Undecided::add(&u, 4);
        let state = |u: &Arc<parking_lot::Mutex<Undecided>>| {
            let g = u.lock();
            (g.term, g.count)
        };
        assert_eq!(state(&u), (5, 1), "a proposal of term 4 is not counted in term 5");
        drop(older);
        assert_eq!(u.lock().count, 1, "nor does it settle one of term 5");
        drop(newer);
        assert_eq!(u.lock().count, 0);
        let _next = Undecided::add(&u, 6);
        assert_eq!(state(&u), (6, 1));
    }
}
