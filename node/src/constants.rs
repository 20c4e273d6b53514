//! Every limit and period of the node binary, defined once, with its unit
//! last in its name.

/// How often a node without a meta replica refreshes its catalog copy.
pub const CATALOG_REFRESH_MS: u64 = 1_000;
/// SQL requests one node runs at once; more get a retryable 53300.
pub const SQL_REQUESTS_INFLIGHT_MAX: usize = 512;
/// How often a node hands groups it leads to the replica that should lead
/// them (see `ordo_meta::leadership`).
pub const REBALANCE_EVERY_MS: u64 = 3_000;
/// Most leadership transfers one node starts per round, so a returning node
/// takes its share back gradually.
pub const REBALANCE_TRANSFERS_PER_ROUND_MAX: usize = 8;
/// How long a stopping node waits for its HTTP and gRPC servers to finish.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;
/// Stack of each runtime worker thread: statements are parsed, planned
/// and evaluated on them by recursive walks of expression trees, which
/// `ordo_expr::constants::EXPRESSION_DEPTH_MAX` bounds (virtual memory:
/// only the pages a deep statement touches are used).
pub const WORKER_STACK_BYTES: usize = 16 << 20;
/// How long a node starting on a new data directory waits for each peer
/// to say whether it knew this node by another incarnation.
pub const IDENTITY_PROBE_MS: u64 = 2_000;
/// How often a node asks again the peers that have not answered its probe.
pub const IDENTITY_REPROBE_EVERY_MS: u64 = 1_000;
/// Most vShards a cluster may have (`--vshards`).
pub const VSHARDS_MAX: u32 = 4096;
/// Groups whose leaders `GET /v1/admin/status` asks at once.
pub const STATUS_CALLS_INFLIGHT_MAX: usize = 16;
/// How long `GET /v1/admin/status` waits for one group's leader.
pub const STATUS_CALL_TIMEOUT_MS: u64 = 5_000;
/// How long `GET /v1/admin/status` asks in all.
pub const STATUS_DEADLINE_MS: u64 = 30_000;
/// How long `ordo admin` waits, by default, for leaders to move.
pub const ADMIN_WAIT_S_DEFAULT: u64 = 120;
/// Longest `ordo admin --wait-s`: a day.
pub const ADMIN_WAIT_S_MAX: u64 = 86_400;
/// How often `ordo admin` looks whether leaders have moved.
pub const ADMIN_POLL_MS: u64 = 1_000;
/// Timeout of one HTTP call of the CLI (`ordo health`, `status`, `sql`).
pub const CLI_CALL_TIMEOUT_MS: u64 = 60_000;
/// Timeout of `ordo health` (a container healthcheck must not hang).
pub const HEALTH_TIMEOUT_MS: u64 = 3_000;

// A status gives up before a CLI call that waits for it.
const _: () = assert!(STATUS_CALL_TIMEOUT_MS <= STATUS_DEADLINE_MS && STATUS_DEADLINE_MS < CLI_CALL_TIMEOUT_MS);
const _: () = assert!(ADMIN_POLL_MS < ADMIN_WAIT_S_DEFAULT * 1_000);
