//! `ordo start`: one node — its RocksDB, its replicas of every group it
//! hosts, the gRPC server for peers and the HTTP API for clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ordo_executor::constants::OUTCOME_WAIT_MS;
use ordo_executor::gc::outcomes::{spawn_collector, CollectConfig};
use ordo_executor::gc::versions::{spawn_version_collector, VersionsConfig};
use ordo_executor::{EpochSource, LeaderExecutor, LocalEpochs, Router};
use ordo_meta::logic::MetaLogic;
use ordo_meta::placement::Placement;
use ordo_metrics::RaftMetrics;
use ordo_raft::engine::Engine;
use ordo_raft::groups::{META_GROUP, SEQUENCER_GROUP};
use ordo_raft::{Consensus, GroupConfig, GroupHost, GroupId, GroupLogic, RaftGroup, Transport};
use ordo_sequencer::{EpochLog, Sealer, SealerConfig, SequencerLogic};
use ordo_sql::constants::QUERY_TIMEOUT_MS;
use ordo_sql::SqlEngine;
use ordo_vshard::shard::{ShardLogic, ShardReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::StartArgs;
use crate::constants::{
    CATALOG_REFRESH_MS, IDENTITY_PROBE_MS, IDENTITY_REPROBE_EVERY_MS, REBALANCE_EVERY_MS,
    REBALANCE_TRANSFERS_PER_ROUND_MAX, SHUTDOWN_GRACE_MS, SQL_REQUESTS_INFLIGHT_MAX, VSHARDS_MAX, WORKER_STACK_BYTES,
};
use crate::state::NodeState;
use ordo_raft::identity::{is_wiped_refusal, Gate, Identity};

type Groups = BTreeMap<GroupId, Arc<dyn Consensus>>;

pub fn run(args: StartArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ordo")
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()?;
    rt.block_on(serve(args))
}

async fn serve(args: StartArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.peers.contains_key(&args.id), "--id {} is not in --peers", args.id);
    anyhow::ensure!(args.vshards >= 1 && args.vshards <= VSHARDS_MAX, "--vshards must be between 1 and {VSHARDS_MAX}");
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let secret = args.secret()?;
    let had_db = args.data_dir.join("db").join("CURRENT").exists();
    let engine = Engine::open(&args.data_dir.join("db")).context("opening RocksDB")?;
    let (identity, transport) = identify(&args, &secret, had_db).await?;
    let gate = Gate::open(&args.data_dir, identity.credentials(&secret), args.peers.keys().copied().collect())
        .map_err(anyhow::Error::msg)?;
    let placement = Placement { nodes: args.peers.clone(), vshards: args.vshards, replication: args.replication };
    let meta = Arc::new(MetaLogic::default());
    let sequencer = Arc::new(SequencerLogic::default());
    let raft_metrics = RaftMetrics::default();
    let host = GroupHost {
        node_id: args.id,
        engine: engine.clone(),
        transport: transport.clone(),
        config: GroupConfig { heartbeat_ms: args.heartbeat_ms, snapshot_logs: args.snapshot_logs },
        metrics: raft_metrics.clone(),
    };
    let groups = open_groups(&host, &placement, &meta, &sequencer).await?;

    let sealer_config = SealerConfig::default();
    let sequencer_metrics = sealer_config.metrics.clone();
    let sealer = groups.get(&SEQUENCER_GROUP).map(|g| Sealer::start(g.clone(), sealer_config));
    let local_epochs = groups
        .contains_key(&SEQUENCER_GROUP)
        .then(|| LocalEpochs { log: EpochLog::new(SEQUENCER_GROUP, engine.clone()), applied: sequencer.subscribe() });
    let reader = ShardReader::new(engine.clone());
    let executor = Arc::new(LeaderExecutor::new(
        groups.clone(),
        reader,
        args.vshards,
        sealer,
        local_epochs.clone(),
        args.early_lock_release,
    ));
    let router = Arc::new(Router::new(args.id, transport.clone(), executor.clone(), groups.clone(), placement.clone()));
    executor.set_router(&router);
    let versions = spawn_background(&args, &router, &executor, local_epochs.clone());
    let limits = ordo_sql::QueryLimits {
        memory_bytes_max: args.query_memory_bytes_max,
        result_bytes_max: args.result_bytes_max,
    };
    let sql = SqlEngine::new(router.clone(), meta.clone(), args.vshards, limits).map_err(|e| anyhow::anyhow!("{e}"))?;
    if !groups.contains_key(&META_GROUP) {
        sql.follow_catalog(Duration::from_millis(CATALOG_REFRESH_MS));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = serve_grpc(&args, &groups, &executor, Arc::new(gate), stop_rx.clone()).await?;
    spawn_heartbeats(groups.values().cloned().collect(), Duration::from_millis(args.heartbeat_ms.max(10)));
    spawn_rebalancer(args.id, placement.clone(), groups.values().cloned().collect(), meta.clone());
    let metrics = crate::metrics::NodeMetrics::new(crate::metrics::Recorders {
        raft: &raft_metrics,
        sequencer: &sequencer_metrics,
        scheduler: executor.metrics(),
        sql: sql.metrics(),
        storage: engine.metrics(),
    });
    let state = Arc::new(NodeState {
        node_id: args.id,
        placement,
        groups: groups.clone(),
        sql,
        router,
        executor,
        sql_slots: tokio::sync::Semaphore::new(SQL_REQUESTS_INFLIGHT_MAX),
        verify_slot: tokio::sync::Semaphore::new(1),
        status_slot: tokio::sync::Semaphore::new(1),
        meta: meta.clone(),
        engine: engine.clone(),
        epochs: local_epochs.map(|l| l.applied),
        versions,
        metrics,
    });
    let http = serve_http(&args, state, stop_rx).await?;
    tracing::info!(node = args.id, http = %args.http, rpc = %args.rpc, groups = groups.len(), "node started");
    tokio::select! {
        signal = wait_for_signal() => signal?,
        refusal = transport.refused_as_wiped() => {
            // Its data directory is new (see `identify`): it must not go on
            // as its old self. Nothing of its own was acknowledged to anyone.
            let message = wiped(&refusal, &args.data_dir);
            tracing::error!("{message}");
            eprintln!("ordo: {message}");
            engine.sync().await.ok();
            // SAFETY: as at the end of `serve`.
            unsafe { libc::_exit(1) }
        }
    }
    tracing::info!(node = args.id, "shutting down");
    let _ = stop_tx.send(true);
    for g in groups.values() {
        g.shutdown().await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), http).await;
    let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), grpc).await;
    engine.sync().await.ok();
    tracing::info!(node = args.id, "stopped");
    // Everything acknowledged is in the synced WAL. Leave without running
    // C++ static destructors: RocksDB's background threads and the WAL
    // syncer still hold the DB, and tearing it down under them aborts.
    // SAFETY: _exit ends the process immediately; nothing runs after it.
    unsafe { libc::_exit(0) }
}

