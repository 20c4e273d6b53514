//! Requests between nodes: the wire types ([`ShardRequest`] and its
//! answer), the [`Router`] that delivers a request to its group's leader
//! from any node (following leader hints), its typed client (one method
//! per request), and the epoch frontier that fences single-shard requests
//! ([`frontier`]).

mod client;
pub mod frontier;
mod request;
mod router;

pub use client::{Matches, Outcome, Pairs};
pub use request::{ShardRequest, ShardResponse};
pub use router::{LocalServer, Router};
