//! Sends a [`ShardRequest`] to the leader of its group from any node:
//! locally when this node leads it, otherwise forwarded over the node's
//! transport, following `NotLeader` hints until a leader answers. Callers
//! outside this module use the typed methods of `client.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ordo_expr::{ExecError, ExecResult};
use ordo_meta::placement::Placement;
use ordo_raft::{Consensus, ForwardError, GroupId, RequestId, Transport};

use crate::codec::{decode, encode};
use crate::constants::{
    FORWARD_TIMEOUT_MS, LEADER_RETRY_BACKOFF_MS_MAX, LEADER_RETRY_BACKOFF_MS_MIN, LEADER_SEARCH_MS,
};
use crate::rpc::frontier::EpochFrontier;
use crate::rpc::request::{ShardRequest, ShardResponse};

/// This node's server of requests for the groups it leads: what a request
/// addressed to this node runs on (the same handler peers reach over gRPC).
#[async_trait::async_trait]
pub trait LocalServer: Send + Sync {
    async fn handle(&self, gid: GroupId, req: ShardRequest) -> ShardResponse;
}

/// What one attempt of a request came to.
enum Attempt {
    Answer(ShardResponse),
    /// Not delivered: it did not run.
    Undelivered(String),
    /// Failed after it may have been delivered: it may have run.
    Lost(String),
}

/// Whether `req` (maybe inside [`ShardRequest::Once`]) must be fenced.
fn req_needs_fence(req: &ShardRequest) -> bool {
    match req {
        ShardRequest::Once { req, .. } => req.needs_fence(),
        req => req.needs_fence(),
    }
}

pub struct Router {
    node_id: u64,
    /// This start of the node: request ids of an earlier start differ.
    session: u64,
    request_seq: AtomicU64,
    transport: Arc<Transport>,
    local: Arc<dyn LocalServer>,
    /// This node's replicas, for leader hints and local catch-up.
    groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
    placement: Placement,
    frontier: EpochFrontier,
    /// Shares [`Router::fresh_epoch`]'s marker inputs among concurrent callers.
    marker: EpochFrontier,
}

