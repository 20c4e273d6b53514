//! Pure evaluation of SQL values and expressions, with no networking and no
//! storage: what the gateway, the leaders and every participant of a
//! sequenced transaction evaluate alike, so it must be deterministic (no
//! clock, no randomness, checked arithmetic).
//!
//! What it provides:
//! - [`ExecError`]: every error a client can see, with its SQLSTATE
//!   ([`ExecError::sqlstate`]); DataFusion's errors mapped onto it.
//! - [`Param`]: parameter values; [`coerce`]: values to column types.
//! - [`constant`]: constant folding (literals, parameters, casts);
//!   [`parse`]: one expression from SQL text, identifiers as PostgreSQL folds them.
//! - [`fast`]: compiled scalar expressions of the OLTP fast path;
//!   [`select`]: SELECT shapes answered without a plan (ORDER BY + LIMIT, aggregates).
//! - [`target`]: the rows a WHERE clause can touch (one row, one vShard, all).
//! - [`arrow`]: rows <-> Arrow record batches, parameters <-> scalars.
//! - [`session`]: the DataFusion settings of every plan (PostgreSQL's reading of SQL);
//!   [`checked`]: integer arithmetic in plans that fails on overflow (22003).
//!
//! Dependency rule: depends on `ordo-meta` (types, rows), `ordo-vshard`
//! (routing, scan errors) and DataFusion's parser and Arrow. It must not
//! depend on Raft, the network, the scheduler or the executor.

pub mod arrow;
pub mod checked;
pub mod checked_sum;
pub mod coerce;
pub mod constant;
pub mod constants;
pub mod depth;
pub mod error;
pub mod fast;
pub mod param;
pub mod parse;
pub mod select;
pub mod session;
pub mod target;

pub use coerce::{coerce, Input};
pub use error::{from_datafusion, storage_error, ExecError, ExecResult};
pub use param::{datum_param, Param};
pub use target::Target;
