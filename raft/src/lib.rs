//! The Raft plumbing every group shares — meta, sequencer and vShards — and
//! the only crate that knows openraft. Everything above talks to a group
//! through [`Consensus`] and gives its commands meaning with a
//! [`GroupLogic`], so an openraft upgrade touches only this crate.
//!
//! What it provides:
//! - [`engine`]: the node's one RocksDB and its group-commit WAL syncer;
//! - [`keys`]: the key layout (every key prefixed by its group and section);
//! - [`groups`]: the well-known group ids (meta, sequencer, vShard `v`);
//! - [`codec`]: the one bincode encoding every crate stores and sends;
//! - [`hash`]: FNV-1a, the stable hash of placement and replica checksums;
//! - [`identity`]: who may call a node (cluster id and secret, peers, each
//!   peer's incarnation), checked on every call;
//! - [`requests`]: exactly-once client requests (records of applied ids);
//! - Raft groups ([`RaftGroup`], [`Consensus`]), their log and state-machine
//!   storage over the engine, and the per-node [`Transport`] that carries
//!   every group over one connection per peer.
//!
//! Dependency rule: depends on `ordo-proto` and libraries only. It must not
//! know what any group's commands mean (no catalog, rows, epochs or SQL).

pub mod codec;
pub mod constants;
pub mod engine;
pub mod groups;
pub mod hash;
pub mod identity;
pub mod keys;
pub mod requests;

mod entry_codec;
mod group;
mod log_store;
mod network;
mod state_machine;
mod types;

pub use entry_codec::decode_untrusted;
pub use group::{wait_for_leader, Consensus, ConsensusError, GroupConfig, GroupHost, GroupStatus, Queued, RaftGroup};
pub use keys::GroupId;
pub use network::{ForwardError, PeerTransport, Transport};
pub use requests::{RequestId, RequestRecord, RequestReply};
pub use state_machine::{applied_index_at, ApplyContext, GroupLogic};
pub use types::RaftKind;