/// Opens this node's replica of every group placed on it; the preferred
/// leader of a group initialises it on a fresh cluster.
async fn open_groups(
    host: &GroupHost,
    placement: &Placement,
    meta: &Arc<MetaLogic>,
    sequencer: &Arc<SequencerLogic>,
) -> anyhow::Result<Groups> {
    let mut groups = Groups::new();
    for gid in placement.groups() {
        if !placement.replicas(gid).contains(&host.node_id) {
            continue;
        }
        let logic: Arc<dyn GroupLogic> = match gid {
            META_GROUP => meta.clone(),
            SEQUENCER_GROUP => sequencer.clone(),
            _ => Arc::new(ShardLogic::default()),
        };
        let bootstrap = placement.preferred_leader(gid) == host.node_id;
        let members = placement.members(gid);
        let group = RaftGroup::open(host, gid, &members, bootstrap, logic)
            .await
            .map_err(|e| anyhow::anyhow!("opening group {gid}: {e}"))?;
        groups.insert(gid, group);
    }
    Ok(groups)
}

/// Starts the schedulers and the collectors of outcomes and row versions;
/// returns the version collector's statistics.
fn spawn_background(
    args: &StartArgs,
    router: &Arc<Router>,
    executor: &Arc<LeaderExecutor>,
    local_epochs: Option<LocalEpochs>,
) -> Arc<ordo_executor::gc::versions::VersionStats> {
    // Without a sequencer replica here, schedulers read epochs from the
    // sequencer's leader.
    let source = local_epochs.map_or(EpochSource::Remote, EpochSource::Local);
    ordo_executor::spawn_schedulers(router.clone(), executor.clone(), source);
    if args.collect_lag_ms <= OUTCOME_WAIT_MS {
        tracing::warn!(
            "--collect-lag-ms {} is not above the {} ms a gateway waits for an outcome: a slow transaction's result may be dropped before its client hears of it",
            args.collect_lag_ms,
            OUTCOME_WAIT_MS
        );
    }
    spawn_collector(router.clone(), CollectConfig { every_ms: args.collect_every_ms, lag_ms: args.collect_lag_ms });
    if args.versions_keep_ms <= QUERY_TIMEOUT_MS {
        tracing::warn!(
            "--versions-keep-ms {} is not above the {} ms a query may run: a long query may find the versions it reads dropped (40001)",
            args.versions_keep_ms,
            QUERY_TIMEOUT_MS
        );
    }
    let versions_config = VersionsConfig { every_ms: args.collect_every_ms, keep_ms: args.versions_keep_ms };
    spawn_version_collector(router.clone(), executor.reader().clone(), versions_config)
}

