//! Benchmarks: the TPC-C harness and micro-benchmarks (issues 3 and 8).
//! Nothing is implemented here yet; the crate exists so the workspace layout
//! matches docs/ARCHITECTURE.md.
