//! The gateway's half of the transaction protocol, in one place: given a
//! compiled program or a multi-vShard statement, find its participants,
//! reconnoitre what no key bounds ([`recon`]), run it on its one vShard's
//! leader or order it through the sequencer and wait for the participants
//! that write to apply it ([`outcome`]), and return the client's result.
//!
//! Compiling SQL into programs is the SQL layer's job; this module takes
//! programs and knows nothing of SQL text beyond what programs carry.

mod outcome;
mod recon;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ordo_expr::{ExecError, ExecResult};
use ordo_metrics::{seconds_since, SqlMetrics, TxnPath};

use crate::constants::RECON_ATTEMPTS_MAX;
use crate::rpc::Router;
use crate::txn::locks::{active_participants, lock_set};
use crate::txn::program::{StmtOutput, TxnProgram};
use crate::txn::statement::{MultiShardStatement, SequencedInput};

pub use recon::ReconStats;

/// Runs transactions and multi-vShard statements for this node's clients.
pub struct Gateway {
    router: Arc<Router>,
    /// How this gateway's reconnaissances went.
    recon: ReconStats,
    /// Transactions by path (`GET /metrics`).
    metrics: SqlMetrics,
}

impl Gateway {
    pub fn new(router: Arc<Router>, metrics: SqlMetrics) -> Gateway {
        Gateway { router, recon: ReconStats::default(), metrics }
    }

    /// How this gateway's reconnaissances went, for operators.
    pub fn recon_stats(&self) -> &ReconStats {
        &self.recon
    }

    /// Runs `program` as one transaction; the outputs of its statements.
    /// An attempt ordered with reconnoitred keys that went stale before its
    /// position is reconnoitred and ordered again; the last attempt goes
    /// without reconnaissance: it locks and scans whole tables, but nothing
    /// can make it stale.
    pub async fn run_program(&self, program: TxnProgram) -> ExecResult<Vec<StmtOutput>> {
        let start = Instant::now();
        let (path, outputs) = self.run_attempts(program).await;
        if let Some(path) = path {
            self.metrics.transaction(path, outputs.is_ok(), seconds_since(start));
        }
        outputs
    }

    /// [`Gateway::run_program`]'s attempts; the path the last one took
    /// (`None`: it touches no vShard).
    async fn run_attempts(&self, mut program: TxnProgram) -> (Option<TxnPath>, ExecResult<Vec<StmtOutput>>) {
        let mut attempt = 0;
        loop {
            let reconnoitred = attempt < RECON_ATTEMPTS_MAX && recon::reconnoitre(&self.router, &mut program).await;
            if reconnoitred {
                self.recon.ordered.fetch_add(1, Ordering::Relaxed);
            } else {
                if attempt == RECON_ATTEMPTS_MAX {
                    self.recon.gave_up.fetch_add(1, Ordering::Relaxed);
                }
                recon::clear(&mut program);
            }
            match self.execute(&program).await {
                (_, Err(ExecError::StaleReconnaissance(m))) if reconnoitred => {
                    tracing::debug!(attempt, "reconnaissance went stale: {m}");
                    self.recon.stale.fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Runs one autocommit statement over several vShards atomically:
    /// ordered by the sequencer, each participant does its part, and all
    /// commit only if every part succeeds. Returns the rows affected.
    pub async fn run_statement(&self, statement: MultiShardStatement, participants: BTreeSet<u32>) -> ExecResult<u64> {
        let participants: Vec<u32> = participants.into_iter().collect();
        let input = SequencedInput::Statement(statement);
        let start = Instant::now();
        let outputs = outcome::sequenced(&self.router, input, participants.clone(), participants).await;
        self.metrics.transaction(TxnPath::CrossShard, outputs.is_ok(), seconds_since(start));
        Ok(outputs?.iter().map(|o| o.rows_affected).sum())
    }

    /// Runs a compiled program: on its one participant's leader, else
    /// ordered by the sequencer; also says which.
    async fn execute(&self, program: &TxnProgram) -> (Option<TxnPath>, ExecResult<Vec<StmtOutput>>) {
        // The vShards it locks rows in are the ones that take part; every
        // participant derives the same locks from the program.
        let locks = lock_set(program, self.router.vshards());
        let participants: Vec<u32> = locks.keys().copied().collect();
        match participants.as_slice() {
            [] => (None, Ok(vec![StmtOutput::default(); program.statements.len()])),
            [only] => (Some(TxnPath::SingleShard), self.router.run_program(*only, program.clone()).await),
            _ => {
                // Passive participants change nothing and apply only after
                // the active ones: the result is visible once those applied.
                let active = active_participants(&locks, &participants);
                let input = SequencedInput::Txn(program.clone());
                (Some(TxnPath::CrossShard), outcome::sequenced(&self.router, input, participants, active).await)
            }
        }
    }
}
