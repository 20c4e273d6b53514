//! The per-node transport: one gRPC connection (HTTP/2 channel) per peer node,
//! carrying the Raft messages of every group, coalesced into batches.
//!
//! Each peer has a bounded queue drained by one task. A round takes whatever
//! is queued (up to a count and byte bound) and sends it as one `Raft` call.
//! Heartbeats linger briefly so that the heartbeats the node-wide ticker
//! fires for all of its leader groups travel to each peer in one message.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use ordo_proto::{ForwardRequest, NodeClient, RaftBatch, RaftMsg};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tonic::transport::{Channel, Endpoint};

use crate::entry_codec::{decode, encode};
use crate::identity::{attach, is_wiped_refusal, Credentials};
use crate::keys::GroupId;
use crate::types::{RaftKind, Snapshot, SnapshotData, TypeConfig, Vote};

use crate::constants::{
    BATCH_BYTES_MAX, BATCH_MSGS_MAX, BATCH_TIMEOUT_MS, GRPC_MESSAGE_BYTES_MAX, HEARTBEAT_LINGER_MS,
    PEER_CONNECT_TIMEOUT_MS, PEER_INFLIGHT_MAX, PEER_KEEPALIVE_MS, PEER_QUEUE_MAX,
};

struct Outgoing {
    msg: RaftMsg,
    heartbeat: bool,
    reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

/// The first refusal of this node as a wiped incarnation by a peer (see
/// [`crate::identity`]), whatever call it came on: the node must stop.
/// A node starting on a new data directory asks its peers first, but a
/// peer that did not answer then (slow, or not up yet) refuses it later.
struct Refusal(watch::Sender<Option<String>>);

impl Refusal {
    fn record(&self, peer: u64, status: &tonic::Status) {
        if is_wiped_refusal(status) {
            self.0.send_if_modified(|first| {
                let new = first.is_none();
                first.get_or_insert_with(|| format!("node {peer} refuses this node: {}", status.message()));
                new
            });
        }
    }
}

/// The connection to one peer node.
pub struct PeerTransport {
    node_id: u64,
    addr: String,
    queue: mpsc::Sender<Outgoing>,
    client: NodeClient<Channel>,
    creds: Arc<Credentials>,
    refusal: Arc<Refusal>,
}

impl PeerTransport {
    fn new(
        node_id: u64,
        addr: String,
        creds: Arc<Credentials>,
        refusal: Arc<Refusal>,
    ) -> Result<Arc<PeerTransport>, String> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr}: {e}"))?
            .connect_timeout(Duration::from_millis(PEER_CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_millis(PEER_KEEPALIVE_MS))
            .connect_lazy();
        let client = NodeClient::new(channel)
            .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
        let (queue, rx) = mpsc::channel(PEER_QUEUE_MAX);
        tokio::spawn(run_sender(rx, client.clone(), creds.clone(), (node_id, refusal.clone())));
        Ok(Arc::new(PeerTransport { node_id, addr, queue, client, creds, refusal }))
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one Raft message of `gid` and waits for its reply.
    async fn call(
        &self,
        gid: GroupId,
        kind: RaftKind,
        payload: Vec<u8>,
        heartbeat: bool,
        ttl: Duration,
    ) -> Result<Vec<u8>, String> {
        let kind = match kind {
            RaftKind::Append => ordo_proto::RaftKind::Append,
            RaftKind::Vote => ordo_proto::RaftKind::Vote,
            RaftKind::Snapshot => ordo_proto::RaftKind::Snapshot,
            RaftKind::TransferLeader => ordo_proto::RaftKind::TransferLeader,
        };
        let (tx, rx) = oneshot::channel();
        let msg = RaftMsg { group_id: gid, kind: kind as i32, payload };
        self.queue.send(Outgoing { msg, heartbeat, reply: tx }).await.map_err(|_| "transport closed".to_string())?;
        match tokio::time::timeout(ttl, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("reply dropped".into()),
            Err(_) => Err(format!("timed out after {ttl:?}")),
        }
    }

    /// An empty batch through the peer's gate: `Err` with the peer's
    /// refusal if it does not admit this node (see [`crate::identity`]; a
    /// refusal as a wiped incarnation is also recorded for
    /// [`Transport::refused_as_wiped`]).
    pub async fn ping(&self) -> Result<(), tonic::Status> {
        let mut client = self.client.clone();
        let mut req = tonic::Request::new(RaftBatch { from_node: self.creds.node_id, msgs: Vec::new() });
        attach(&mut req, &self.creds);
        crate::identity::mark_probe(&mut req);
        let answer = client.raft(req).await.map(|_| ());
        if let Err(status) = &answer {
            self.refusal.record(self.node_id, status);
        }
        answer
    }

    /// Forwards an opaque client request for `gid` to this peer.
    pub async fn forward(&self, gid: GroupId, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ForwardError> {
        let mut client = self.client.clone();
        let mut req = tonic::Request::new(ForwardRequest { group_id: gid, payload });
        attach(&mut req, &self.creds);
        match tokio::time::timeout(timeout, client.forward(req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner().payload),
            // No connection could be made: the request never left.
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable && is_connect_error(&status) => {
                Err(ForwardError::Unreachable(format!("node {}: {}", self.node_id, status.message())))
            }
            Ok(Err(status)) => {
                self.refusal.record(self.node_id, &status);
                Err(ForwardError::Failed(format!("node {}: {}", self.node_id, status.message())))
            }
            Err(_) => Err(ForwardError::Failed(format!("node {} did not answer within {timeout:?}", self.node_id))),
        }
    }
}

/// Why a forwarded call has no answer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ForwardError {
    /// The peer could not be reached: the request was not delivered.
    #[error("{0}")]
    Unreachable(String),
    /// The call failed after it may have been delivered.
    #[error("{0}")]
    Failed(String),
}

fn is_connect_error(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound);
        }
        source = e.source();
    }
    let m = status.message();
    m.contains("tcp connect error") || m.contains("Connection refused")
}

