//! What the workload needs from a database: sessions that run the five
//! transactions, plus plain SQL for loading and checking. One
//! implementation per target ([`super::ordo`], [`super::pg`]); the driver,
//! loader and checker are shared.

use super::input::{Delivery, NewOrder, OrderStatus, Payment, StockLevel};
use super::schema::Dialect;

/// A transaction that did not commit for a reason other than the
/// specified New-Order rollback.
#[derive(Clone, Debug)]
pub struct TxnError {
    /// SQLSTATE, or `transport` when the database could not be reached.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for TxnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for TxnError {}

/// A transaction that finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Done {
    /// The New-Order with an unused item rolled back, as specified.
    pub rolled_back: bool,
    /// Serialization failures or deadlocks retried before it finished.
    pub retries: u32,
}

impl Done {
    pub const COMMITTED: Done = Done { rolled_back: false, retries: 0 };
}

pub type TxnResult = Result<Done, TxnError>;

/// A database under test.
#[async_trait::async_trait]
pub trait TpccDb: Send + Sync {
    /// A short name for tables and files, e.g. `ordodb`, `pg-interactive`.
    fn name(&self) -> String;
    fn dialect(&self) -> Dialect;
    /// Opens one session (a connection, or a node to talk to) for worker
    /// `worker`.
    async fn session(&self, worker: usize) -> anyhow::Result<Box<dyn TpccSession>>;
    /// Prepares whatever the transactions need after loading (PostgreSQL's
    /// functions, statistics).
    async fn after_load(&self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// One client's connection.
#[async_trait::async_trait]
pub trait TpccSession: Send {
    /// Runs a statement whose result is not needed (DDL, INSERT).
    async fn execute(&mut self, sql: &str) -> Result<(), TxnError>;
    /// Runs a query; every value as text (NULL as `None`).
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, TxnError>;
    async fn new_order(&mut self, t: &NewOrder) -> TxnResult;
    async fn payment(&mut self, t: &Payment) -> TxnResult;
    async fn order_status(&mut self, t: &OrderStatus) -> TxnResult;
    async fn delivery(&mut self, t: &Delivery) -> TxnResult;
    async fn stock_level(&mut self, t: &StockLevel) -> TxnResult;
}
