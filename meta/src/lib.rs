//! The meta group: the catalog (tables, columns, primary and partition keys)
//! replicated to every node, plus the value types and encodings the catalog
//! defines. Placement is computed from the static node list for now (see
//! [`placement`]); membership changes will move it into this group.
//!
//! Dependency rule: depends on `ordo-raft` (group logic, codec, group ids)
//! only; knows nothing of rows in vShards, epochs or SQL text.

pub mod catalog;
pub mod command;
pub mod datum;
pub mod leadership;
pub mod logic;
pub mod placement;
