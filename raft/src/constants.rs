//! Every limit of the Raft plumbing, defined once, with its unit last in
//! its name. Relations between them are checked at compile time below.

/// Bound of each peer's outgoing queue; a full queue pushes back on Raft.
pub const PEER_QUEUE_MAX: usize = 4096;
/// Most messages in one batch to a peer.
pub const BATCH_MSGS_MAX: usize = 512;
/// A batch stops growing once it carries this many payload bytes.
pub const BATCH_BYTES_MAX: usize = 4 << 20;
/// How long a heartbeat waits for company before its batch leaves.
pub const HEARTBEAT_LINGER_MS: u64 = 2;
/// Batches in flight to one peer at once.
pub const PEER_INFLIGHT_MAX: usize = 16;
/// Upper bound of one batch call (snapshots included).
pub const BATCH_TIMEOUT_MS: u64 = 60_000;
/// How long a peer's connection may take to open.
pub const PEER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// HTTP/2 keep-alive pings on each peer connection.
pub const PEER_KEEPALIVE_MS: u64 = 10_000;
/// Largest gRPC message either side accepts.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 512 << 20;

/// Most waiters one fsync wakes; bounds the work of one syncer round.
pub const SYNC_WAITERS_PER_ROUND_MAX: usize = 4096;
/// Bound of the WAL syncer's queue; a full queue makes writers wait.
pub const SYNC_QUEUE_MAX: usize = 16 * 1024;
/// Bytes of RocksDB's block cache per node (shared by every group).
pub const BLOCK_CACHE_BYTES: usize = 256 << 20;
/// Most bytes (encoded) of recent log entries one group keeps in memory.
pub const ENTRY_CACHE_BYTES_MAX: usize = 4 << 20;

/// Shortest heartbeat period a group accepts (`GroupConfig::heartbeat_ms`).
pub const HEARTBEAT_MS_MIN: u64 = 10;
/// Most entries in one AppendEntries message.
pub const APPEND_ENTRIES_MAX: u64 = 256;
/// Bound of each group's openraft API channel (many groups per node).
pub const GROUP_API_QUEUE_MAX: u64 = 1024;
/// Bound of each group's openraft state-machine channel.
pub const GROUP_APPLY_QUEUE_MAX: u64 = 256;
/// Log entries kept behind a snapshot at most, so a briefly lagging
/// follower catches up from the log instead of a snapshot.
pub const LOG_KEPT_BEHIND_SNAPSHOT_MAX: u64 = 500;
/// How long a group remembers the reply of an applied client request, by
/// the proposers' clocks (see [`crate::requests`]): retries must end well
/// within it.
pub const REQUEST_RETENTION_MS: u64 = 300_000;
/// How long after it was first sent (its sender's clock) an attempt of a
/// request may still apply: later ones are refused (outcome unknown), since
/// an earlier attempt's record could have expired. Half the retention, so
/// a record of any earlier attempt is live whenever an attempt applies,
/// with the other half left for clock differences between nodes.
pub const REQUEST_APPLY_WINDOW_MS: u64 = REQUEST_RETENTION_MS / 2;
/// Largest reply a request record keeps; a retry of a request with a
/// larger reply learns it was applied, not the reply.
pub const REQUEST_REPLY_BYTES_MAX: usize = 256 << 10;
/// Longest a proposal waits to be committed and applied (a leader cut off
/// from its quorum must not hold its locks forever); then its outcome is
/// unknown.
pub const PROPOSE_TIMEOUT_MS: u64 = 12_000;
/// Poll period of [`crate::wait_for_leader`].
pub const LEADER_POLL_MS: u64 = 20;

const _: () = assert!(2 * REQUEST_APPLY_WINDOW_MS <= REQUEST_RETENTION_MS);
// A batch must fit in one gRPC message, with room for the envelope.
const _: () = assert!(BATCH_BYTES_MAX * 2 <= GRPC_MESSAGE_BYTES_MAX);
// The heartbeat linger is short against the shortest heartbeat period, or
// coalescing heartbeats would delay them noticeably.
const _: () = assert!(HEARTBEAT_LINGER_MS * 4 <= HEARTBEAT_MS_MIN);
// One syncer round can wake everything queued since the last one.
const _: () = assert!(SYNC_WAITERS_PER_ROUND_MAX <= SYNC_QUEUE_MAX);
const _: () = assert!(BATCH_MSGS_MAX <= PEER_QUEUE_MAX);

/// Entries per group whose append time is kept until they are applied,
/// for the commit latency metric (older ones go unmeasured).
pub const APPEND_TIMES_MAX: usize = 1024;
