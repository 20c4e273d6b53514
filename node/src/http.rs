//! The HTTP API: `POST /v1/sql`, `GET /v1/cluster`, `GET /health`, and
//! admin endpoints (`POST /v1/admin/verify`, `GET /v1/admin/transactions`;
//! `GET /v1/admin/status`, `POST /v1/admin/leadership` and `GET /metrics`
//! live in `admin`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use ordo_expr::ExecError;
use ordo_expr::Param;
use ordo_raft::groups::{group_kind, group_vshard, META_GROUP, SEQUENCER_GROUP};
use serde::Deserialize;
use serde_json::json;

use crate::listen::HttpLimits;
use crate::reply::{error, exec_error};
use crate::state::NodeState;

pub fn router(state: Arc<NodeState>, limits: HttpLimits) -> axum::Router {
    let sql_route = move |State(state): State<Arc<NodeState>>, body: Body| sql(state, body, limits);
    axum::Router::new()
        // Admitted before its body is read: the bound covers the bytes a
        // request holds too, not only the statements it runs.
        .route("/v1/sql", post(sql_route).layer(axum::middleware::from_fn_with_state(state.clone(), admit)))
        .route("/v1/cluster", get(cluster))
        .route("/health", get(health))
        .route("/v1/admin/verify", post(verify))
        .route("/v1/admin/transactions", get(transactions))
        .route("/v1/admin/status", get(crate::admin::status))
        .route("/v1/admin/leadership", post(crate::admin::leadership))
        .route("/metrics", get(crate::admin::metrics))
        .layer(DefaultBodyLimit::max(limits.body_bytes_max))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<serde_json::Value>,
}

/// Whether reading a body failed on its size bound (axum reports it as a
/// `LengthLimitError` somewhere in the error's sources).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Takes one of the node's SQL slots for the whole request (body included),
/// or answers 53300 at once.
async fn admit(
    State(state): State<Arc<NodeState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_slot) = state.sql_slots.try_acquire() else {
        return exec_error(&ExecError::Overloaded("too many concurrent requests; retry".into()));
    };
    next.run(request).await
}

/// Reads the body (at most `body_bytes_max`, within the read timeout),
/// then runs its statements.
async fn sql(state: Arc<NodeState>, body: Body, limits: HttpLimits) -> Response {
    let read = axum::body::to_bytes(body, limits.body_bytes_max);
    let body = match tokio::time::timeout(Duration::from_millis(limits.read_timeout_ms), read).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) if is_length_limit(&e) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, "54000", "request body is too large")
        }
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "08P01", format!("reading the request body: {e}")),
        Err(_) => {
            let m = format!("the request body did not arrive within {} ms", limits.read_timeout_ms);
            return error(StatusCode::REQUEST_TIMEOUT, "08P01", m);
        }
    };
    let req: SqlRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "08P01", format!("malformed request JSON: {e}")),
    };
    let params: Vec<Param> = match req.params.iter().map(Param::from_json).collect() {
        Ok(p) => p,
        Err(e) => return exec_error(&e),
    };
    match state.sql.execute(&req.sql, &params).await {
        Ok(results) => Json(json!({ "results": results })).into_response(),
        Err(e) => exec_error(&e),
    }
}

async fn cluster(State(state): State<Arc<NodeState>>) -> Response {
    let nodes: Vec<_> = state
        .placement
        .nodes
        .iter()
        .map(|(id, addr)| json!({"id": id, "rpc": addr, "self": *id == state.node_id}))
        .collect();
    let groups: Vec<_> = state
        .groups
        .values()
        .map(|g| {
            let s = g.status();
            json!({
                "group_id": s.group_id,
                "kind": group_kind(s.group_id).as_str(),
                "vshard": group_vshard(s.group_id).filter(|_| s.group_id > SEQUENCER_GROUP),
                "replicas": state.placement.replicas(s.group_id),
                "state": s.state,
                "leader": s.leader,
                "term": s.term,
                "last_log_index": s.last_log_index,
                "commit_index": s.commit_index,
                "applied_index": s.applied_index,
                "snapshot_index": s.snapshot_index,
                "purged_index": s.purged_index,
            })
        })
        .collect();
    Json(json!({"node_id": state.node_id, "vshards": state.placement.vshards, "nodes": nodes, "groups": groups}))
        .into_response()
}

/// 200 once every group this node hosts has a leader and the catalog
/// replica is serving (so SQL can run); 503 with what is missing otherwise.
async fn health(State(state): State<Arc<NodeState>>) -> Response {
    let leaderless: Vec<u64> = state.groups.values().filter(|g| g.leader().is_none()).map(|g| g.group_id()).collect();
    let meta_ready = state.groups.get(&META_GROUP).is_none_or(|g| g.status().applied_index.is_some());
    if leaderless.is_empty() && meta_ready {
        Json(json!({"status": "ok", "node_id": state.node_id})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "node_id": state.node_id, "groups_without_leader": leaderless})),
        )
            .into_response()
    }
}

/// Compares content hashes of every replica of every group at a common log
/// position. 200 with `"consistent": true|false` and the per-group detail.
async fn verify(State(state): State<Arc<NodeState>>) -> Response {
    // Heavy (a checksum point and a full hash of every group): one at a
    // time per node, so it cannot be used to stall the node.
    let Ok(_busy) = state.verify_slot.try_acquire() else {
        return exec_error(&ExecError::Overloaded("a verification is already running on this node; retry".into()));
    };
    let verdict = ordo_executor::verify::verify_all(&state.router).await;
    Json(verdict).into_response()
}

/// Per vShard hosted here: its scheduler (leading term, next epoch,
/// watermark, unfinished positions), its lock table and its durable
/// sequenced progress. For operators chasing a stuck transaction.
async fn transactions(State(state): State<Arc<NodeState>>) -> Response {
    let local = &state.executor;
    let vshards: Vec<_> = (0..local.vshards())
        .filter_map(|v| {
            let gid = ordo_raft::groups::vshard_group(v);
            let group = local.group(gid)?;
            let durable = local.reader().sequenced_progress(gid).ok();
            Some(json!({
                "vshard": v,
                "leader": group.is_leader(),
                "scheduler": local.board().scheduler_stat(v),
                "locks": local.locks().table(v).stats(),
                "durable_watermark": durable.as_ref().map(|p| p.watermark),
                "durable_done_above_watermark": durable.as_ref().map(|p| p.done.len()),
                "outcomes_stored": local.reader().outcomes_stored(gid).ok(),
            }))
        })
        .collect();
    // This node's replica of the epoch log: what is kept of it.
    let epochs = state.groups.contains_key(&SEQUENCER_GROUP).then(|| {
        let log = ordo_sequencer::EpochLog::new(SEQUENCER_GROUP, state.engine.clone());
        json!({"first_retained": log.first_retained().ok(), "last_applied": state.epochs.as_ref().map(|e| *e.borrow())})
    });
    let recon = state.sql.recon_stats().to_json();
    let (skipped, waited) = local.read_skips();
    let reads = json!({"ordered_before_unapplied_writes": skipped, "waited_for_writes": waited});
    Json(json!({"node_id": state.node_id, "epochs": epochs, "reconnaissance": recon, "reads_meeting_cross_shard_writes": reads, "row_versions": state.versions.to_json(), "vshards": vshards}))
        .into_response()
}
