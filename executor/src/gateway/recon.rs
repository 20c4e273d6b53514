//! Reconnaissance (Calvin's OLLP): before ordering a transaction, find the
//! keys each UPDATE/DELETE that no key bounds matches now, so it is ordered
//! with those keys' locks rather than its whole table's (see
//! [`crate::txn::program::Recon`]).

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::sql::sqlparser::ast::{visit_expressions, Expr, Value};
use futures::StreamExt;
use ordo_expr::{ExecResult, Param, Target};
use ordo_meta::catalog::TableDef;

use crate::constants::{RECON_FANOUT_MAX, RECON_KEYS_MAX};
use crate::rpc::{Matches, Router};
use crate::txn::program::{ProgStatement, Recon, TxnProgram};

/// Counts of a gateway's reconnaissances, for operators and tests.
#[derive(Debug, Default)]
pub struct ReconStats {
    /// Attempts of transactions ordered with at least one reconnoitred
    /// statement (a transaction retried after a stale one counts again).
    pub ordered: AtomicU64,
    /// Of those, aborted because a table changed after its reconnaissance.
    pub stale: AtomicU64,
    /// Transactions that ran without reconnaissance after it went stale
    /// `RECON_ATTEMPTS_MAX` times in a row.
    pub gave_up: AtomicU64,
}

impl ReconStats {
    pub fn to_json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({"ordered": get(&self.ordered), "stale": get(&self.stale), "gave_up": get(&self.gave_up)})
    }
}

/// Reconnoitres every UPDATE/DELETE of `program` whose WHERE clause no key
/// bounds (see [`Recon`]): finds the keys it matches now in every vShard,
/// so the program is ordered with those keys' locks rather than the whole
/// table's. Whether any statement got one; a statement whose
/// reconnaissance fails or finds too much keeps none.
pub(super) async fn reconnoitre(router: &Router, program: &mut TxnProgram) -> bool {
    let vshards = router.vshards();
    if vshards < 2 {
        // One vShard: the program runs on its leader, which scans locally.
        return false;
    }
    let params = program.params.clone();
    let mut any = false;
    for st in &mut program.statements {
        let ProgStatement::Modify { table, assignments, delete, selection: Some(selection), recon, .. } = st else {
            continue;
        };
        *recon = None;
        if !reconnoitrable(table, selection, &params, vshards) {
            continue;
        }
        let answers: Vec<ExecResult<Matches>> = futures::stream::iter(0..vshards)
            .map(|v| {
                router.reconnoitre(v, table.clone(), assignments.clone(), *delete, selection.clone(), params.clone())
            })
            .buffered(RECON_FANOUT_MAX)
            .collect()
            .await;
        if let Some(found) = gather(answers) {
            *recon = Some(found);
            any = true;
        }
    }
    any
}

/// Every vShard's answer, in vShard order, as one reconnaissance; `None` if
/// one failed or they found more than `RECON_KEYS_MAX` keys in all.
fn gather(answers: Vec<ExecResult<Matches>>) -> Option<Recon> {
    let mut found = Recon { versions: Vec::with_capacity(answers.len()), keys: Vec::new() };
    for (v, answer) in (0u32..).zip(answers) {
        match answer {
            Ok(m) if found.keys.len() + m.keys.len() <= RECON_KEYS_MAX => {
                found.versions.push(m.version);
                found.keys.extend(m.keys.into_iter().map(|k| (v, k)));
            }
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(vshard = v, "reconnaissance failed, the statement locks its table: {e}");
                return None;
            }
        }
    }
    Some(found)
}

/// Whether a reconnaissance can stand in for `selection`'s table lock: no
/// key bounds it (else its lock is narrow already) and it uses only the
/// client's parameters (values of earlier statements and the timestamp
/// are known only when the program runs).
fn reconnoitrable(table: &TableDef, selection: &str, params: &[Param], vshards: u32) -> bool {
    let Ok(sel) = ordo_expr::parse::parse_expr(selection) else { return false };
    if !matches!(ordo_expr::target::target(table, Some(&sel), params, vshards), Target::All) {
        return false;
    }
    let mut only_client_params = true;
    let _ = visit_expressions(&sel, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if !p.trim_start_matches('$').parse::<usize>().is_ok_and(|n| n >= 1 && n <= params.len()) {
                    only_client_params = false;
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    });
    only_client_params
}

/// Drops every statement's reconnaissance: the program locks whole tables.
pub(super) fn clear(program: &mut TxnProgram) {
    for st in &mut program.statements {
        if let ProgStatement::Modify { recon, .. } = st {
            *recon = None;
        }
    }
}
