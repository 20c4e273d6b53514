//! The SQL layer: parses PostgreSQL-dialect SQL, executes DDL and DML by
//! routing them to the vShards that own the rows, and plans queries with
//! DataFusion over one [`provider::OrdoTable`] per table (one scan partition
//! per vShard, primary-key lookups pushed down to a single vShard).
//!
//! Entry point: [`SqlEngine::execute`].

pub mod ddl;
mod determinism;
pub mod dml;
pub mod engine;
pub mod provider;
pub mod result;
pub mod txn;

pub use engine::SqlEngine;
pub use result::StatementResult;
