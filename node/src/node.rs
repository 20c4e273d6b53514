//! `ordo start`: one node — its RocksDB, its replicas of every group it
//! hosts, the gRPC server for peers and the HTTP API for clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordo_executor::epochs::{EpochSource, LocalEpochs};
use ordo_executor::leader::LeaderExecutor;
use ordo_executor::router::Router;
use ordo_meta::logic::MetaLogic;
use ordo_meta::placement::Placement;
use ordo_sequencer::{EpochLog, Sealer, SealerConfig, SequencerLogic};
use ordo_sql::SqlEngine;
use ordo_vshard::engine::Engine;
use ordo_vshard::raft::{Consensus, GroupConfig, GroupLogic, RaftGroup, Transport};
use ordo_vshard::routing::{META_GROUP, SEQUENCER_GROUP};
use ordo_vshard::shard::{ShardLogic, ShardReader};
use ordo_vshard::GroupId;

use crate::cli::StartArgs;

/// Everything the HTTP handlers need.
pub struct NodeState {
    pub node_id: u64,
    pub placement: Placement,
    pub groups: BTreeMap<GroupId, Arc<dyn Consensus>>,
    pub sql: SqlEngine,
    pub router: Arc<Router>,
    pub sql_slots: tokio::sync::Semaphore,
    pub engine: Arc<Engine>,
    /// The last epoch this node's sequencer replica applied, if it has one.
    pub epochs: Option<tokio::sync::watch::Receiver<u64>>,
    /// What this node's row version collector did.
    pub versions: Arc<ordo_executor::versions::VersionStats>,
}

/// How often a node without a meta replica refreshes its catalog copy.
const CATALOG_REFRESH_MS: u64 = 1_000;
/// SQL requests one node runs at once; more get a retryable 53300.
const SQL_REQUESTS_INFLIGHT_MAX: usize = 512;

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ordo").build()?;
    rt.block_on(serve(args))
}

