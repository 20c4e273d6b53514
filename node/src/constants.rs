//! Every limit and period of the node binary, defined once, with its unit
//! last in its name.

/// How often a node without a meta replica refreshes its catalog copy.
pub const CATALOG_REFRESH_MS: u64 = 1_000;
/// SQL requests one node runs at once; more get a retryable 53300.
pub const SQL_REQUESTS_INFLIGHT_MAX: usize = 512;
/// How often a node hands groups it leads back to their preferred leader.
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
/// Most vShards a cluster may have (`--vshards`).
pub const VSHARDS_MAX: u32 = 4096;
