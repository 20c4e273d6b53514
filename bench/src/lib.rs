//! OrdoDB's benchmark library: the TPC-C harness ([`tpcc`]) and the small
//! [`target::Target`] trait the micro-benchmarks send requests through.
//! The `ordo-bench` binary wraps them in subcommands; cluster tests call
//! the TPC-C harness directly.
//!
//! Dependency rule: drives OrdoDB over HTTP and PostgreSQL over its wire
//! protocol; depends on no OrdoDB crate but the `tests` harness (to start a
//! cluster), so both databases are measured as a client sees them.

pub mod target;
pub mod tpcc;
