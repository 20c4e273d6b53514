//! OrdoDB's benchmark library: the TPC-C harness ([`tpcc`]) and the small
//! [`target::Target`] trait the micro-benchmarks send requests through.
//! The `ordo-bench` binary wraps them in subcommands; cluster tests call
//! the TPC-C harness directly.

pub mod target;
pub mod tpcc;