/// This node's identity and its transport. A data directory without an
/// identity gets a new incarnation, and the node asks its peers whether
/// they knew it by another: then its data was lost (see
/// `ordo_raft::identity`) and it must not rejoin as itself. `had_db`: the
/// database existed before this start (an identity without one means the
/// database alone was lost).
async fn identify(args: &StartArgs, secret: &str, had_db: bool) -> anyhow::Result<(Identity, Arc<Transport>)> {
    let stored = Identity::load(&args.data_dir, &args.cluster_id, args.id).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        stored.is_none() || had_db,
        "{} has this node's identity but no database: its data was lost, and it must not rejoin as itself \
         (see README \"Replacing a node\")",
        args.data_dir.display()
    );
    let identity = stored.clone().unwrap_or_else(|| Identity::new(&args.cluster_id, args.id));
    let transport = Transport::new(identity.credentials(secret), &args.peers).map_err(anyhow::Error::msg)?;
    if stored.is_none() {
        // Stored first: a node stopped while probing comes back as the same
        // incarnation. Probes are not recorded by the peers.
        identity.store(&args.data_dir).map_err(anyhow::Error::msg)?;
        // Fault injection: `FAILPOINTS=identity-probe=return` skips the
        // probe, as when no peer answers it in time; the peers' refusals
        // stop the node later (`Transport::refused_as_wiped`).
        let skip = fail::eval("identity-probe", |_| ()).is_some();
        let probes: Vec<u64> = if skip { Vec::new() } else { args.peers.keys().copied().collect() };
        for &peer in probes.iter().filter(|&&p| p != args.id) {
            let Some(link) = transport.peer(peer) else { continue };
            let ping = tokio::time::timeout(Duration::from_millis(IDENTITY_PROBE_MS), link.ping()).await;
            if let Ok(Err(status)) = ping {
                if is_wiped_refusal(&status) {
                    anyhow::bail!(wiped(
                        &format!("node {peer} refuses this node: {}", status.message()),
                        &args.data_dir
                    ));
                }
            }
        }
    }
    spawn_identity_probes(transport.clone(), args.peers.keys().copied().filter(|&p| p != args.id).collect());
    Ok((identity, transport))
}

/// What a node refused as a wiped incarnation (`refusal`) tells its operator.
fn wiped(refusal: &str, data_dir: &std::path::Path) -> String {
    format!(
        "{refusal}. Its data directory {} is new; restore the old one, or see README \"Replacing a node\"",
        data_dir.display()
    )
}

