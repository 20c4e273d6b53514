//! The node's storage engine: one RocksDB holding every group's log, vote,
//! state and rows (see [`crate::keys`]), plus a WAL syncer that gives all
//! groups one group commit.
//!
//! Writes go to RocksDB unsynced (so they are readable at once), and callers
//! that need durability queue a waiter on the syncer thread. The syncer drains
//! every waiter queued so far, runs one `flush_wal(sync = true)` and wakes them
//! all: appends of many Raft groups arriving together cost one fsync.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use ordo_metrics::{RocksProperties, StorageMetrics};
use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::{Options, WriteBatch, DB};

use crate::constants::{BLOCK_CACHE_BYTES, SYNC_QUEUE_MAX, SYNC_WAITERS_PER_ROUND_MAX};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("the WAL syncer has stopped")]
    SyncerStopped,
}

/// Called once the WAL holding every earlier write is on disk.
pub type SyncWaiter = Box<dyn FnOnce(Result<(), String>) + Send>;

pub struct Engine {
    db: Arc<DB>,
    /// Kept for RocksDB's statistics (its tickers live in the options).
    opts: Options,
    cache: rocksdb::Cache,
    metrics: StorageMetrics,
    /// `None` only while dropping.
    sync_tx: Option<mpsc::SyncSender<SyncWaiter>>,
    syncer: Option<std::thread::JoinHandle<()>>,
}

impl Engine {
    pub fn open(path: &Path) -> Result<Arc<Engine>, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        // Keep memory modest: many small groups share one memtable set.
        opts.set_write_buffer_size(32 << 20);
        opts.set_max_write_buffer_number(3);
        // One block cache for every group's data and log blocks (RocksDB's
        // default is 32 MiB, which a TPC-C warehouse outgrows).
        let mut table = rocksdb::BlockBasedOptions::default();
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        table.set_block_cache(&cache);
        opts.set_block_based_table_factory(&table);
        // Tickers only (stalls, cache hits for `/metrics`): timers would
        // read the clock around every operation.
        opts.enable_statistics();
        opts.set_statistics_level(StatsLevel::ExceptTimers);
        let db = Arc::new(DB::open(&opts, path)?);
        let metrics = StorageMetrics::default();
        let (sync_tx, sync_rx) = mpsc::sync_channel::<SyncWaiter>(SYNC_QUEUE_MAX);
        let (syncer_db, syncer_metrics) = (db.clone(), metrics.clone());
        let syncer = std::thread::Builder::new()
            .name("wal-syncer".into())
            .spawn(move || run_syncer(syncer_db, sync_rx, syncer_metrics))
            .expect("spawn wal syncer");
        Ok(Arc::new(Engine { db, opts, cache, metrics, sync_tx: Some(sync_tx), syncer: Some(syncer) }))
    }

    /// What the engine records (WAL syncs), for the node's registry.
    pub fn metrics(&self) -> &StorageMetrics {
        &self.metrics
    }

    /// Reads RocksDB's state into [`Engine::metrics`] (when scraped).
    pub fn refresh_metrics(&self) {
        let int = |name: &rocksdb::properties::PropName| self.db.property_int_value(name).ok().flatten().unwrap_or(0);
        use rocksdb::properties as p;
        let props = RocksProperties {
            write_stopped: int(p::IS_WRITE_STOPPED) != 0,
            delayed_write_rate_bytes: int(p::ACTUAL_DELAYED_WRITE_RATE),
            l0_files: int(&p::num_files_at_level(0)),
            pending_compaction_bytes: int(p::ESTIMATE_PENDING_COMPACTION_BYTES),
            live_sst_bytes: int(p::LIVE_SST_FILES_SIZE),
            memtable_bytes: int(p::CUR_SIZE_ALL_MEM_TABLES),
            block_cache_bytes: self.cache.get_usage() as u64,
            stall_micros: self.opts.get_ticker_count(Ticker::StallMicros),
            block_cache_hits: self.opts.get_ticker_count(Ticker::BlockCacheHit),
            block_cache_misses: self.opts.get_ticker_count(Ticker::BlockCacheMiss),
        };
        self.metrics.set_rocks(&props);
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Writes `batch` atomically; readable at once, durable after the next sync.
    pub fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        self.db.write(batch)?;
        Ok(())
    }

    /// Calls `waiter` once everything written so far is fsynced.
    pub fn sync_then(&self, waiter: SyncWaiter) {
        let sent = match &self.sync_tx {
            Some(tx) => tx.send(waiter),
            None => Err(mpsc::SendError(waiter)),
        };
        if let Err(mpsc::SendError(waiter)) = sent {
            waiter(Err("the WAL syncer has stopped".into()));
        }
    }

    /// Writes `batch` and returns once it is fsynced (shares the fsync with
    /// every other write waiting at the same time).
    pub async fn write_durable(&self, batch: WriteBatch) -> Result<(), EngineError> {
        self.write(batch)?;
        self.sync().await
    }

    /// Returns once everything written so far is fsynced.
    pub async fn sync(&self) -> Result<(), EngineError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sync_then(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(EngineError::SyncerStopped),
        }
    }
}

impl Drop for Engine {
    /// Stops the syncer and waits for it, so the DB is closed (its last
    /// reference dropped) before the process can exit: tearing RocksDB down
    /// while a thread still holds it aborts the process.
    fn drop(&mut self) {
        drop(self.sync_tx.take());
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

fn run_syncer(db: Arc<DB>, rx: mpsc::Receiver<SyncWaiter>, metrics: StorageMetrics) {
    let mut waiters: Vec<SyncWaiter> = Vec::with_capacity(64);
    while let Ok(first) = rx.recv() {
        waiters.push(first);
        while waiters.len() < SYNC_WAITERS_PER_ROUND_MAX {
            match rx.try_recv() {
                Ok(w) => waiters.push(w),
                Err(_) => break,
            }
        }
        let start = std::time::Instant::now();
        let result = db.flush_wal(true).map_err(|e| e.to_string());
        metrics.synced(waiters.len(), ordo_metrics::seconds_since(start));
        for w in waiters.drain(..) {
            w(result.clone());
        }
    }
}

/// A consistent read view of the whole database at one instant (a RocksDB
/// snapshot) that owns its engine, so it can outlive the call that took it.
pub struct OwnedSnapshot {
    // Declared before `_db`: dropped (released) while the DB is alive.
    snap: rocksdb::SnapshotWithThreadMode<'static, DB>,
    _db: Arc<DB>,
}

impl OwnedSnapshot {
    pub fn take(engine: &Engine) -> OwnedSnapshot {
        let db = engine.db.clone();
        let snap = db.snapshot();
        // SAFETY: the snapshot borrows the DB, which `_db` keeps alive (and
        // at the same address, inside the Arc) until after `snap` is dropped.
        let snap = unsafe {
            std::mem::transmute::<rocksdb::SnapshotWithThreadMode<'_, DB>, rocksdb::SnapshotWithThreadMode<'static, DB>>(
                snap,
            )
        };
        OwnedSnapshot { snap, _db: db }
    }

    pub fn read_options(&self) -> rocksdb::ReadOptions {
        let mut o = rocksdb::ReadOptions::default();
        o.set_snapshot(&self.snap);
        o
    }
}
