//! Transactions: the statements of one request compiled into a
//! [`TxnProgram`], its participant vShards found, and the program run —
//! on the one vShard's leader when it has one participant, else ordered by
//! the sequencer and executed by every participant (see
//! `ordo_executor::sequenced`).
//!
//! Values pass between statements by name: a statement that returns rows
//! (`SELECT`, `... RETURNING`) binds each named output column `c` of its
//! first row (NULL if none) to `$c`, which later statements use like a
//! parameter. `now()` / `current_timestamp` is the transaction's timestamp
//! (the epoch's, for cross-shard transactions).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::{
    visit_expressions, visit_expressions_mut, Expr, FunctionArguments, Query, SelectItem, SetExpr, Statement, TableFactor, Value,
};
use ordo_executor::arrow::param_sql;
use ordo_executor::coerce::decimal_to_string;
use ordo_executor::eval::ident;
use ordo_executor::locks::lock_set;
use futures::StreamExt;
use ordo_executor::program::{
    ProgStatement, Recon, Returning, StmtOutput, TxnProgram, TxnResult, PROGRAM_STATEMENTS_MAX, RECON_KEYS_MAX,
};
use ordo_executor::request::{encode, Param, ShardRequest, ShardResponse, MultiShardStatement};
use ordo_executor::sequenced::{active_participants, SequencedInput, TxnRecord};
use ordo_executor::{ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_sequencer::EpochInput;
use ordo_vshard::routing::{vshard_group, SEQUENCER_GROUP};
use serde_json::Value as Json;

use crate::engine::{object_name, SqlEngine};
use crate::result::{Column, StatementResult};

/// How long a gateway waits for a sequenced transaction's outcome.
pub const OUTCOME_WAIT_MS: u64 = 60_000;

/// Runs `statements` as one transaction (`commit == false`: ROLLBACK —
/// everything is checked and compiled, nothing runs).
pub async fn transaction(
    engine: &SqlEngine,
    statements: &[Statement],
    params: &[Param],
    commit: bool,
) -> ExecResult<Vec<StatementResult>> {
    let mut program = compile(engine, statements, params).await?;
    if !commit {
        return Ok(vec![StatementResult::affected(0); statements.len()]);
    }
    let stats = &engine.shared().recon;
    let mut attempt = 0;
    let outputs = loop {
        // The last attempt goes without reconnaissance: it locks and scans
        // whole tables, but nothing can make it stale.
        let reconnoitred = attempt < RECON_ATTEMPTS_MAX && reconnoitre(engine, &mut program).await;
        if reconnoitred {
            stats.ordered.fetch_add(1, Ordering::Relaxed);
        } else {
            if attempt == RECON_ATTEMPTS_MAX {
                stats.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            clear_recon(&mut program);
        }
        match execute(engine, &program).await {
            Err(ExecError::StaleReconnaissance(m)) if reconnoitred => {
                tracing::debug!(attempt, "reconnaissance went stale: {m}");
                stats.stale.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
            }
            done => break done?,
        }
    };
    if outputs.len() != statements.len() {
        return Err(ExecError::Internal(format!("{} outputs for {} statements", outputs.len(), statements.len())));
    }
    Ok(outputs.into_iter().map(to_result).collect())
}

/// Runs a compiled program: on its one participant's leader, else ordered
/// by the sequencer.
async fn execute(engine: &SqlEngine, program: &TxnProgram) -> ExecResult<Vec<StmtOutput>> {
    // The vShards it locks rows in are the ones that take part; every
    // participant derives the same locks from the program.
    let locks = lock_set(program, engine.shared().vshards);
    let participants: Vec<u32> = locks.keys().copied().collect();
    Ok(match participants.len() {
        0 => vec![StmtOutput::default(); program.statements.len()],
        1 => {
            let v = *participants.first().expect("one participant");
            match engine.shared().router.call(vshard_group(v), &ShardRequest::Program(program.clone())).await? {
                ShardResponse::Outputs(o) => o,
                other => return Err(ExecError::Internal(format!("unexpected reply {other:?}"))),
            }
        }
        _ => {
            // Passive participants change nothing and apply only after the
            // active ones: the result is visible once the active ones applied.
            let active = active_participants(&locks, &participants);
            sequenced(engine, SequencedInput::Txn(program.clone()), participants, active).await?
        }
    })
}

/// Reconnoitred attempts of a transaction: a second one follows a row
/// that came to match in between; after that (a table whose matching rows
/// keep changing) it runs locking whole tables, which cannot go stale.
const RECON_ATTEMPTS_MAX: usize = 2;
/// vShards asked at once during a reconnaissance.
const RECON_FANOUT: usize = 16;

/// Reconnoitres every UPDATE/DELETE of `program` whose WHERE clause no key
/// bounds (see [`Recon`]): finds the keys it matches now in every vShard,
/// so the program is ordered with those keys' locks rather than the whole
/// table's. Whether any statement got one; a statement whose
/// reconnaissance fails or finds too much keeps none.
async fn reconnoitre(engine: &SqlEngine, program: &mut TxnProgram) -> bool {
    let vshards = engine.shared().vshards;
    if vshards < 2 {
        // One vShard: the program runs on its leader, which scans locally.
        return false;
    }
    let params = program.params.clone();
    let mut any = false;
    for st in &mut program.statements {
        let ProgStatement::Modify { table, assignments, delete, selection: Some(selection), recon, .. } = st else { continue };
        *recon = None;
        if !reconnoitrable(table, selection, &params, vshards) {
            continue;
        }
        let request = ShardRequest::Reconnoitre {
            table: table.clone(),
            assignments: assignments.clone(),
            delete: *delete,
            selection: selection.clone(),
            params: params.clone(),
        };
        let router = &engine.shared().router;
        let answers: Vec<ExecResult<ShardResponse>> = futures::stream::iter(0..vshards)
            .map(|v| router.call(vshard_group(v), &request))
            .buffered(RECON_FANOUT)
            .collect()
            .await;
        let mut found = Recon { versions: Vec::with_capacity(vshards as usize), keys: Vec::new() };
        let complete = answers.into_iter().zip(0..vshards).all(|(answer, v)| match answer {
            Ok(ShardResponse::Matches { version, keys }) if found.keys.len() + keys.len() <= RECON_KEYS_MAX => {
                found.versions.push(version);
                found.keys.extend(keys.into_iter().map(|k| (v, k)));
                true
            }
            Ok(ShardResponse::Matches { .. }) => false,
            Ok(other) => {
                tracing::warn!("unexpected reply to a reconnaissance: {other:?}");
                false
            }
            Err(e) => {
                tracing::debug!(vshard = v, "reconnaissance failed, the statement locks its table: {e}");
                false
            }
        });
        if complete {
            *recon = Some(found);
            any = true;
        }
    }
    any
}

/// Whether a reconnaissance can stand in for `selection`'s table lock: no
/// key bounds it (else its lock is narrow already) and it uses only the
/// client's parameters (values of earlier statements and the timestamp
/// are known only when the program runs).
fn reconnoitrable(table: &TableDef, selection: &str, params: &[Param], vshards: u32) -> bool {
    let Ok(sel) = ordo_executor::eval::parse_expr(selection) else { return false };
    if !matches!(ordo_executor::eval::target(table, Some(&sel), params, vshards), ordo_executor::eval::Target::All) {
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

fn clear_recon(program: &mut TxnProgram) {
    for st in &mut program.statements {
        if let ProgStatement::Modify { recon, .. } = st {
            *recon = None;
        }
    }
}

/// Runs one autocommit statement over several vShards atomically: ordered
/// by the sequencer, each participant does its part, and all commit only if
/// every part succeeds. Returns the rows affected.
pub async fn statement(engine: &SqlEngine, statement: MultiShardStatement, participants: BTreeSet<u32>) -> ExecResult<u64> {
    let participants: Vec<u32> = participants.into_iter().collect();
    let outputs = sequenced(engine, SequencedInput::Statement(statement), participants.clone(), participants).await?;
    Ok(outputs.iter().map(|o| o.rows_affected).sum())
}

/// Orders `input` through the sequencer for `participants` (ascending) and
/// waits until the `waited` ones (the lowest first) have applied it;
/// returns the lowest participant's outputs.
async fn sequenced(
    engine: &SqlEngine,
    input: SequencedInput,
    participants: Vec<u32>,
    waited: Vec<u32>,
) -> ExecResult<Vec<StmtOutput>> {
    let router = &engine.shared().router;
    let input = EpochInput { participants: participants.clone(), program: encode(&input) };
    let pos = match router.call_once(SEQUENCER_GROUP, &ShardRequest::Sequence(input)).await? {
        ShardResponse::Sequenced { pos, .. } => pos,
        other => return Err(ExecError::Internal(format!("unexpected reply {other:?}"))),
    };
    // From here the outcome is decided (the epoch is committed); waiting
    // for every participant that writes makes the transaction visible on
    // all of them before the client hears of it.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(OUTCOME_WAIT_MS);
    let lowest = participants[0];
    let waits = waited.iter().map(|&v| async move {
        // Only the lowest participant's record holds the client's result.
        let request = ShardRequest::Outcome { pos, record: v == lowest };
        loop {
            match router.call(vshard_group(v), &request).await {
                Ok(ShardResponse::Outcome { applied: true, record }) => return Ok(record),
                Ok(ShardResponse::Outcome { applied: false, .. }) => {}
                Ok(other) => return Err(ExecError::Internal(format!("unexpected reply {other:?}"))),
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ExecError::Unavailable(format!(
                    "transaction at epoch {} is ordered but vShard {v} has not applied it yet; its outcome is unknown",
                    pos.epoch
                )));
            }
        }
    });
    let records = futures::future::try_join_all(waits).await?;
    let record = records
        .into_iter()
        .next()
        .flatten()
        // Only after `--collect-lag-ms` (well past OUTCOME_WAIT_MS): the
        // transaction was applied everywhere, its result is gone.
        .ok_or_else(|| {
            ExecError::Unavailable(format!(
                "the transaction at epoch {} was applied, but its outcome was already collected; its result is unknown",
                pos.epoch
            ))
        })?;
    let record: TxnRecord = ordo_executor::request::decode(&record)?;
    match record.result {
        Some(TxnResult::Committed(outputs)) => Ok(outputs),
        Some(TxnResult::Aborted(e)) => Err(e),
        None => Err(ExecError::Internal(format!("the lowest participant of epoch {} recorded no result", pos.epoch))),
    }
}

/// Compiles `statements` into a program (its participants follow from its
/// locks, see `execute`).
pub async fn compile(engine: &SqlEngine, statements: &[Statement], params: &[Param]) -> ExecResult<TxnProgram> {
    if statements.len() > PROGRAM_STATEMENTS_MAX {
        return Err(ExecError::ProgramLimitExceeded(format!("at most {PROGRAM_STATEMENTS_MAX} statements per transaction")));
    }
    let mut vars = Vars { base: params.len(), names: BTreeMap::new() };
    let mut program = Vec::with_capacity(statements.len());
    for st in statements {
        let mut st = st.clone();
        vars.rewrite(&mut st)?;
        let compiled = match &st {
            Statement::Insert(ins) => {
                let (table, targets, rows) = crate::dml::insert_shape(engine, ins).await?;
                let rows = rows.iter().map(|r| r.iter().map(|e| e.to_string()).collect()).collect();
                let returning = ins.returning.as_ref().map(|items| vars.returning(&table, items));
                ProgStatement::Insert { table, targets, rows, returning }
            }
            Statement::Update(up) => {
                let (_, req) = crate::dml::plan_update(engine, up, params).await?;
                let returning = up.returning.as_ref().map(|items| vars.returning(&req.table, items));
                ProgStatement::Modify {
                    table: req.table,
                    assignments: req.assignments,
                    delete: false,
                    selection: req.selection,
                    returning,
                    recon: None,
                }
            }
            Statement::Delete(del) => {
                let (_, req) = crate::dml::plan_delete(engine, del, params).await?;
                let returning = del.returning.as_ref().map(|items| vars.returning(&req.table, items));
                ProgStatement::Modify {
                    table: req.table,
                    assignments: Vec::new(),
                    delete: true,
                    selection: req.selection,
                    returning,
                    recon: None,
                }
            }
            Statement::Query(q) => {
                let (table, selection, items) = single_table_select(engine, q).await?;
                let binds = vars.bind_items(&table, &items);
                ProgStatement::Select { table, sql: q.to_string(), selection: selection.map(|s| s.to_string()), binds }
            }
            other => {
                return Err(ExecError::FeatureNotSupported(format!(
                    "only INSERT, UPDATE, DELETE and single-table SELECT are supported inside a transaction, got: {}",
                    other.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
                )))
            }
        };
        program.push(compiled);
    }
    Ok(TxnProgram { statements: program, params: params.to_vec(), vars: 1 + vars.names.len() })
}

/// `SELECT ... FROM one_table [WHERE ...]`: the table, the WHERE clause and
/// the select list.
async fn single_table_select(engine: &SqlEngine, q: &Query) -> ExecResult<(TableDef, Option<Expr>, Vec<SelectItem>)> {
    let unsupported = || {
        ExecError::FeatureNotSupported(
            "a SELECT inside a transaction must read one table (no joins, subqueries or set operations)".into(),
        )
    };
    if q.with.is_some() {
        return Err(unsupported());
    }
    let SetExpr::Select(sel) = q.body.as_ref() else { return Err(unsupported()) };
    let [from] = sel.from.as_slice() else { return Err(unsupported()) };
    if !from.joins.is_empty() {
        return Err(unsupported());
    }
    let TableFactor::Table { name, .. } = &from.relation else { return Err(unsupported()) };
    let table = engine.shared().table(&object_name(name)?).await?;
    if let Some(s) = &sel.selection {
        crate::dml::refuse_subqueries(s)?;
    }
    Ok((table, sel.selection.clone(), sel.projection.clone()))
}

/// Names bound by earlier statements and the slots they live in.
struct Vars {
    /// Number of client parameters; slot `base` is the timestamp.
    base: usize,
    names: BTreeMap<String, usize>,
}

const TIMESTAMP_FUNCTIONS: [&str; 5] = ["now", "current_timestamp", "localtimestamp", "transaction_timestamp", "statement_timestamp"];

/// Whether `e` is `now()` or one of its synonyms, without arguments.
fn is_timestamp_call(e: &Expr) -> bool {
    match e {
        Expr::Function(f) => {
            f.name.0.len() == 1
                && (matches!(f.args, FunctionArguments::None)
                    || matches!(&f.args, FunctionArguments::List(l) if l.args.is_empty()))
                && TIMESTAMP_FUNCTIONS.contains(&f.name.to_string().to_lowercase().as_str())
        }
        _ => false,
    }
}

/// Replaces `now()` & co. in `st` with the placeholder of parameter slot
/// `slot` (0-based, right after the client's parameters), so every vShard
/// evaluates the one timestamp the executor binds there; whether there was
/// any. A client placeholder past its parameters is refused rather than
/// read as that slot.
pub(crate) fn bind_timestamp(st: &mut Statement, slot: usize) -> ExecResult<bool> {
    let (mut stray, mut found) = (None, false);
    // Expressions are visited after their operands, so a placeholder put in
    // here is never looked at again as the client's.
    let _ = visit_expressions_mut(st, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &v.value {
                if p.trim_start_matches('$').parse::<usize>().is_ok_and(|n| n > slot) {
                    stray = Some(p.clone());
                }
            }
        }
        if is_timestamp_call(e) {
            *e = Vars::placeholder(slot);
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    match stray {
        Some(p) if found => Err(ExecError::InvalidParameter(format!("there is no parameter {p}: {slot} given"))),
        _ => Ok(found),
    }
}

impl Vars {
    fn placeholder(slot: usize) -> Expr {
        Expr::value(Value::Placeholder(format!("${}", slot + 1)))
    }

    /// `$name` -> `$n` of its slot; now() & co. -> the timestamp slot.
    fn rewrite(&self, st: &mut Statement) -> ExecResult<()> {
        let mut problem = None;
        let _ = visit_expressions_mut(st, |e| {
            match e {
                Expr::Value(v) => {
                    if let Value::Placeholder(p) = &v.value {
                        let name = p.trim_start_matches('$');
                        if name.parse::<usize>().is_err() {
                            match self.names.get(&name.to_lowercase()) {
                                Some(&slot) => *e = Self::placeholder(slot),
                                None => {
                                    problem = Some(ExecError::InvalidParameter(format!(
                                        "${name} is not bound: no earlier statement of this transaction returned a column named {name}"
                                    )));
                                    return ControlFlow::Break(());
                                }
                            }
                        }
                    }
                }
                e if is_timestamp_call(e) => *e = Self::placeholder(self.base),
                _ => {}
            }
            ControlFlow::Continue(())
        });
        problem.map_or(Ok(()), Err)
    }

    fn slot(&mut self, name: String) -> usize {
        let next = self.base + 1 + self.names.len();
        *self.names.entry(name).or_insert(next)
    }

    /// The slot of every named output column of a select list.
    fn bind_items(&mut self, table: &TableDef, items: &[SelectItem]) -> Vec<Option<usize>> {
        let mut out = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(Expr::Identifier(i)) => out.push(Some(self.slot(ident(i)))),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p)) => {
                    out.push(p.last().map(|i| self.slot(ident(i))));
                }
                SelectItem::ExprWithAlias { alias, .. } => out.push(Some(self.slot(ident(alias)))),
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    for c in &table.columns {
                        out.push(Some(self.slot(c.name.clone())));
                    }
                }
                SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAliases { .. } => out.push(None),
            }
        }
        out
    }

    fn returning(&mut self, table: &TableDef, items: &[SelectItem]) -> Returning {
        let binds = self.bind_items(table, items);
        Returning { items: items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "), binds }
    }
}

fn to_result(o: StmtOutput) -> StatementResult {
    StatementResult {
        columns: o.columns.into_iter().map(|(name, type_name)| Column { name, type_name }).collect(),
        rows: o.rows.into_iter().map(|r| r.iter().map(json).collect()).collect(),
        rows_affected: o.rows_affected,
    }
}

/// A value as the HTTP API renders it (NUMERIC as an exact string, dates
/// and timestamps as ISO text), like query results.
fn json(p: &Param) -> Json {
    match p {
        Param::Null => Json::Null,
        Param::Bool(b) => Json::Bool(*b),
        Param::Int(i) => (*i).into(),
        Param::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or_else(|| Json::String(f.to_string())),
        Param::Text(s) => Json::String(s.clone()),
        Param::Decimal { value, scale, .. } => Json::String(decimal_to_string(*value, *scale)),
        Param::Date(_) | Param::Timestamp(_) => {
            let lit = param_sql(p);
            // `DATE '2024-01-02'` / `TIMESTAMP '...'`: the quoted part.
            Json::String(lit.split('\'').nth(1).unwrap_or_default().to_string())
        }
    }
}
