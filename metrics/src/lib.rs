//! The metrics of one node, in Prometheus' text format (`GET /metrics`).
//!
//! Each layer records into a struct of its own (`RaftMetrics` for every
//! group's proposals and applies, `SequencerMetrics`, `SchedulerMetrics`,
//! `SqlMetrics`, `StorageMetrics`), which its owner creates and the node
//! registers in the node's one [`Registry`]. Nothing is global: every node
//! (and every test that starts groups in one process) has its own.
//! Values that exist anyway (a group's term and leader, RocksDB's
//! properties, the process' CPU time) are not counted twice: the node reads
//! them into gauges when it is scraped (`Gauges`, `ProcessMetrics`).
//!
//! Names follow Prometheus' conventions: the `ordo_` prefix, base units in
//! the name (`_seconds`, `_bytes`), counters ending in `_total`.
//!
//! Dependency rule: at the bottom of the workspace beside `ordo-proto`;
//! depends on no other OrdoDB crate, so every layer may record into it.

mod constants;
mod labels;
mod process;
mod raft;
mod scheduler;
mod sequencer;
mod sql;
mod storage;

pub use constants::{LATENCY_BUCKETS, LATENCY_BUCKET_FIRST_SECONDS};
pub use labels::{GroupKind, Outcome};
pub use process::ProcessMetrics;
pub use prometheus_client::registry::Registry;
pub use raft::{GroupGauges, KindSums, RaftMetrics};
pub use scheduler::{release, waiter, SchedulerMetrics};
pub use sequencer::SequencerMetrics;
pub use sql::{RequestKind, SqlMetrics, TxnPath};
pub use storage::{RocksProperties, StorageMetrics};

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The content type of [`encode`]'s output (OpenMetrics text, which
/// Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry whose metrics are all named `ordo_...`.
pub fn registry() -> Registry {
    Registry::with_prefix("ordo")
}

/// The registry's metrics as text.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// A latency histogram: [`LATENCY_BUCKETS`] buckets doubling from
/// [`LATENCY_BUCKET_FIRST_SECONDS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(LATENCY_BUCKET_FIRST_SECONDS, 2.0, LATENCY_BUCKETS))
}

/// Advances `counter` to `total`, a count kept elsewhere (by RocksDB, the
/// kernel) and read when scraped.
pub(crate) fn advance(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// [`advance`] for a count of seconds.
pub(crate) fn advance_seconds(
    counter: &prometheus_client::metrics::counter::Counter<f64, std::sync::atomic::AtomicU64>,
    total: f64,
) {
    counter.inc_by((total - counter.get()).max(0.0));
}

/// Seconds since `start`, for a latency histogram.
pub fn seconds_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
