//! Storage: the WAL syncer's fsyncs (one per group commit of every group's
//! appends) and, read when scraped, RocksDB's own state.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::constants::{SIZE_BUCKETS, SIZE_BUCKET_FIRST};
use crate::{advance, advance_seconds, latency_histogram};

/// What the engine reads from RocksDB when scraped. Counts are RocksDB's
/// own, since the node started.
#[derive(Clone, Copy, Debug, Default)]
pub struct RocksProperties {
    pub write_stopped: bool,
    pub delayed_write_rate_bytes: u64,
    pub l0_files: u64,
    pub pending_compaction_bytes: u64,
    pub live_sst_bytes: u64,
    pub memtable_bytes: u64,
    pub block_cache_bytes: u64,
    pub stall_micros: u64,
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
}

#[derive(Clone, Debug)]
pub struct StorageMetrics {
    wal_syncs: Counter,
    wal_sync: Histogram,
    wal_sync_waiters: Histogram,
    write_stopped: Gauge,
    delayed_write_rate: Gauge,
    l0_files: Gauge,
    pending_compaction: Gauge,
    live_sst: Gauge,
    memtables: Gauge,
    block_cache: Gauge,
    stall: Counter<f64, std::sync::atomic::AtomicU64>,
    cache_hits: Counter,
    cache_misses: Counter,
}

impl Default for StorageMetrics {
    fn default() -> StorageMetrics {
        StorageMetrics {
            wal_syncs: Counter::default(),
            wal_sync: latency_histogram(),
            wal_sync_waiters: Histogram::new(exponential_buckets(SIZE_BUCKET_FIRST, 2.0, SIZE_BUCKETS)),
            write_stopped: Gauge::default(),
            delayed_write_rate: Gauge::default(),
            l0_files: Gauge::default(),
            pending_compaction: Gauge::default(),
            live_sst: Gauge::default(),
            memtables: Gauge::default(),
            block_cache: Gauge::default(),
            stall: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
        }
    }
}

impl StorageMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("storage");
        r.register("wal_syncs", "fsyncs of the write-ahead log (one per group commit)", self.wal_syncs.clone());
        r.register_with_unit("wal_sync", "One fsync of the write-ahead log", Unit::Seconds, self.wal_sync.clone());
        r.register(
            "wal_sync_waiters",
            "Durable writes that shared one fsync of the write-ahead log",
            self.wal_sync_waiters.clone(),
        );
        r.register("write_stopped", "1 while RocksDB stops writes (a write stall)", self.write_stopped.clone());
        r.register_with_unit(
            "delayed_write_rate",
            "The rate RocksDB slows writes to, while it delays them (0 when not)",
            Unit::Other("bytes_per_second".into()),
            self.delayed_write_rate.clone(),
        );
        r.register("l0_files", "SST files in level 0", self.l0_files.clone());
        r.register_with_unit(
            "pending_compaction",
            "Bytes compaction estimates it must rewrite",
            Unit::Bytes,
            self.pending_compaction.clone(),
        );
        r.register_with_unit("live_sst", "Bytes of live SST files", Unit::Bytes, self.live_sst.clone());
        r.register_with_unit("memtables", "Bytes of all memtables", Unit::Bytes, self.memtables.clone());
        r.register_with_unit("block_cache", "Bytes held by the block cache", Unit::Bytes, self.block_cache.clone());
        r.register_with_unit("write_stall", "Time writes were stalled", Unit::Seconds, self.stall.clone());
        r.register("block_cache_hits", "Block cache hits", self.cache_hits.clone());
        r.register("block_cache_misses", "Block cache misses", self.cache_misses.clone());
    }

    /// One fsync that `waiters` durable writes waited for.
    pub fn synced(&self, waiters: usize, seconds: f64) {
        self.wal_syncs.inc();
        self.wal_sync.observe(seconds);
        self.wal_sync_waiters.observe(waiters as f64);
    }

    /// RocksDB's state, when scraped.
    pub fn set_rocks(&self, p: &RocksProperties) {
        self.write_stopped.set(i64::from(p.write_stopped));
        self.delayed_write_rate.set(clamp(p.delayed_write_rate_bytes));
        self.l0_files.set(clamp(p.l0_files));
        self.pending_compaction.set(clamp(p.pending_compaction_bytes));
        self.live_sst.set(clamp(p.live_sst_bytes));
        self.memtables.set(clamp(p.memtable_bytes));
        self.block_cache.set(clamp(p.block_cache_bytes));
        advance_seconds(&self.stall, p.stall_micros as f64 / 1e6);
        advance(&self.cache_hits, p.block_cache_hits);
        advance(&self.cache_misses, p.block_cache_misses);
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