async fn serve(args: StartArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.peers.contains_key(&args.id), "--id {} is not in --peers", args.id);
    anyhow::ensure!(args.vshards >= 1 && args.vshards <= 4096, "--vshards must be between 1 and 4096");
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let engine = Engine::open(&args.data_dir.join("db")).context("opening RocksDB")?;
    let placement = Placement { nodes: args.peers.clone(), vshards: args.vshards, replication: args.replication };
    let transport = Transport::new(args.id, &args.peers).map_err(anyhow::Error::msg)?;
    let meta = Arc::new(MetaLogic::default());
    let config = GroupConfig { heartbeat_ms: args.heartbeat_ms, snapshot_logs: args.snapshot_logs };

    let sequencer = Arc::new(SequencerLogic::default());
    let mut groups: BTreeMap<GroupId, Arc<dyn Consensus>> = BTreeMap::new();
    for gid in placement.groups() {
        if !placement.replicas(gid).contains(&args.id) {
            continue;
        }
        let logic: Arc<dyn GroupLogic> = match gid {
            META_GROUP => meta.clone(),
            SEQUENCER_GROUP => sequencer.clone(),
            _ => Arc::new(ShardLogic::default()),
        };
        let bootstrap = placement.preferred_leader(gid) == args.id;
        let group = RaftGroup::open(
            gid,
            args.id,
            &placement.members(gid),
            bootstrap,
            engine.clone(),
            logic,
            transport.clone(),
            &config,
        )
        .await
        .map_err(|e| anyhow::anyhow!("opening group {gid}: {e}"))?;
        groups.insert(gid, group);
    }

    let sealer = groups.get(&SEQUENCER_GROUP).map(|g| Sealer::start(g.clone(), SealerConfig::default()));
    let local_epochs = groups
        .contains_key(&SEQUENCER_GROUP)
        .then(|| LocalEpochs { log: EpochLog::new(SEQUENCER_GROUP, engine.clone()), applied: sequencer.subscribe() });
    let executor =
        Arc::new(LeaderExecutor::new(groups.clone(), ShardReader::new(engine.clone()), args.vshards, sealer, local_epochs.clone()));
    let router = Arc::new(Router::new(args.id, transport.clone(), executor.clone(), placement.clone()));
    executor.set_router(&router);
    // Without a sequencer replica here, schedulers read epochs from the
    // sequencer's leader.
    let source = local_epochs.clone().map_or(EpochSource::Remote, EpochSource::Local);
    ordo_executor::sequenced::spawn_schedulers(router.clone(), source);
    if args.collect_lag_ms <= ordo_sql::txn::OUTCOME_WAIT_MS {
        tracing::warn!(
            "--collect-lag-ms {} is not above the {} ms a gateway waits for an outcome: a slow transaction's result may be dropped before its client hears of it",
            args.collect_lag_ms,
            ordo_sql::txn::OUTCOME_WAIT_MS
        );
    }
    ordo_executor::collect::spawn_collector(
        router.clone(),
        ordo_executor::collect::CollectConfig { every_ms: args.collect_every_ms, lag_ms: args.collect_lag_ms },
    );
    if args.versions_keep_ms <= ordo_sql::engine::QUERY_TIMEOUT_MS {
        tracing::warn!(
            "--versions-keep-ms {} is not above the {} ms a query may run: a long query may find the versions it reads dropped (40001)",
            args.versions_keep_ms,
            ordo_sql::engine::QUERY_TIMEOUT_MS
        );
    }
    let versions = ordo_executor::versions::spawn_version_collector(
        router.clone(),
        ordo_executor::versions::VersionsConfig { every_ms: args.collect_every_ms, keep_ms: args.versions_keep_ms },
    );
    let sql = SqlEngine::new(router.clone(), meta, args.vshards).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !groups.contains_key(&META_GROUP) {
        sql.follow_catalog(Duration::from_millis(CATALOG_REFRESH_MS));
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = {
        let svc = crate::grpc::NodeService { groups: groups.clone(), executor };
        let server = ordo_proto::NodeServer::new(svc)
            .max_decoding_message_size(ordo_vshard::raft::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(ordo_vshard::raft::GRPC_MESSAGE_BYTES_MAX);
        let mut stop = stop_rx.clone();
        let listener = tokio::net::TcpListener::bind(args.rpc).await.with_context(|| format!("binding --rpc {}", args.rpc))?;
        tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(server)
                .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
                    let _ = stop.changed().await;
                }),
        )
    };
    spawn_heartbeats(groups.values().cloned().collect(), Duration::from_millis(args.heartbeat_ms.max(10)));
    spawn_rebalancer(args.id, placement.clone(), groups.values().cloned().collect());

    let state = Arc::new(NodeState {
        node_id: args.id,
        placement,
        groups: groups.clone(),
        sql,
        router,
        sql_slots: tokio::sync::Semaphore::new(SQL_REQUESTS_INFLIGHT_MAX),
        engine: engine.clone(),
        epochs: local_epochs.map(|l| l.applied),
        versions,
    });
    let listener = tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding --http {}", args.http))?;
    tracing::info!(node = args.id, http = %args.http, rpc = %args.rpc, groups = groups.len(), "node started");
    let app = crate::http::router(state, args.http_body_bytes_max);
    let mut stop = stop_rx.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
    });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!(node = args.id, "shutting down");
    let _ = stop_tx.send(true);
    for g in groups.values() {
        g.shutdown().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), grpc).await;
    engine.sync().await.ok();
    tracing::info!(node = args.id, "stopped");
    // Everything acknowledged is in the synced WAL. Leave without running
    // C++ static destructors: RocksDB's background threads and the WAL
    // syncer still hold the DB, and tearing it down under them aborts.
    // SAFETY: _exit ends the process immediately; nothing runs after it.
    unsafe { libc::_exit(0) }
}

/// How often a node hands groups it leads back to their preferred leader.
const REBALANCE_EVERY_MS: u64 = 3_000;
/// Most leadership transfers one node starts per round, so a returning node
/// takes its share back gradually.
const REBALANCE_TRANSFERS_PER_ROUND_MAX: usize = 8;

/// Leaders move where elections put them; after a node comes back this
/// hands each group this node leads back to its preferred leader (see
/// `Placement`) once that replica has the whole log, so leadership — and
/// with it the write load — spreads evenly again.
fn spawn_rebalancer(node_id: u64, placement: Placement, groups: Vec<Arc<dyn Consensus>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(REBALANCE_EVERY_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut started = 0;
            for g in &groups {
                let preferred = placement.preferred_leader(g.group_id());
                if preferred == node_id || !g.is_leader() {
                    continue;
                }
                let s = g.status();
                let caught_up = matches!(s.matched.get(&preferred), Some(Some(m)) if Some(*m) == s.last_log_index);
                if caught_up {
                    g.transfer_leader(preferred).await;
                    started += 1;
                    if started >= REBALANCE_TRANSFERS_PER_ROUND_MAX {
                        break;
                    }
                }
            }
        }
    });
}

/// One ticker for the whole node: every interval it asks each group this
/// node leads to heartbeat, so all of them go out together and the
/// transport carries them to each peer in one message.
fn spawn_heartbeats(groups: Vec<Arc<dyn Consensus>>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for g in &groups {
                g.heartbeat().await;
            }
        }
    });
}
