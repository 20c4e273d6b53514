//! The meta group: the catalog (tables, columns, primary and partition keys)
//! replicated to every node, plus the value types and encodings the catalog
//! defines. Placement is computed from the static node list for now (see
//! [`placement`]); membership changes will move it into this group.

pub mod catalog;
pub mod command;
pub mod datum;
pub mod logic;
pub mod placement;
