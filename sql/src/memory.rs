//! Memory bounds of queries: every query's operators (sorts, joins,
//! grouping) draw from a pool of their own, capped at
//! [`QueryLimits::memory_bytes_max`], which draws in turn from the node's
//! pool: one query cannot take all of the node's memory, and all of them
//! together cannot take more than the node's. A reservation either bound
//! refuses fails its query with 53200 (`ResourcesExhausted`), retryable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

/// What one query may hold and return.
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    /// Memory one query's operators may reserve at once.
    pub memory_bytes_max: usize,
    /// Arrow bytes of one statement's result; beyond it 54000.
    pub result_bytes_max: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            memory_bytes_max: crate::constants::QUERY_MEMORY_BYTES_MAX,
            result_bytes_max: crate::constants::RESULT_BYTES_MAX,
        }
    }
}

/// One query's pool: its own count and cap in front of the node's pool.
#[derive(Debug)]
pub(crate) struct QueryPool {
    node: Arc<dyn MemoryPool>,
    reserved: AtomicUsize,
    limit: usize,
}

impl QueryPool {
    pub(crate) fn new(node: Arc<dyn MemoryPool>, limit: usize) -> QueryPool {
        QueryPool { node, reserved: AtomicUsize::new(0), limit }
    }
}

impl std::fmt::Display for QueryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "query pool: {} of {} bytes reserved", self.reserved.load(Ordering::SeqCst), self.limit)
    }
}

impl MemoryPool for QueryPool {
    fn name(&self) -> &str {
        "ordo-query"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.node.register(consumer)
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.node.unregister(consumer)
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.reserved.fetch_add(additional, Ordering::SeqCst);
        self.node.grow(reservation, additional)
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let before = self.reserved.fetch_sub(shrink, Ordering::SeqCst);
        debug_assert!(before >= shrink, "a query released more than it reserved");
        self.node.shrink(reservation, shrink)
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let grown = self.reserved.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
            r.checked_add(additional).filter(|&n| n <= self.limit)
        });
        let Ok(before) = grown else {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query needs more than its {} bytes of memory (it holds {}, asked for {additional} more)",
                self.limit,
                self.reserved.load(Ordering::SeqCst)
            )));
        };
        if let Err(e) = self.node.try_grow(reservation, additional) {
            self.reserved.fetch_sub(additional, Ordering::SeqCst);
            debug_assert!(before.checked_add(additional).is_some());
            return Err(e);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.reserved.load(Ordering::SeqCst)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;

    #[test]
    fn a_query_is_capped_by_its_own_bound_and_by_the_node() {
        let node: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1000));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(node.clone(), 600));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(node.clone(), 600));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(600).unwrap();
        assert!(ra.try_grow(1).is_err(), "past the query's bound");
        assert!(rb.try_grow(500).is_err(), "past the node's bound: 600 + 500 > 1000");
        assert_eq!(b.reserved(), 0, "a refused reservation is not counted");
        rb.try_grow(400).unwrap();
        assert_eq!(node.reserved(), 1000);
        drop(ra);
        assert_eq!((a.reserved(), node.reserved()), (0, 400), "freed in both");
        rb.try_grow(200).unwrap();
    }
}
