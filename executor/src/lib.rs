//! Runs transactions on the vShards that own their rows: what every node's
//! leaders serve, how requests reach them, how sequenced (cross-shard)
//! transactions are scheduled and executed without two-phase commit, and
//! the gateway's client of that protocol.
//!
//! Modules, lowest first (each uses only those above it in this list):
//! - [`constants`]: every limit of the executor, defined once;
//! - `codec`: the encoding of records and messages;
//! - [`txn`]: compiled programs and multi-vShard statements, their locks,
//!   the deterministic interpreter, participants' records (no networking);
//! - [`rpc`]: the wire types, the [`Router`] that delivers a request to its
//!   group's leader from any node, its typed client, the epoch fence;
//! - `sequenced`: what this node knows of sequenced positions (the board
//!   its leaders share) and where its schedulers read epochs from;
//! - `serve`: the [`LeaderExecutor`], which runs requests on this node's
//!   leaders, one file per kind (reads, writes, positions, group-level);
//! - `scheduling`: each vShard leader's scheduler, which takes the epochs in
//!   order and runs the vShard's part of each cross-shard transaction;
//! - [`gateway`]: the client half of the protocol (participants,
//!   reconnaissance, sequencing, outcomes); [`gc`]: collection of records,
//!   epochs and row versions; [`verify`]: replica checksums;
//! - `untrusted`: every decoder of peer and stored bytes at once, for
//!   fuzzing ([`decode_untrusted`]).
//!
//! Dependency rule: below `ordo-sql`; depends on the scheduler (lock table),
//! expr, meta, vshard, sequencer and raft crates. It must not parse SQL
//! statements (only the expressions programs carry) or know the HTTP API.

pub mod constants;
pub mod gateway;
pub mod gc;
pub mod rpc;
pub mod txn;
pub mod verify;

mod codec;
mod scheduling;
mod sequenced;
mod serve;
mod untrusted;

pub use codec::{decode, encode};
pub use gateway::{Gateway, ReconStats};
pub use ordo_expr::{ExecError, ExecResult};
pub use rpc::{LocalServer, Router};
pub use scheduling::spawn_schedulers;
pub use sequenced::{EpochSource, LocalEpochs, SchedulerStat};
pub use serve::LeaderExecutor;
pub use untrusted::decode_untrusted;
