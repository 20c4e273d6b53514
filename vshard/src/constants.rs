//! Every limit of a vShard's storage, defined once, with its unit last.

/// Most rows one scan returns; larger scans fail instead of exhausting memory.
pub const SCAN_ROWS_MAX: usize = 1_000_000;
/// Versions of one row a scan steps over before it seeks past the rest
/// (most rows have one or two; a hot row may have thousands).
pub const STEPS_BEFORE_SEEK: usize = 4;
/// Most history keys one collection step deletes in one write.
pub const COLLECT_BATCH_KEYS_MAX: usize = 10_000;

const _: () = assert!(STEPS_BEFORE_SEEK >= 1);
const _: () = assert!(COLLECT_BATCH_KEYS_MAX <= SCAN_ROWS_MAX);
