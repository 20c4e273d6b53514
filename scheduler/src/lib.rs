//! Per-vShard ordering of transactions.
//!
//! Today every write that touches a vShard runs through that vShard's FIFO
//! lock on its leader: writes to one vShard run one at a time, in arrival
//! order, each reading the state left by the previous one. This is the
//! degenerate form of the Calvin lock manager (one lock per shard instead of
//! one per key); the deterministic lock manager that merges the sequencer's
//! epochs with single-shard inputs replaces it.

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// One FIFO lock per vShard.
pub struct ShardLocks {
    locks: Vec<Arc<Mutex<()>>>,
}

/// Held while a write on one vShard executes.
pub struct ShardGuard {
    _guard: OwnedMutexGuard<()>,
}

impl ShardLocks {
    pub fn new(vshards: u32) -> ShardLocks {
        ShardLocks { locks: (0..vshards).map(|_| Arc::new(Mutex::new(()))).collect() }
    }

    /// Waits for the vShard's turn. tokio's mutex is fair (FIFO), so writers
    /// are served in the order they arrive.
    pub async fn lock(&self, vshard: u32) -> ShardGuard {
        let lock = self.locks[vshard as usize].clone();
        ShardGuard { _guard: lock.lock_owned().await }
    }
}
