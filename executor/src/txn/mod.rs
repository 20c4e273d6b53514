//! Transactions as the executor runs them, with no networking: the
//! compiled program ([`program`]) or multi-vShard statement ([`statement`])
//! the gateway builds and the sequencer orders, the locks each needs per
//! vShard ([`locks`]), the deterministic interpreter that runs a program
//! over a view of its rows ([`interp`]), and the record a participant keeps
//! of what it read ([`record`]).

pub mod interp;
pub mod locks;
pub mod program;
pub mod record;
pub mod statement;
