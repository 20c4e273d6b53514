//! Command-line interface.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The version, and the build it is (benchmarks print it: figures from a
/// build with debug assertions are not comparable).
const VERSION: &str = if cfg!(debug_assertions) {
    concat!(env!("CARGO_PKG_VERSION"), " (dev build: debug assertions on)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (optimised build)")
};

#[derive(Parser, Debug)]
#[command(name = "ordo", version = VERSION, about = "OrdoDB: a deterministic distributed SQL database")]
pub struct Cli {
    /// How log lines are written (to stderr): `text`, or `json` (one
    /// object per line, for log collectors).
    #[arg(long, global = true, env = "ORDO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start one node of a cluster.
    Start(Box<StartArgs>),
    /// Start a local cluster of several nodes as child processes (Ctrl-C stops it).
    Dev(DevArgs),
    /// Compare content hashes of every replica of every group; exits 1 if any differ.
    Verify(ClientArgs),
    /// Exit 0 if the node can serve SQL (every group it hosts has a
    /// leader), 1 if not or if it does not answer: a container healthcheck.
    Health(ClientArgs),
    /// The cluster as every group's leader sees it: leader, term, indexes,
    /// followers' lag, and where operators want leaders.
    Status(StatusArgs),
    /// Run SQL: the statements given, or an interactive prompt without.
    Sql(SqlArgs),
    /// Move leaders: before maintenance, or to balance load by hand.
    Admin(AdminArgs),
}

/// Where the CLI finds the cluster.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// HTTP address of any node of the cluster.
    #[arg(long, env = "ORDO_CLIENT_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
}

#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print the node's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SqlArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Statements to run as one request (`$1`... take `--param`s); without
    /// them, an interactive prompt reads statements ending in `;`.
    pub sql: Option<String>,
    /// A parameter, in order (`$1` first); JSON values (`42`, `"text"`,
    /// `null`) are taken as such, anything else as text.
    #[arg(long = "param", short = 'p')]
    pub params: Vec<String>,
    /// Print the node's JSON answer instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// Move a group's leader to a node and keep it there (until `unpin`).
    TransferLeader {
        #[command(flatten)]
        client: ClientArgs,
        /// The group (0: meta, 1: sequencer, 2 + v: vShard v).
        #[arg(long)]
        group: u64,
        /// The node that should lead it.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Move every leader off a node and keep them off (until `step-up`):
    /// before taking the node down for maintenance.
    StepDown {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        node: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Let a node lead again after `step-down`.
    StepUp {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        node: u64,
    },
    /// Let a group's leader go back where placement prefers it.
    Unpin {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long)]
        group: u64,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WaitArgs {
    /// How long to wait for the leaders to move, in seconds (0: do not wait).
    #[arg(long, default_value_t = crate::constants::ADMIN_WAIT_S_DEFAULT,
          value_parser = clap::value_parser!(u64).range(0..=crate::constants::ADMIN_WAIT_S_MAX))]
    pub wait_s: u64,
}

