//! Every limit of the SQL layer, defined once, with its unit last in its
//! name. Limits of what a transaction or statement may touch are the
//! executor's (`ordo_executor::constants`), which enforces them too.

/// Most statements in one request.
pub const STATEMENTS_PER_REQUEST_MAX: usize = 1024;
/// Times a query is rerun when a vShard no longer keeps the row versions
/// it reads (it read too slowly), or a participant failed over meanwhile.
pub const QUERY_RETRIES_MAX: usize = 3;
/// Longest a query runs, retries included (reads only: a write's outcome
/// is awaited separately, see `ordo_executor::constants::OUTCOME_WAIT_MS`).
pub const QUERY_TIMEOUT_MS: u64 = 30_000;
/// Memory the operators of this node's queries (sorts, joins, grouping)
/// may hold together; beyond it a query fails with 53200.
pub const NODE_QUERY_MEMORY_BYTES_MAX: usize = 1 << 30;
/// Memory one query's operators may hold (default of
/// `--query-memory-bytes-max`); beyond it the query fails with 53200.
pub const QUERY_MEMORY_BYTES_MAX: usize = 256 << 20;
/// Largest result one statement returns (Arrow bytes; default of
/// `--result-bytes-max`); beyond it 54000.
pub const RESULT_BYTES_MAX: usize = 256 << 20;
/// vShards one query scans at once.
pub const SCAN_FANOUT_MAX: usize = 16;
/// vShards one statement writes at once.
pub const WRITE_FANOUT_MAX: usize = 16;
/// vShards a DROP TABLE reclaims at once.
pub const DROP_FANOUT_MAX: usize = 16;
/// Attempts to reclaim a dropped table's rows in one vShard.
pub const DROP_ATTEMPTS_MAX: usize = 5;
/// Longest `VARCHAR(n)` a table may declare, in characters.
pub const VARCHAR_LEN_MAX: u64 = 10 * 1024 * 1024;

// A statement's whole program fits the executor's bound on programs.
const _: () = assert!(STATEMENTS_PER_REQUEST_MAX <= ordo_executor::constants::PROGRAM_STATEMENTS_MAX);
// A query gives up before a forwarded call carrying one of its reads would.
const _: () = assert!(QUERY_TIMEOUT_MS > ordo_executor::constants::FORWARD_TIMEOUT_MS);
// One query cannot take the whole node's pool by default.
const _: () = assert!(QUERY_MEMORY_BYTES_MAX < NODE_QUERY_MEMORY_BYTES_MAX);
