//! `ordo-chaos`: starts a real cluster of `ordo` processes, runs a
//! workload against it while a seeded nemesis kills, pauses and partitions
//! nodes, then heals everything and checks: the recorded history for
//! anomalies ([`check`]), every acknowledged write present, every node
//! healthy, every group's replicas equal (`verify`).
//!
//! - [`check`]: the checkers (list-append à la Elle, registers, sets,
//!   counters, bank), pure functions of a history;
//! - [`nemesis`]: the faults and their seeded schedule;
//! - [`workload`]: the list-append clients that record the history;
//! - [`others`]: the register, set, counter and bank clients beside them;
//! - [`run`]: one run, start to verdict.
//!
//! Dependency rule: talks to the cluster through `ordo-tests` (HTTP and
//! process control) only; depends on no OrdoDB crate.

pub mod check;
pub mod nemesis;
pub mod others;
pub mod run;
pub mod workload;

pub use run::{run, Config, Verdict};