#[derive(Args, Debug, Clone)]
pub struct StartArgs {
    /// This node's id; must appear in --peers.
    #[arg(long, env = "ORDO_ID")]
    pub id: u64,
    /// Directory for this node's RocksDB (created if missing).
    #[arg(long, env = "ORDO_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address for node-to-node gRPC (Raft and forwarded requests).
    #[arg(long, env = "ORDO_RPC")]
    pub rpc: SocketAddr,
    /// Address for the HTTP SQL API (`POST /v1/sql`, `GET /v1/cluster`, `GET /health`).
    #[arg(long, env = "ORDO_HTTP")]
    pub http: SocketAddr,
    /// The cluster's id, the same on every node; a data directory belongs
    /// to the cluster it was first started in.
    #[arg(long, env = "ORDO_CLUSTER_ID", default_value = "ordo")]
    pub cluster_id: String,
    /// The cluster secret every node-to-node call carries (a node refuses
    /// calls without it). Prefer `--cluster-secret-file`: the environment
    /// of a process is visible to its user.
    #[arg(long, env = "ORDO_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret (surrounding whitespace ignored).
    #[arg(long, env = "ORDO_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Every node's RPC address, this one included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    #[arg(long, value_parser = parse_peers, env = "ORDO_PEERS")]
    pub peers: BTreeMap<u64, String>,
    /// Number of vShards (data Raft groups). Must be the same on every node.
    #[arg(long, default_value_t = 64, env = "ORDO_VSHARDS")]
    pub vshards: u32,
    /// Replicas per Raft group (capped at the number of nodes).
    #[arg(long, default_value_t = 3, env = "ORDO_REPLICATION")]
    pub replication: usize,
    /// Let a single-vShard write release its locks once its entry is queued
    /// rather than once it is applied (early lock release: later writes of
    /// the vShard read its pending rows; docs/ARCHITECTURE.md).
    /// `--early-lock-release=false` keeps every write's locks until applied.
    #[arg(long, env = "ORDO_EARLY_LOCK_RELEASE", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub early_lock_release: bool,
    /// Interval of the node-wide Raft heartbeat, in milliseconds; elections
    /// start after 6 to 12 missed intervals.
    #[arg(long, default_value_t = 500, env = "ORDO_HEARTBEAT_MS")]
    pub heartbeat_ms: u64,
    /// Raft entries after which a group snapshots and purges its log.
    /// A snapshot copies the group's whole data section (every replica
    /// builds its own), which for a TPC-C warehouse took seconds of CPU
    /// at 5000 entries and halved throughput while it ran; the log itself
    /// stays on disk, so a longer interval costs disk, not memory.
    #[arg(long, default_value_t = 50_000, env = "ORDO_SNAPSHOT_LOGS")]
    pub snapshot_logs: u64,
    /// Largest accepted HTTP request body, in bytes.
    #[arg(long, default_value_t = 16 << 20, env = "ORDO_HTTP_BODY_BYTES_MAX")]
    pub http_body_bytes_max: usize,
    /// Memory one query's operators (sorts, joins, grouping) may hold, in
    /// bytes; beyond it the query fails with 53200. All queries of a node
    /// share 1 GiB.
    #[arg(long, default_value_t = ordo_sql::constants::QUERY_MEMORY_BYTES_MAX, env = "ORDO_QUERY_MEMORY_BYTES_MAX")]
    pub query_memory_bytes_max: usize,
    /// Largest result one statement returns, in Arrow bytes; beyond it 54000.
    #[arg(long, default_value_t = ordo_sql::constants::RESULT_BYTES_MAX, env = "ORDO_RESULT_BYTES_MAX")]
    pub result_bytes_max: usize,
    /// Most HTTP connections open at once; more wait to be accepted until
    /// one closes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), env = "ORDO_HTTP_CONNECTIONS_MAX")]
    pub http_connections_max: u32,
    /// How long a client may take to send a request's headers, and then
    /// its body, in milliseconds; a connection idle this long between
    /// requests, or whose client reads nothing of a response this long,
    /// is closed.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..), env = "ORDO_HTTP_READ_TIMEOUT_MS")]
    pub http_read_timeout_ms: u64,
    /// How often the sequencer's leader measures how far every vShard has
    /// completed cross-shard transactions, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), env = "ORDO_COLLECT_EVERY_MS")]
    pub collect_every_ms: u64,
    /// How long after that measurement the outcome records and epochs it
    /// covers are dropped, in milliseconds. Should exceed the 60 s a gateway
    /// waits for an outcome: a gateway still waiting when the record goes
    /// reports the outcome as unknown (a warning is logged below that).
    #[arg(long, default_value_t = 120_000, env = "ORDO_COLLECT_LAG_MS")]
    pub collect_lag_ms: u64,
    /// How long a row version stays readable, for queries that span vShards,
    /// after a newer one replaced it, in milliseconds. Must exceed the 30 s
    /// a query may run (a warning is logged below that). Old versions are
    /// dropped every `--collect-every-ms`.
    #[arg(long, default_value_t = 60_000, env = "ORDO_VERSIONS_KEEP_MS")]
    pub versions_keep_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Parent directory; node N keeps its data in DIR/nodeN.
    #[arg(long, default_value = "./ordo-data")]
    pub data_dir: PathBuf,
    /// HTTP port of node 1; node N listens on HTTP_PORT + N - 1.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// RPC port of node 1; node N listens on RPC_PORT + N - 1.
    #[arg(long, default_value_t = 7080)]
    pub rpc_port: u16,
    /// Number of vShards.
    #[arg(long, default_value_t = 64)]
    pub vshards: u32,
}

impl StartArgs {
    /// The cluster secret, from `--cluster-secret-file` or `--cluster-secret`.
    pub fn secret(&self) -> anyhow::Result<String> {
        let secret = match (&self.cluster_secret_file, &self.cluster_secret) {
            (Some(path), _) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading --cluster-secret-file {}: {e}", path.display()))?
                .trim()
                .to_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => anyhow::bail!(
                "no cluster secret: set ORDO_CLUSTER_SECRET or --cluster-secret-file (the same on every node; \
                 `ordo dev` makes one)"
            ),
        };
        anyhow::ensure!(secret.len() >= 16, "the cluster secret must be at least 16 characters");
        Ok(secret)
    }
}

fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>, String> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('=').ok_or_else(|| format!("expected ID=HOST:PORT, got {part:?}"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("bad node id {id:?}"))?;
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node {id} listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(peers)
}
