//! Operators' HTTP endpoints: the cluster's state as every group's leader
//! sees it (`GET /v1/admin/status`), where leaders should be
//! (`POST /v1/admin/leadership`), and the metrics (`GET /metrics`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use ordo_expr::ExecError;
use ordo_meta::command::{MetaCommand, MetaResult};
use ordo_meta::leadership::LeadershipChange;
use ordo_raft::groups::{group_kind, group_vshard, SEQUENCER_GROUP};
use ordo_raft::GroupId;
use serde::Deserialize;
use serde_json::json;

use crate::constants::{STATUS_CALLS_INFLIGHT_MAX, STATUS_CALL_TIMEOUT_MS, STATUS_DEADLINE_MS};
use crate::reply::{error, exec_error};
use crate::state::NodeState;

/// The node's metrics in Prometheus' text format.
pub async fn metrics(State(state): State<Arc<NodeState>>) -> Response {
    let scraped = crate::metrics::Scraped {
        node_id: state.node_id,
        groups: &state.groups,
        engine: &state.engine,
        executor: &state.executor,
    };
    match state.metrics.render(scraped).await {
        Ok(text) => ([(header::CONTENT_TYPE, ordo_metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "XX000", format!("encoding metrics: {e}")),
    }
}

/// Every group of the cluster as its leader sees it: leader, term, commit
/// and applied index, and how many entries each follower lacks; plus the
/// operators' leadership choices and the leader each group should have.
/// A group whose leader does not answer within a few seconds is listed
/// with its error.
pub async fn status(State(state): State<Arc<NodeState>>) -> Response {
    // Asks every group's leader: one at a time per node.
    let Ok(_busy) = state.status_slot.try_acquire() else {
        return exec_error(&ExecError::Overloaded("a status is already being gathered on this node; retry".into()));
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(STATUS_DEADLINE_MS);
    // The operators' choices as of now (a change acknowledged by any node
    // is in), or, if the meta group does not answer in time, as this node
    // last saw them, said so: a broken cluster's status matters most.
    let by = deadline.min(tokio::time::Instant::now() + Duration::from_millis(STATUS_CALL_TIMEOUT_MS));
    let catalog_error = match tokio::time::timeout_at(by, state.sql.catch_up_catalog()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("the catalog may be stale: {e}")),
        Err(_) => Some("the catalog may be stale: the meta group did not answer in time".to_string()),
    };
    let leadership = state.meta.catalog().leadership.clone();
    // Each group's leader gets a few seconds, the whole status a bound:
    // groups not asked by then are listed as such.
    let asks = state.placement.groups().into_iter().map(|gid| {
        let router = state.router.clone();
        async move {
            let by = deadline.min(tokio::time::Instant::now() + Duration::from_millis(STATUS_CALL_TIMEOUT_MS));
            let answer = tokio::time::timeout_at(by, router.group_status(gid)).await;
            (gid, answer)
        }
    });
    let answers: Vec<_> = futures::stream::iter(asks).buffered(STATUS_CALLS_INFLIGHT_MAX).collect().await;
    let groups: Vec<_> = answers
        .into_iter()
        .map(|(gid, answer)| {
            let mut g = json!({
                "group_id": gid,
                "kind": group_kind(gid).as_str(),
                "vshard": group_vshard(gid).filter(|_| gid > SEQUENCER_GROUP),
                "replicas": state.placement.replicas(gid),
                "target_leader": leadership.target(&state.placement, gid),
            });
            match answer {
                Ok(Ok(s)) => {
                    let last = s.last_log_index.unwrap_or(0);
                    // `null`: the leader does not know that follower's progress yet.
                    let lag: serde_json::Map<String, serde_json::Value> = s
                        .matched
                        .iter()
                        .map(|(n, m)| (n.to_string(), json!(m.map(|m| last.saturating_sub(m)))))
                        .collect();
                    g["leader"] = json!(s.leader);
                    g["term"] = json!(s.term);
                    g["last_log_index"] = json!(s.last_log_index);
                    g["commit_index"] = json!(s.commit_index);
                    g["applied_index"] = json!(s.applied_index);
                    g["lag"] = json!(lag);
                }
                Ok(Err(e)) => g["error"] = json!(e.to_string()),
                Err(_) => g["error"] = json!("no answer in time"),
            }
            g
        })
        .collect();
    let nodes: Vec<_> = state.placement.nodes.iter().map(|(id, addr)| json!({"id": id, "rpc": addr})).collect();
    Json(json!({
        "node_id": state.node_id,
        "nodes": nodes,
        "drained": leadership.drained,
        "pinned": leadership.pinned,
        "catalog_error": catalog_error,
        "groups": groups,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "change")]
enum LeadershipRequest {
    /// Move every leader off `node` and keep them off (before maintenance).
    Drain { node: u64 },
    /// Let `node` lead again.
    Undrain { node: u64 },
    /// Move `group`'s leader to `node` and keep it there.
    Pin { group: GroupId, node: u64 },
    /// Let `group`'s leader go back to its preferred node.
    Unpin { group: GroupId },
}

/// Changes where leaders should be; the rebalancers move them within a few
/// seconds (`GET /v1/admin/status` shows each group's leader and target).
pub async fn leadership(State(state): State<Arc<NodeState>>, body: axum::body::Bytes) -> Response {
    let req: LeadershipRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "22023", format!("malformed leadership change: {e}")),
    };
    let change = match validate(&state, req) {
        Ok(c) => c,
        Err(m) => return error(StatusCode::BAD_REQUEST, "22023", m),
    };
    match state.router.meta(MetaCommand::Leadership(change)).await {
        Ok(MetaResult::Leadership(l)) => Json(json!({"drained": l.drained, "pinned": l.pinned})).into_response(),
        Ok(other) => exec_error(&ExecError::Internal(format!("unexpected catalog answer: {other:?}"))),
        Err(e) => exec_error(&e),
    }
}

/// The change `req` asks for, if its node and group exist.
fn validate(state: &NodeState, req: LeadershipRequest) -> Result<LeadershipChange, String> {
    let node_ok = |n: u64| {
        if state.placement.nodes.contains_key(&n) {
            Ok(())
        } else {
            Err(format!("no node {n} in this cluster"))
        }
    };
    let group_ok = |g: GroupId| {
        if state.placement.groups().contains(&g) {
            Ok(())
        } else {
            Err(format!("no group {g} in this cluster"))
        }
    };
    Ok(match req {
        LeadershipRequest::Drain { node } => node_ok(node).map(|()| LeadershipChange::Drain { node })?,
        LeadershipRequest::Undrain { node } => node_ok(node).map(|()| LeadershipChange::Undrain { node })?,
        LeadershipRequest::Pin { group, node } => {
            group_ok(group)?;
            node_ok(node)?;
            if !state.placement.replicas(group).contains(&node) {
                return Err(format!("node {node} holds no replica of group {group}"));
            }
            if state.meta.catalog().leadership.drained.contains(&node) {
                return Err(format!("node {node} is drained (ordo admin step-up --node {node} first)"));
            }
            LeadershipChange::Pin { group, node }
        }
        LeadershipRequest::Unpin { group } => group_ok(group).map(|()| LeadershipChange::Unpin { group })?,
    })
}
