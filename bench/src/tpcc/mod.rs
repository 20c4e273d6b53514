//! The TPC-C harness (issue 8), under construction: so far the random
//! inputs of the specification ([`random`]). The workload, the targets
//! (OrdoDB over HTTP, PostgreSQL interactive and PL/pgSQL) and the
//! `prepare`/`run`/`check`/`compare` subcommands come next.

pub mod random;