async fn run_sender(
    mut rx: mpsc::Receiver<Outgoing>,
    client: NodeClient<Channel>,
    creds: Arc<Credentials>,
    (peer, refusal): (u64, Arc<Refusal>),
) {
    let inflight = Arc::new(Semaphore::new(PEER_INFLIGHT_MAX));
    while let Some(first) = rx.recv().await {
        let mut bytes = first.msg.payload.len();
        let linger = first.heartbeat;
        let mut batch = vec![first];
        if linger {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(HEARTBEAT_LINGER_MS);
            while batch.len() < BATCH_MSGS_MAX && bytes < BATCH_BYTES_MAX {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(m)) => {
                        bytes += m.msg.payload.len();
                        batch.push(m);
                    }
                    _ => break,
                }
            }
        }
        while batch.len() < BATCH_MSGS_MAX && bytes < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(m) => {
                    bytes += m.msg.payload.len();
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else { return };
        let mut client = client.clone();
        let (creds, refusal) = (creds.clone(), refusal.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (msgs, replies): (Vec<RaftMsg>, Vec<_>) = batch.into_iter().map(|o| (o.msg, o.reply)).unzip();
            let mut req = tonic::Request::new(RaftBatch { from_node: creds.node_id, msgs });
            attach(&mut req, &creds);
            let call = client.raft(req);
            match tokio::time::timeout(Duration::from_millis(BATCH_TIMEOUT_MS), call).await {
                Ok(Ok(resp)) => {
                    let resp = resp.into_inner();
                    if resp.replies.len() != replies.len() {
                        for r in replies {
                            let _ = r.send(Err("peer answered a different number of messages".into()));
                        }
                        return;
                    }
                    for (r, rep) in replies.into_iter().zip(resp.replies) {
                        let _ = r.send(if rep.error.is_empty() { Ok(rep.payload) } else { Err(rep.error) });
                    }
                }
                Ok(Err(status)) => {
                    refusal.record(peer, &status);
                    for r in replies {
                        let _ = r.send(Err(status.message().to_string()));
                    }
                }
                Err(_) => {
                    for r in replies {
                        let _ = r.send(Err("batch timed out".into()));
                    }
                }
            }
        });
    }
}

