//! History checkers for the fault-injection harness.
//!
//! The harness records what clients asked for and what they were told; these checkers decide
//! whether some correct execution of the database could have produced it. They share
//! [`history::OpKind`]: `Ok` was acknowledged, `Fail` definitely did not happen, and `Info` (a
//! timeout, a lost connection) may or may not have happened and is never an error by itself.
//!
//! - [`list_append`]: Elle-style isolation checking of list-append transactions (G0 .. G2,
//!   duplicates, lost appends, strict serializability).
//! - [`register`]: linearizability of single-key read/write/compare-and-set registers.
//! - [`set`]: lost and unexpected elements of a grow-only set, and counter bounds.
//! - [`bank`]: conservation of the total across bank accounts.
//!
//! Checkers never panic on a malformed history: problems in the history itself are reported
//! as harness errors next to the database's anomalies.

pub mod bank;
pub mod history;
pub mod list_append;
pub mod register;
pub mod set;

pub use history::{Mop, Op, OpKind};
pub use list_append::{Anomaly, Report};
pub use register::{Linearizability, RegF, RegOp};