impl Router {
    pub fn new(
        node_id: u64,
        transport: Arc<Transport>,
        local: Arc<dyn LocalServer>,
        groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
        placement: Placement,
    ) -> Router {
        let (frontier, marker) = (EpochFrontier::default(), EpochFrontier::default());
        // Distinct per start of the node (ids must never repeat, and the
        // sequence restarts at 0): the start time in ns.
        let session =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let request_seq = AtomicU64::new(0);
        Router { node_id, session, request_seq, transport, local, groups, placement, frontier, marker }
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The number of vShards of the cluster.
    pub fn vshards(&self) -> u32 {
        self.placement.vshards
    }

    /// This node's replica of `gid`, if it hosts one.
    pub fn group(&self, gid: GroupId) -> Option<&Arc<dyn Consensus>> {
        self.groups.get(&gid)
    }

    fn guess_leader(&self, gid: GroupId) -> u64 {
        self.group(gid).and_then(|g| g.leader()).unwrap_or_else(|| self.placement.preferred_leader(gid))
    }

    /// Runs `req` on the leader of `gid`. `NotLeader` and unreachable nodes
    /// are retried against the next candidate until a leader answers. A
    /// write goes [`ShardRequest::Once`] under one id for all its attempts,
    /// so an attempt that may have been applied is retried safely: the
    /// group answers a repeat with the first answer.
    pub(super) async fn call(&self, gid: GroupId, req: &ShardRequest) -> ExecResult<ShardResponse> {
        let once;
        let req = if req.is_write() {
            once = ShardRequest::Once { id: self.next_request_id(), req: Box::new(req.clone()) };
            &once
        } else {
            req
        };
        if req_needs_fence(req) {
            let fenced = ShardRequest::Fenced { after_epoch: self.frontier().await?, req: Box::new(req.clone()) };
            return self.send(gid, &fenced).await;
        }
        self.send(gid, req).await
    }

    /// A new id for a client write sent from this node.
    fn next_request_id(&self) -> RequestId {
        let seq = self.request_seq.fetch_add(1, Ordering::Relaxed);
        // The clock is read here, outside any transaction's evaluation:
        // the group decides with the stamps in its log alone.
        let first_ms = ordo_raft::requests::stamp_now_ms();
        RequestId { node: self.node_id, session: self.session, seq, first_ms }
    }

    /// An epoch the sequencer committed after this call began: the epoch of
    /// an empty input (no participants: no scheduler takes it) sealed then.
    /// Concurrent callers share one, as they share frontier fetches.
    pub async fn fresh_epoch(&self) -> ExecResult<u64> {
        self.marker.get(|| async { Ok(self.sequence_marker().await?.epoch) }).await
    }

    /// The sequencer's committed frontier, from a fetch that started after
    /// this call (see [`crate::rpc::frontier`]).
    pub async fn frontier(&self) -> ExecResult<u64> {
        self.frontier.get(|| self.fetch_frontier()).await
    }

    /// Sends `req` as it is (no fence) to `gid`'s leader. A request with an
    /// id is retried after a failure that leaves its fate open (a lost
    /// reply, an outcome the leader could not tell); if no leader answers
    /// before the search ends, its outcome is unknown.
    pub(super) async fn send(&self, gid: GroupId, req: &ShardRequest) -> ExecResult<ShardResponse> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_SEARCH_MS);
        let replicas = self.placement.replicas(gid);
        let once = req.request_id().is_some();
        let mut target = self.guess_leader(gid);
        let mut attempt: u32 = 0;
        let mut last_problem = String::from("no leader elected yet");
        // Whether an attempt may have been applied.
        let mut maybe_applied = false;
        loop {
            let resp = self.attempt(target, gid, req).await;
            let leader = match resp {
                Attempt::Answer(ShardResponse::NotLeader { leader }) => leader,
                // Under an id the group can tell on a later attempt; without
                // one the request is idempotent (reads, markers), so sending
                // it again is harmless.
                Attempt::Answer(ShardResponse::Error(ExecError::OutcomeUnknown(m))) => {
                    maybe_applied |= once;
                    last_problem = m;
                    None
                }
                // This attempt did nothing, but an earlier one may have:
                // only an answer from a leader that can tell settles it.
                Attempt::Answer(ShardResponse::Error(e)) if maybe_applied && e.is_retryable() => {
                    last_problem = e.to_string();
                    None
                }
                Attempt::Answer(ShardResponse::Error(e)) => return Err(e),
                Attempt::Answer(other) => return Ok(other),
                Attempt::Undelivered(problem) => {
                    last_problem = problem;
                    None
                }
                Attempt::Lost(problem) => {
                    maybe_applied = true;
                    last_problem = problem;
                    None
                }
            };
            if tokio::time::Instant::now() >= deadline {
                let m = format!("group {gid} has no reachable leader: {last_problem}");
                return Err(if maybe_applied && once {
                    ExecError::OutcomeUnknown(format!("{m}; the request may or may not have been applied"))
                } else {
                    ExecError::Unavailable(m)
                });
            }
            target = match leader {
                Some(l) if l != target => l,
                // Unknown or self-referential hint: try the next replica.
                _ => {
                    let pos = replicas.iter().position(|&r| r == target).unwrap_or(0);
                    replicas[(pos + 1) % replicas.len()]
                }
            };
            attempt += 1;
            let backoff = (LEADER_RETRY_BACKOFF_MS_MIN << attempt.min(6)).min(LEADER_RETRY_BACKOFF_MS_MAX);
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
    }

    /// One attempt of `req` at node `target`.
    async fn attempt(&self, target: u64, gid: GroupId, req: &ShardRequest) -> Attempt {
        if target == self.node_id {
            return Attempt::Answer(self.local.handle(gid, req.clone()).await);
        }
        let Some(peer) = self.transport.peer(target) else {
            return Attempt::Undelivered(format!("unknown node {target}"));
        };
        match peer.forward(gid, encode(req), Duration::from_millis(FORWARD_TIMEOUT_MS)).await {
            Ok(bytes) => match decode::<ShardResponse>(&bytes) {
                Ok(resp) => Attempt::Answer(resp),
                Err(e) => Attempt::Answer(ShardResponse::Error(e)),
            },
            Err(ForwardError::Unreachable(e)) => Attempt::Undelivered(e),
            Err(ForwardError::Failed(e)) => Attempt::Lost(format!("lost contact with node {target}: {e}")),
        }
    }

    /// Runs `req` on node `node` itself (no leader search): for requests
    /// any replica serves.
    pub(super) async fn call_at(&self, node: u64, gid: GroupId, req: &ShardRequest) -> ExecResult<ShardResponse> {
        let resp = if node == self.node_id {
            self.local.handle(gid, req.clone()).await
        } else {
            let peer = self.transport.peer(node).ok_or_else(|| ExecError::Internal(format!("unknown node {node}")))?;
            let bytes = peer
                .forward(gid, encode(req), Duration::from_millis(FORWARD_TIMEOUT_MS))
                .await
                .map_err(|e| ExecError::Unavailable(e.to_string()))?;
            decode::<ShardResponse>(&bytes)?
        };
        match resp {
            ShardResponse::Error(e) => Err(e),
            other => Ok(other),
        }
    }
}
