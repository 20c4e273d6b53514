//! Garbage collection: outcome records and epochs once every vShard has
//! completed them ([`outcomes`]), and row versions no query can read any
//! more ([`versions`]).

pub mod outcomes;
pub mod versions;
