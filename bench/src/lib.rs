//! OrdoDB's benchmark library: the TPC-C harness ([`tpcc`]), the smallest
//! operations side by side with PostgreSQL ([`basics`]), the small
//! [`target::Target`] trait the micro-benchmarks send requests through,
//! [`cpu`], the CPU each system spends on a measured window, and
//! [`stages`], where OrdoDB's time went by its `/metrics` histograms.
//! The `ordo-bench` binary wraps them in subcommands; cluster tests call
//! the TPC-C harness directly.
//!
//! Dependency rule: drives OrdoDB over HTTP and PostgreSQL over its wire
//! protocol; depends on no OrdoDB crate but the `tests` harness (to start a
//! cluster), so both databases are measured as a client sees them.

pub mod basics;
pub mod cpu;
pub mod stages;
pub mod target;
pub mod tpcc;
