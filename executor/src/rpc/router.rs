//! Sends a [`ShardRequest`] to the leader of its group from any node:
//! locally when this node leads it, otherwise forwarded over the node's
//! transport, following `NotLeader` hints until a leader answers. Callers
//! outside this module use the typed methods of `client.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ordo_expr::{ExecError, ExecResult};
use ordo_meta::placement::Placement;
use ordo_raft::{Consensus, ForwardError, GroupId, Transport};

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

pub struct Router {
    node_id: u64,
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
        Router { node_id, transport, local, groups, placement, frontier, marker }
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
    /// are retried against the next candidate until a leader answers.
    pub(super) async fn call(&self, gid: GroupId, req: &ShardRequest) -> ExecResult<ShardResponse> {
        self.call_with(gid, req, true).await
    }

    /// Like [`Router::call`] for requests that must not run twice: only an
    /// explicit `NotLeader` answer is retried. A call that failed in transit
    /// may or may not have run, and is reported as such.
    pub(super) async fn call_once(&self, gid: GroupId, req: &ShardRequest) -> ExecResult<ShardResponse> {
        self.call_with(gid, req, false).await
    }

    async fn call_with(&self, gid: GroupId, req: &ShardRequest, idempotent: bool) -> ExecResult<ShardResponse> {
        if req.needs_fence() {
            let fenced = ShardRequest::Fenced { after_epoch: self.frontier().await?, req: Box::new(req.clone()) };
            return self.send(gid, &fenced, idempotent).await;
        }
        self.send(gid, req, idempotent).await
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

    /// Sends `req` as it is (no fence) to `gid`'s leader; `idempotent`:
    /// a call that failed in transit may be sent again.
    pub(super) async fn send(&self, gid: GroupId, req: &ShardRequest, idempotent: bool) -> ExecResult<ShardResponse> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(LEADER_SEARCH_MS);
        let replicas = self.placement.replicas(gid);
        let mut target = self.guess_leader(gid);
        let mut attempt: u32 = 0;
        let mut last_problem = String::from("no leader elected yet");
        loop {
            let resp = if target == self.node_id {
                self.local.handle(gid, req.clone()).await
            } else {
                match self.transport.peer(target) {
                    Some(peer) => {
                        match peer.forward(gid, encode(req), Duration::from_millis(FORWARD_TIMEOUT_MS)).await {
                            Ok(bytes) => decode::<ShardResponse>(&bytes)?,
                            Err(ForwardError::Failed(e)) if !idempotent => {
                                return Err(ExecError::Unavailable(format!(
                                    "lost contact with node {target} during the request; it may or may not have taken effect: {e}"
                                )))
                            }
                            Err(e) => {
                                last_problem = e.to_string();
                                ShardResponse::NotLeader { leader: None }
                            }
                        }
                    }
                    None => ShardResponse::NotLeader { leader: None },
                }
            };
            match resp {
                ShardResponse::NotLeader { leader } => {
                    target = match leader {
                        Some(l) if l != target => l,
                        _ => {
                            // Unknown or self-referential hint: try the next replica.
                            let pos = replicas.iter().position(|&r| r == target).unwrap_or(0);
                            replicas[(pos + 1) % replicas.len()]
                        }
                    };
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ExecError::Unavailable(format!(
                            "group {gid} has no reachable leader: {last_problem}"
                        )));
                    }
                    attempt += 1;
                    let backoff = (LEADER_RETRY_BACKOFF_MS_MIN << attempt.min(6)).min(LEADER_RETRY_BACKOFF_MS_MAX);
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
                ShardResponse::Error(e) => return Err(e),
                other => return Ok(other),
            }
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
