//! Every limit of the executor, defined once, with its unit last in its
//! name (TigerBeetle's `constants.zig` is the model). Relations between
//! them, and with the limits of the crates below, are checked at compile
//! time at the end of this file.

// Transactions and statements.

/// Most statements in one transaction program.
pub const PROGRAM_STATEMENTS_MAX: usize = 1024;
/// Most bytes (keys and rows) a transaction program reads from storage. A
/// sequenced transaction logs the rows each participant read in its record,
/// and every participant counts the same reads, so every one aborts alike.
pub const PROGRAM_READ_BYTES_MAX: usize = 16 << 20;
/// Most rows one statement inserts, changes (per vShard, for a statement
/// run by each vShard on its own rows) or returns inside a transaction.
pub const STATEMENT_ROWS_MAX: usize = 100_000;
/// Most keys a reconnaissance may find; a statement that matches more runs
/// without one (locking the table for writing and scanning it).
pub const RECON_KEYS_MAX: usize = 1_000;
/// Reads of a reconnoitred statement's candidates in flight at once.
pub const RECON_READS_CONCURRENT: usize = 32;
/// Reconnaissances one node runs at once (each scans a table's rows in a
/// vShard, up to `PROGRAM_READ_BYTES_MAX`); more wait.
pub const RECONNAISSANCES_INFLIGHT_MAX: usize = 4;
/// Reconnoitred attempts of a transaction: a second one follows a row that
/// came to match in between; after that (a table whose matching rows keep
/// changing) it runs locking whole tables, which cannot go stale.
pub const RECON_ATTEMPTS_MAX: usize = 2;
/// vShards a gateway asks at once during a reconnaissance.
pub const RECON_FANOUT_MAX: usize = 16;

// Requests between nodes.

/// How long one request keeps looking for its group's leader.
pub const LEADER_SEARCH_MS: u64 = 15_000;
/// Upper bound of one forwarded call.
pub const FORWARD_TIMEOUT_MS: u64 = 20_000;
/// First pause after a `NotLeader` answer; doubles per attempt.
pub const LEADER_RETRY_BACKOFF_MS_MIN: u64 = 5;
/// Longest pause between two attempts to find a leader.
pub const LEADER_RETRY_BACKOFF_MS_MAX: u64 = 200;
/// Longest a long poll (`ReadAt`, `Outcome`, `VerdictAt`, `Epochs`) waits
/// on the serving side before answering "not yet" (the caller asks again).
pub const LONG_POLL_MS: u64 = 3_000;
/// Longest a fenced request waits for its vShard to reach its epoch.
pub const FENCE_WAIT_MS: u64 = 10_000;
/// How long a replica waits to apply a checksum point before answering.
pub const REPLICA_CHECKSUM_WAIT_MS: u64 = 10_000;
/// How long a gateway waits for a sequenced transaction's outcome.
pub const OUTCOME_WAIT_MS: u64 = 60_000;
/// Most questions a single-vShard read asks other vShards instead of
/// waiting for earlier cross-shard writes of its rows.
pub const SKIP_CHECKS_MAX: usize = 8;

// Schedulers of sequenced transactions.

/// Epochs a scheduler reads from the log at once.
pub const EPOCHS_PER_STEP: usize = 64;
/// How often an idle scheduler rechecks leadership.
pub const LEADERSHIP_POLL_MS: u64 = 500;
/// Pause before a scheduler retries a step that failed for a passing reason.
pub const RETRY_BACKOFF_MS: u64 = 20;
/// How often a waiter for a position looks again without a wake-up
/// (followers and new leaders apply without this node's scheduler).
pub const POSITION_POLL_MS: u64 = 50;
/// Failed evaluations of one position after which each further batch of
/// this many is logged as an error.
pub const EVALUATION_ATTEMPTS_ALARM: u32 = 500;
/// Sequenced transactions one vShard leader runs at once (enqueued in the
/// lock table, waiting or executing); the scheduler stops reading epochs
/// while this many are unfinished.
pub const SEQUENCED_INFLIGHT_MAX: usize = 1024;
/// Verdicts (or outcomes) a participant fetches from others at once.
pub const VERDICT_FETCHES_MAX: usize = 16;
/// Positions a scheduler's status lists at most.
pub const STAT_POSITIONS_MAX: usize = 8;

