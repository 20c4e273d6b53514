//! Wire types for everything that crosses nodes: coalesced Raft messages
//! (tagged with their group id) and forwarded client requests.
//!
//! Generated from `proto/ordo.proto` by tonic-prost-build + protox at build time.
//!
//! Dependency rule: the bottom of the workspace; depends on tonic and prost
//! only. Payloads are opaque bytes here, owned by the layer that sends them.

// Generated code: the one place a lint is allowed outside the workspace's
// `[workspace.lints]` table, since we do not write it.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("ordo.v1");
}

pub use v1::node_client::NodeClient;
pub use v1::node_server::{Node, NodeServer};
pub use v1::*;
