//! Execution of statements on the vShards that own their rows.
//!
//! - [`request`]: what a gateway asks a group's leader to do ([`ShardRequest`])
//!   and the answer; these travel in forwarded gRPC calls.
//! - [`leader`]: runs a request on the leader of its group: reads after a
//!   read barrier, computes the write set under the vShard's lock, proposes it.
//! - [`router`]: finds a group's leader from any node and follows leader hints.
//! - [`fence`]: orders single-shard requests after every cross-shard
//!   transaction committed before they arrived (real-time order).
//! - [`verify`]: compares content hashes of every replica of every group.
//! - [`program`]: transaction programs (what the sequencer orders);
//!   [`interp`]: runs one deterministically over a view of its rows;
//!   [`eval`]: constant expressions and key targets without a query plan.
//! - [`sequenced`]: per-vShard schedulers that take the sequencer's epochs in
//!   order and execute cross-shard transactions without two-phase commit.
//! - [`epochs`]: where schedulers read epochs (this node's sequencer replica,
//!   or the sequencer leader's).
//! - [`collect`]: drops outcome records and epochs once every vShard has
//!   completed them; [`versions`]: drops row versions no query can read.
//! - [`arrow`]: rows <-> Arrow record batches; [`coerce`]: values -> column types.
//!
//! [`ShardRequest`]: request::ShardRequest

pub mod arrow;
pub mod coerce;
pub mod collect;
pub mod epochs;
pub mod error;
pub mod eval;
pub mod fast;
pub mod fast_select;
pub mod fence;
pub mod interp;
pub mod leader;
pub mod locks;
pub mod program;
pub mod request;
pub mod router;
pub mod sequenced;
pub mod verify;
pub mod versions;

pub use error::{ExecError, ExecResult};
