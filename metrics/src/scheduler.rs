//! Schedulers and the executor: sequenced positions run, lock waits, reads
//! of other vShards' rows, and (read when scraped) the lock queues.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::latency_histogram;

/// Who waited for a lock: the `waiter` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaiterLabels {
    waiter: &'static str,
}

/// When a single-vShard write let go of its locks: the `when` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReleaseLabels {
    when: &'static str,
}

#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    lock_hold: Histogram,
    released: Family<ReleaseLabels, Counter>,
    positions: Counter,
    position_failures: Counter,
    execute: Histogram,
    lock_wait: Family<WaiterLabels, Histogram, fn() -> Histogram>,
    remote_reads: Counter,
    remote_read: Histogram,
    lock_requests: Gauge,
    lock_waiting: Gauge,
}

impl Default for SchedulerMetrics {
    fn default() -> SchedulerMetrics {
        SchedulerMetrics {
            lock_hold: latency_histogram(),
            released: Family::default(),
            positions: Counter::default(),
            position_failures: Counter::default(),
            execute: latency_histogram(),
            lock_wait: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            remote_reads: Counter::default(),
            remote_read: latency_histogram(),
            lock_requests: Gauge::default(),
            lock_waiting: Gauge::default(),
        }
    }
}

/// The kinds of lock waiters.
pub mod waiter {
    /// A sequenced (cross-shard) position in its scheduler.
    pub const SEQUENCED: &str = "sequenced";
    /// A single-vShard write or transaction on its leader.
    pub const WRITE: &str = "write";
    /// A snapshot read waiting for earlier sequenced writes.
    pub const READ: &str = "read";
}

/// When a single-vShard write released its locks.
pub mod release {
    /// Once its entry was queued, its rows left pending for later writes.
    pub const QUEUED: &str = "queued";
    /// Once its entry was applied (or failed): the pending bounds were
    /// reached, or its term ended before it could be left pending.
    pub const APPLIED: &str = "applied";
}

impl SchedulerMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("scheduler");
        r.register("positions", "Sequenced positions executed by this node's vShard leaders", self.positions.clone());
        r.register(
            "position_failures",
            "Sequenced positions whose execution failed here and ended the scheduler's round",
            self.position_failures.clone(),
        );
        r.register_with_unit(
            "execute",
            "From a sequenced position's lock grant to its write set applied",
            Unit::Seconds,
            self.execute.clone(),
        );
        r.register_with_unit(
            "lock_wait",
            "From enqueueing a request's locks to their grant (reads: those that waited for earlier \
             cross-shard writes until granted)",
            Unit::Seconds,
            self.lock_wait.clone(),
        );
        r.register_with_unit(
            "write_lock_hold",
            "From a single-vShard write's lock grant to its release (queued: once its entry is queued; \
             applied: once applied)",
            Unit::Seconds,
            self.lock_hold.clone(),
        );
        r.register(
            "write_lock_releases",
            "Single-vShard writes that released their locks once queued or only once applied",
            self.released.clone(),
        );
        r.register(
            "remote_reads",
            "Reads of another vShard's rows by a sequenced position (a key or a prefix; failed ones too)",
            self.remote_reads.clone(),
        );
        r.register_with_unit(
            "remote_read",
            "One read of another vShard's rows as of a position, retries included",
            Unit::Seconds,
            self.remote_read.clone(),
        );
        r.register(
            "lock_requests",
            "Requests in this node's lock tables (granted or waiting)",
            self.lock_requests.clone(),
        );
        r.register("lock_waiting", "Requests in this node's lock tables still waiting", self.lock_waiting.clone());
    }

    pub fn executed(&self, ok: bool, seconds: f64) {
        if ok {
            self.positions.inc();
            self.execute.observe(seconds);
        } else {
            self.position_failures.inc();
        }
    }

    /// A lock request of `waiter` (see [`waiter`]) granted after `seconds`.
    pub fn lock_granted(&self, waiter: &'static str, seconds: f64) {
        self.lock_wait.get_or_create(&WaiterLabels { waiter }).observe(seconds);
    }

    /// A single-vShard write released its locks `seconds` after their
    /// grant, `when` (see [`release`]).
    pub fn write_locks_released(&self, when: &'static str, seconds: f64) {
        self.lock_hold.observe(seconds);
        self.released.get_or_create(&ReleaseLabels { when }).inc();
    }

    pub fn remote_read(&self, seconds: f64) {
        self.remote_reads.inc();
        self.remote_read.observe(seconds);
    }

    /// The lock tables' size, when scraped.
    pub fn set_lock_queues(&self, requests: i64, waiting: i64) {
        self.lock_requests.set(requests);
        self.lock_waiting.set(waiting);
    }
}