/// Asks every peer, in the background, until each has answered once,
/// whether it admits this node: a peer that did not answer the start-up
/// probe in time (slow, not up yet) may know this node by an earlier
/// incarnation. Its refusal stops the node (`Transport::refused_as_wiped`),
/// even if the node, a follower everywhere, never calls that peer itself.
fn spawn_identity_probes(transport: Arc<Transport>, mut peers: Vec<u64>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(IDENTITY_REPROBE_EVERY_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !peers.is_empty() {
            tick.tick().await;
            let mut unanswered = Vec::new();
            for peer in peers {
                let Some(link) = transport.peer(peer) else { continue };
                match tokio::time::timeout(Duration::from_millis(IDENTITY_PROBE_MS), link.ping()).await {
                    Ok(Ok(())) => {}
                    // Refused by its gate: it answered (a wiped refusal is recorded).
                    Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {}
                    _ => unanswered.push(peer),
                }
            }
            peers = unanswered;
        }
    });
}

/// The gRPC server peers send Raft messages and forwarded requests to.
async fn serve_grpc(
    args: &StartArgs,
    groups: &Groups,
    executor: &Arc<LeaderExecutor>,
    gate: Arc<Gate>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<Result<(), tonic::transport::Error>>> {
    let svc = crate::grpc::NodeService { groups: groups.clone(), executor: executor.clone(), gate };
    let server = ordo_proto::NodeServer::new(svc)
        .max_decoding_message_size(ordo_raft::constants::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(ordo_raft::constants::GRPC_MESSAGE_BYTES_MAX);
    let listener =
        tokio::net::TcpListener::bind(args.rpc).await.with_context(|| format!("binding --rpc {}", args.rpc))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    Ok(tokio::spawn(
        tonic::transport::Server::builder().tcp_nodelay(true).add_service(server).serve_with_incoming_shutdown(
            incoming,
            async move {
                let _ = stop.changed().await;
            },
        ),
    ))
}

/// The HTTP API for clients and operators.
async fn serve_http(
    args: &StartArgs,
    state: Arc<NodeState>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(args.http).await.with_context(|| format!("binding --http {}", args.http))?;
    let limits = crate::listen::HttpLimits {
        connections_max: args.http_connections_max as usize,
        read_timeout_ms: args.http_read_timeout_ms,
        body_bytes_max: args.http_body_bytes_max,
    };
    let app = crate::http::router(state, limits);
    Ok(tokio::spawn(crate::listen::serve(listener, app, limits, stop)))
}

/// Returns on Ctrl-C or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

/// Leaders move where elections put them; this hands each group this node
/// leads to the replica that should lead it — its preferred leader (see
/// `Placement`) unless an operator drained that node or pinned the group
/// elsewhere (`ordo_meta::leadership`, read from the catalog) — once that
/// replica has the whole log, so leadership, and with it the write load,
/// goes where it should: spread evenly, and off drained nodes.
fn spawn_rebalancer(node_id: u64, placement: Placement, groups: Vec<Arc<dyn Consensus>>, meta: Arc<MetaLogic>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(REBALANCE_EVERY_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Not before the catalog is the meta group's: an empty default
            // would send leaders to nodes an operator drained.
            if !meta.is_known() {
                continue;
            }
            let leadership = meta.catalog().leadership.clone();
            let mut started = 0;
            for g in &groups {
                let target = leadership.target(&placement, g.group_id());
                if target == node_id || !g.is_leader() {
                    continue;
                }
                let s = g.status();
                // Only to a replica with the whole log: openraft's target
                // ignores a transfer while it lacks the leader's last entry,
                // and the leader refuses writes and stops heartbeats once
                // it starts one, so a lagging target costs an election.
                let caught_up = matches!(s.matched.get(&target), Some(Some(m)) if Some(*m) == s.last_log_index);
                if caught_up {
                    g.transfer_leader(target).await;
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
