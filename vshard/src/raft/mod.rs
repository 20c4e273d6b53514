//! The one module that knows openraft. Everything above it talks to Raft
//! groups through [`Consensus`] (see `group.rs`), so an openraft upgrade
//! touches only this directory.

mod codec;
mod group;
mod log_store;
mod network;
mod state_machine;
mod types;

pub use group::{wait_for_leader, Consensus, ConsensusError, GroupConfig, GroupStatus, RaftGroup};
pub use network::{ForwardError, PeerTransport, Transport, GRPC_MESSAGE_BYTES_MAX};
pub use state_machine::{applied_index_at, ApplyContext, GroupLogic};
pub use types::RaftKind;
