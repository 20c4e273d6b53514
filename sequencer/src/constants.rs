//! Every limit of the sequencer group, defined once, with its unit last in
//! its name.

/// Most epochs one `Collect` deletes (the rest go in the next one).
pub const EPOCHS_PER_COLLECT_MAX: u64 = 100_000;
/// Most epochs one read of the log returns.
pub const EPOCHS_PER_READ_MAX: usize = 1024;
/// One read stops once the epochs it holds are this large (it always holds
/// at least one epoch, itself bounded by `EPOCH_BYTES_MAX`).
pub const EPOCHS_READ_BYTES_MAX: usize = 8 << 20;
/// Default of the longest an input waits for its epoch to be sealed.
pub const EPOCH_MS_DEFAULT: u64 = 5;
/// Default of the most inputs in one epoch.
pub const EPOCH_INPUTS_MAX: usize = 4096;
/// Default of the most program bytes in one epoch.
pub const EPOCH_BYTES_MAX: usize = 8 << 20;
/// Default of the inputs waiting to be sealed; more are refused (retryable).
pub const SEAL_QUEUE_MAX: usize = 16 * 1024;

// A read can always return a whole epoch.
const _: () = assert!(EPOCH_BYTES_MAX <= EPOCHS_READ_BYTES_MAX);
// A full queue seals in a few epochs.
const _: () = assert!(EPOCH_INPUTS_MAX <= SEAL_QUEUE_MAX);
