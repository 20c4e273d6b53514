//! The SQL layer: parses PostgreSQL-dialect SQL, turns DDL into catalog
//! commands, INSERT/UPDATE/DELETE into writes of the vShards that own the
//! rows (or multi-vShard statements), transactions into programs for the
//! executor's gateway, and plans queries with DataFusion over one
//! `OrdoTable` provider per table (one scan partition per vShard,
//! primary-key lookups pushed down to a single vShard).
//!
//! Entry point: [`SqlEngine::execute`]. Limits are in [`constants`].
//!
//! Dependency rule: above `ordo-executor` (it sends everything through the
//! executor's `Router` and `Gateway`), below the node. It must not talk to
//! Raft groups or storage directly, nor know the HTTP API.

pub mod constants;
mod ddl;
mod determinism;
mod dml;
mod engine;
mod memory;
mod names;
mod point;
mod provider;
mod result;
mod txn;

pub use engine::SqlEngine;
pub use memory::QueryLimits;
pub use result::{Column, StatementResult};
