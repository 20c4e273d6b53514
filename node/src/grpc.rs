//! The node-to-node gRPC service: coalesced Raft messages in, forwarded
//! client requests in.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_executor::rpc::ShardResponse;
use ordo_executor::{decode, encode, LeaderExecutor};
use ordo_proto::{ForwardReply, ForwardRequest, RaftBatch, RaftBatchReply, RaftReply};
use ordo_raft::GroupId;
use ordo_raft::{Consensus, RaftKind};
use tonic::{Request, Response, Status};

pub struct NodeService {
    pub groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
    pub executor: Arc<LeaderExecutor>,
    /// Admits calls from this cluster's nodes only (`ordo_raft::identity`).
    pub gate: Arc<ordo_raft::identity::Gate>,
}

#[tonic::async_trait]
impl ordo_proto::Node for NodeService {
    async fn raft(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchReply>, Status> {
        self.gate.admit(request.metadata())?;
        let batch = request.into_inner();
        // Messages of one group keep their order; groups proceed in parallel.
        let mut by_group: BTreeMap<GroupId, Vec<usize>> = BTreeMap::new();
        for (i, m) in batch.msgs.iter().enumerate() {
            by_group.entry(m.group_id).or_default().push(i);
        }
        let msgs = &batch.msgs;
        let per_group = by_group.into_iter().map(|(gid, idxs)| async move {
            let mut out = Vec::with_capacity(idxs.len());
            for i in idxs {
                let m = &msgs[i];
                let reply = match (self.groups.get(&gid), kind(m.kind)) {
                    (Some(g), Some(k)) => match g.handle_message(k, &m.payload).await {
                        Ok(payload) => RaftReply { payload, error: String::new() },
                        Err(error) => RaftReply { payload: Vec::new(), error },
                    },
                    (None, _) => RaftReply { payload: Vec::new(), error: format!("group {gid} is not hosted here") },
                    (_, None) => RaftReply { payload: Vec::new(), error: format!("unknown message kind {}", m.kind) },
                };
                out.push((i, reply));
            }
            out
        });
        let mut replies: Vec<Option<RaftReply>> = vec![None; msgs.len()];
        for group_out in futures::future::join_all(per_group).await {
            for (i, r) in group_out {
                replies[i] = Some(r);
            }
        }
        Ok(Response::new(RaftBatchReply {
            replies: replies.into_iter().map(|r| r.expect("every message answered")).collect(),
        }))
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        self.gate.admit(request.metadata())?;
        let req = request.into_inner();
        let request = match decode(&req.payload) {
            Ok(r) => r,
            Err(e) => return Ok(Response::new(ForwardReply { payload: encode(&ShardResponse::Error(e)) })),
        };
        let handling = self.executor.handle(req.group_id, request);
        // Fault injection: `FAILPOINTS=forward-cancel=25%return(5)` drops
        // the handling after 5 ms wherever it is (waiting for locks, mid
        // proposal), as a broken connection cancels it; the caller cannot
        // tell whether it was applied.
        let resp = match fail::eval("forward-cancel", |ms| ms.and_then(|m| m.parse::<u64>().ok()).unwrap_or(0)) {
            Some(ms) => match tokio::time::timeout(std::time::Duration::from_millis(ms), handling).await {
                Ok(resp) => resp,
                Err(_) => return Err(Status::cancelled("handling cancelled (failpoint forward-cancel)")),
            },
            None => handling.await,
        };
        // Fault injection: the request ran, its reply is lost on the way
        // back (as when the connection breaks): the caller cannot tell
        // whether it was applied.
        fail::fail_point!("forward-reply-lost", |_| Err(Status::aborted("reply lost (failpoint forward-reply-lost)")));
        Ok(Response::new(ForwardReply { payload: encode(&resp) }))
    }
}

fn kind(k: i32) -> Option<RaftKind> {
    match ordo_proto::RaftKind::try_from(k).ok()? {
        ordo_proto::RaftKind::Append => Some(RaftKind::Append),
        ordo_proto::RaftKind::Vote => Some(RaftKind::Vote),
        ordo_proto::RaftKind::Snapshot => Some(RaftKind::Snapshot),
        ordo_proto::RaftKind::TransferLeader => Some(RaftKind::TransferLeader),
        ordo_proto::RaftKind::Unspecified => None,
    }
}