/// Every peer connection of this node.
pub struct Transport {
    self_id: u64,
    peers: BTreeMap<u64, Arc<PeerTransport>>,
    refusal: Arc<Refusal>,
}

impl Transport {
    /// Connects (lazily) to every node in `nodes` but this one, presenting
    /// `creds` (whose `node_id` is this node's) on every call.
    pub fn new(creds: Credentials, nodes: &BTreeMap<u64, String>) -> Result<Arc<Transport>, String> {
        let self_id = creds.node_id;
        let creds = Arc::new(creds);
        let refusal = Arc::new(Refusal(watch::Sender::new(None)));
        let mut peers = BTreeMap::new();
        for (&id, addr) in nodes {
            if id != self_id {
                peers.insert(id, PeerTransport::new(id, addr.clone(), creds.clone(), refusal.clone())?);
            }
        }
        Ok(Arc::new(Transport { self_id, peers, refusal }))
    }

    /// Resolves with the first peer's refusal of this node as a wiped
    /// incarnation (never, while none refuses it).
    pub async fn refused_as_wiped(&self) -> String {
        let mut rx = self.refusal.0.subscribe();
        let first = rx.wait_for(Option::is_some).await.map(|first| first.clone());
        match first {
            Ok(first) => first.unwrap_or_default(),
            // The sender lives as long as `self`.
            Err(_) => std::future::pending().await,
        }
    }

    pub fn self_id(&self) -> u64 {
        self.self_id
    }

    pub fn peer(&self, node_id: u64) -> Option<&Arc<PeerTransport>> {
        self.peers.get(&node_id)
    }
}

/// Creates the per-target connections of one group.
pub(super) struct GroupNetworkFactory {
    pub gid: GroupId,
    pub transport: Arc<Transport>,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupConn;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> GroupConn {
        GroupConn { gid: self.gid, target, peer: self.transport.peer(target).cloned() }
    }
}

pub(super) struct GroupConn {
    gid: GroupId,
    target: u64,
    peer: Option<Arc<PeerTransport>>,
}

fn unreachable(msg: String) -> Unreachable<TypeConfig> {
    Unreachable::new(&std::io::Error::other(msg))
}

impl GroupConn {
    async fn rpc<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: RaftKind,
        req: &Req,
        heartbeat: bool,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let peer = self
            .peer
            .as_ref()
            .ok_or_else(|| RPCError::Unreachable(unreachable(format!("unknown node {}", self.target))))?;
        let bytes = peer
            .call(self.gid, kind, encode(req), heartbeat, ttl)
            .await
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let resp: Result<Resp, String> = decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        resp.map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))
    }
}

impl RaftNetworkV2<TypeConfig> for GroupConn {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let heartbeat = rpc.entries.is_empty();
        self.rpc(RaftKind::Append, &rpc, heartbeat, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.rpc(RaftKind::Vote, &rpc, false, option.hard_ttl()).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        // The target answers only whether it took the request; a refusal
        // simply leaves leadership where it is.
        self.rpc::<_, ()>(RaftKind::TransferLeader, &req, false, option.hard_ttl()).await.map(Ok)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let req = (vote, snapshot.meta, snapshot.snapshot.into_inner());
        let send = self.rpc::<_, SnapshotResponse<TypeConfig>>(
            RaftKind::Snapshot,
            &req,
            false,
            Duration::from_millis(BATCH_TIMEOUT_MS),
        );
        tokio::pin!(cancel);
        tokio::select! {
            closed = &mut cancel => Err(StreamingError::Closed(closed)),
            r = send => r.map_err(StreamingError::from),
        }
    }
}
