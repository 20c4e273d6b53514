//! Bucket layouts of the histograms.

/// Upper bound of the first latency bucket: 50 µs (a point read's apply).
pub const LATENCY_BUCKET_FIRST_SECONDS: f64 = 0.000_05;
/// Latency buckets, each twice the one before: the last bound is
/// 50 µs × 2^19 ≈ 26 s, past the 12 s a proposal may wait.
pub const LATENCY_BUCKETS: u16 = 20;
/// Upper bound of the first size bucket (inputs per epoch): 1.
pub const SIZE_BUCKET_FIRST: f64 = 1.0;
/// Size buckets, doubling: up to 2^12 = 4,096 inputs per epoch.
pub const SIZE_BUCKETS: u16 = 13;

// The slowest bucket must hold a proposal that ran into its timeout (12 s).
const _: () = assert!(LATENCY_BUCKETS >= 18 && LATENCY_BUCKETS <= 30);
const _: () = assert!(SIZE_BUCKETS >= 8);