// Garbage collection and verification.

/// vShards the outcome collector asks at once.
pub const COLLECT_CALLS_INFLIGHT_MAX: usize = 16;
/// History keys one vShard replica reads per version-collection pass.
pub const VERSION_KEYS_PER_STEP_MAX: usize = 50_000;
/// Groups `verify` checks at once.
pub const VERIFY_FANOUT_MAX: usize = 8;
/// Default of `--collect-every-ms`.
pub const COLLECT_EVERY_MS_DEFAULT: u64 = 10_000;
/// Default of `--collect-lag-ms`: how long a completed epoch's outcomes are
/// kept for gateways still waiting for them.
pub const COLLECT_LAG_MS_DEFAULT: u64 = 120_000;

// A long poll answers before the forwarded call carrying it times out.
/// Writes a vShard's leader keeps queued and unapplied for later writes to
/// read (see `serve::pending`), and their rows' bytes; past either a write
/// keeps its locks until it is applied, as if none were released early.
pub const PENDING_ENTRIES_MAX: usize = 512;
pub const PENDING_BYTES_MAX: usize = 8 << 20;
/// How long a retry waits for its earlier attempt queued on the same
/// leader, and a sequenced participant for the writes queued before it.
pub const PENDING_WAIT_MS: u64 = 10_000;

const _: () = assert!(LONG_POLL_MS < FORWARD_TIMEOUT_MS);
const _: () = assert!(PENDING_WAIT_MS < FORWARD_TIMEOUT_MS);
// A fenced request gives up before its forwarded call does.
const _: () = assert!(FENCE_WAIT_MS < FORWARD_TIMEOUT_MS);
const _: () = assert!(REPLICA_CHECKSUM_WAIT_MS < FORWARD_TIMEOUT_MS);
const _: () = assert!(LEADER_RETRY_BACKOFF_MS_MIN <= LEADER_RETRY_BACKOFF_MS_MAX);
// A gateway waiting for an outcome finds it: records are kept longer.
const _: () = assert!(OUTCOME_WAIT_MS < COLLECT_LAG_MS_DEFAULT);
// Every key a reconnaissance finds is read by the statement it stands for.
const _: () = assert!(RECON_KEYS_MAX <= STATEMENT_ROWS_MAX);
// A statement's rows come from one scan, which storage bounds itself.
const _: () = assert!(STATEMENT_ROWS_MAX <= ordo_vshard::constants::SCAN_ROWS_MAX);
// What a program read travels back in one reply to a participant.
const _: () = assert!(PROGRAM_READ_BYTES_MAX * 4 <= ordo_raft::constants::GRPC_MESSAGE_BYTES_MAX);
// The sequenced transactions a leader runs fit its vShard's lock table,
// with room for single-shard requests.
const _: () = assert!(SEQUENCED_INFLIGHT_MAX * 2 <= ordo_scheduler::LOCK_REQUESTS_MAX);
// A scheduler's read of epochs is one answer of the sequencer.
const _: () = assert!(EPOCHS_PER_STEP <= ordo_sequencer::constants::EPOCHS_PER_READ_MAX);
const _: () = assert!(POSITION_POLL_MS < LONG_POLL_MS);
// A write's retries (the leader search, plus its last forwarded call) end
// well within the time a group remembers the write's request id, leaving
// the rest for clock differences between nodes.
const _: () = assert!(2 * (LEADER_SEARCH_MS + FORWARD_TIMEOUT_MS) <= ordo_raft::constants::REQUEST_APPLY_WINDOW_MS);
// A leader answers "outcome unknown" before the call carrying the proposal
// times out, so the caller can retry under the same id.
const _: () = assert!(ordo_raft::constants::PROPOSE_TIMEOUT_MS < FORWARD_TIMEOUT_MS);
