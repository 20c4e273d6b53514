//! What a running node holds that its HTTP handlers read.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_executor::gc::versions::VersionStats;
use ordo_executor::{LeaderExecutor, Router};
use ordo_meta::placement::Placement;
use ordo_raft::engine::Engine;
use ordo_raft::{Consensus, GroupId};
use ordo_sql::SqlEngine;

/// Everything the HTTP handlers need.
pub struct NodeState {
    pub node_id: u64,
    pub placement: Placement,
    pub groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
    pub sql: SqlEngine,
    pub router: Arc<Router>,
    /// This node's server of the groups it leads.
    pub executor: Arc<LeaderExecutor>,
    pub sql_slots: tokio::sync::Semaphore,
    /// One `verify` at a time (see `http::verify`).
    pub verify_slot: tokio::sync::Semaphore,
    /// One cluster status at a time (see `admin::status`).
    pub status_slot: tokio::sync::Semaphore,
    /// The catalog this node holds (a replica's, or one it follows).
    pub meta: Arc<ordo_meta::logic::MetaLogic>,
    pub engine: Arc<Engine>,
    /// The last epoch this node's sequencer replica applied, if it has one.
    pub epochs: Option<tokio::sync::watch::Receiver<u64>>,
    /// What this node's row version collector did.
    pub versions: Arc<VersionStats>,
    /// The node's metrics registry (`GET /metrics`).
    pub metrics: crate::metrics::NodeMetrics,
}
