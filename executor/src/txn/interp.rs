//! Runs a [`TxnProgram`] over a [`TxnView`] of the rows it reads, and
//! returns its outputs and its write set by vShard.
//!
//! Determinism: the result depends only on the program, the timestamp
//! passed in and what the view returns. Rows are visited in key order
//! (BTreeMaps, sorted scans), DataFusion runs single-partitioned over an
//! in-memory table, parameters are substituted as literals, and `now()`
//! was rewritten by the gateway to the timestamp slot. Nothing here reads
//! a clock, a random source or hash-map order.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;

use futures::{stream, StreamExt};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{visit_expressions_mut, Expr, GroupByExpr, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{decode_row, encode_key, encode_row, Datum};
use ordo_vshard::shard::{decode_table_version, row_key, table_prefix, table_version_key, RowWrite};

use ordo_expr::arrow::{arrow_type, input_at, param_at, param_sql, pg_type_name, rows_to_batch, table_schema};
use ordo_expr::fast;
use ordo_expr::fast::eval_scalar;
use ordo_expr::parse::{column_ref, ident, parse_expr};
use ordo_expr::select as fast_select;
use ordo_expr::target::{target, vshard_of_key, Target};
use ordo_expr::{coerce, Input};
use ordo_expr::{datum_param, Param};
use ordo_expr::{from_datafusion, ExecError, ExecResult};
use ordo_scheduler::LockMode;

use crate::constants::{PROGRAM_READ_BYTES_MAX, RECON_READS_CONCURRENT, STATEMENT_ROWS_MAX};
use crate::txn::locks::{covered, LockSet};
use crate::txn::program::{ProgStatement, Recon, Returning, StmtOutput, TxnProgram};
/// The column `rows_with_index` adds: each row's index in its input.
/// The rows an UPDATE/DELETE changes, by index into its input: the new
/// row, or `None` for a deletion.
pub type Changes = Vec<(usize, Option<Vec<Datum>>)>;

pub const ROW_INDEX_COLUMN: &str = "__ordo_row";

/// The query that plans an UPDATE/DELETE over an in-memory table of its
/// candidate rows (see [`rows_with_index`]): for each matching row, its
/// index and the assignments' new values.
pub fn modify_query(table: &TableDef, assignments: &[(usize, String)], selection: Option<&str>) -> String {
    let mut select = format!("SELECT \"{ROW_INDEX_COLUMN}\"");
    for (_, expr) in assignments {
        select.push_str(&format!(", ({expr})"));
    }
    select.push_str(&format!(" FROM \"{}\"", table.name));
    if let Some(sel) = selection {
        select.push_str(&format!(" WHERE ({sel})"));
    }
    select
}

/// The rows a transaction reads, as of its place in the order.
#[async_trait::async_trait]
pub trait TxnView: Send + Sync {
    /// The row stored under `key` (table prefix ++ encoded pk) in `vshard`.
    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>>;
    /// Every `(key, row)` of `vshard` whose key starts with `prefix`, in key order.
    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>>;
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct RunOutput {
    pub outputs: Vec<StmtOutput>,
    /// Net writes per vShard, in key order.
    pub writes: BTreeMap<u32, Vec<RowWrite>>,
}

/// Runs `program`. `locks` (its lock set, see [`crate::txn::locks`]) bounds what
/// it may read and write: anything outside is a `40001` — never expected,
/// since the set is derived from the same program, but checked because a
/// read outside the locks would silently break isolation. Any error
/// aborts the whole program.
pub async fn run(
    program: &TxnProgram,
    now_us: i64,
    vshards: u32,
    locks: Option<&LockSet>,
    view: &dyn TxnView,
) -> ExecResult<RunOutput> {
    let mut params = program.params.clone();
    params.resize(program.params.len() + program.vars.max(1), Param::Null);
    params[program.params.len()] = Param::Timestamp(now_us);
    let mut run = Run {
        view,
        vshards,
        locks,
        overlay: BTreeMap::new(),
        params,
        ctx: SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1)),
        read_bytes: std::sync::atomic::AtomicUsize::new(0),
    };
    let mut outputs = Vec::with_capacity(program.statements.len());
    for st in &program.statements {
        outputs.push(run.statement(st).await?);
    }
    let mut writes: BTreeMap<u32, Vec<RowWrite>> = BTreeMap::new();
    for ((v, key), value) in run.overlay {
        writes.entry(v).or_default().push(RowWrite { key, value });
    }
    Ok(RunOutput { outputs, writes })
}

struct Run<'a> {
    view: &'a dyn TxnView,
    vshards: u32,
    locks: Option<&'a LockSet>,
    /// Writes so far by (vShard, key); `None` deletes. Later statements read through it.
    overlay: BTreeMap<(u32, Vec<u8>), Option<Vec<u8>>>,
    /// Client parameters, then variable slots.
    params: Vec<Param>,
    ctx: SessionContext,
    /// Bytes read from the view so far (bounded by `PROGRAM_READ_BYTES_MAX`).
    read_bytes: std::sync::atomic::AtomicUsize,
}

/// A row a statement may touch: its vShard, key and decoded values.
struct Candidate {
    vshard: u32,
    key: Vec<u8>,
    row: Vec<Datum>,
}

impl Run<'_> {
    fn check(&self, vshard: u32, start: &[u8], end: Option<&[u8]>, mode: LockMode) -> ExecResult<()> {
        match self.locks {
            Some(l) if !covered(l, vshard, start, end, mode) => Err(ExecError::SerializationFailure(format!(
                "the transaction reached rows of vShard {vshard} outside the locks it was ordered with; retry it"
            ))),
            _ => Ok(()),
        }
    }

    async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
        let (row, bytes) = self.get_uncounted(vshard, key).await?;
        self.count_read(bytes)?;
        Ok(row)
    }

    /// A row as the transaction sees it, and the bytes read from storage
    /// for it, which the caller counts. Reads made concurrently are
    /// counted afterwards in a fixed order, so which one goes over the
    /// bound does not depend on which answer came first.
    async fn get_uncounted(&self, vshard: u32, key: &[u8]) -> ExecResult<(Option<Vec<u8>>, usize)> {
        let mut end = key.to_vec();
        end.push(0);
        self.check(vshard, key, Some(&end), LockMode::Read)?;
        match self.overlay.get(&(vshard, key.to_vec())) {
            Some(v) => Ok((v.clone(), 0)),
            None => {
                let row = self.view.get(vshard, key).await?;
                let bytes = key.len() + row.as_ref().map_or(0, |r| r.len());
                Ok((row, bytes))
            }
        }
    }

    /// Counts `bytes` read from storage against the program's bound.
    fn count_read(&self, bytes: usize) -> ExecResult<()> {
        let total = self.read_bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
        if total > PROGRAM_READ_BYTES_MAX {
            return Err(crate::txn::program::read_limit_exceeded());
        }
        Ok(())
    }

    async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let (rows, bytes) = self.scan_uncounted(vshard, prefix).await?;
        self.count_read(bytes)?;
        Ok(rows)
    }

    /// [`Run::get_uncounted`] for every row under `prefix`.
    async fn scan_uncounted(&self, vshard: u32, prefix: &[u8]) -> ExecResult<(Vec<(Vec<u8>, Vec<u8>)>, usize)> {
        let end = ordo_raft::keys::prefix_end(prefix);
        self.check(vshard, prefix, end.as_deref(), LockMode::Read)?;
        let stored = self.view.scan(vshard, prefix).await?;
        let bytes = crate::txn::program::read_bytes(&stored);
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = stored.into_iter().collect();
        for ((_, k), v) in self
            .overlay
            .range((vshard, prefix.to_vec())..)
            .take_while(|((s, k), _)| *s == vshard && k.starts_with(prefix))
        {
            match v {
                Some(v) => rows.insert(k.clone(), v.clone()),
                None => rows.remove(k),
            };
        }
        Ok((rows.into_iter().collect(), bytes))
    }

    async fn candidates(&self, table: &TableDef, t: &Target) -> ExecResult<Vec<Candidate>> {
        let mut raw = Vec::new();
        match t {
            Target::Point { vshard, pk } => {
                let key = row_key(table.id, pk);
                if let Some(v) = self.get(*vshard, &key).await? {
                    raw.push((*vshard, key, v));
                }
            }
            Target::Shard { vshard, part } => {
                let prefix = row_key(table.id, part);
                raw.extend(self.scan(*vshard, &prefix).await?.into_iter().map(|(k, r)| (*vshard, k, r)));
            }
            Target::All => {
                for v in 0..self.vshards {
                    raw.extend(self.scan(v, &table_prefix(table.id)).await?.into_iter().map(|(k, r)| (v, k, r)));
                }
            }
        }
        raw.into_iter()
            .map(|(vshard, key, bytes)| {
                let row = decode_row(&bytes).map_err(|e| ExecError::Internal(e.to_string()))?;
                Ok(Candidate { vshard, key, row })
            })
            .collect()
    }

    /// The rows a reconnoitred statement may touch, in (vShard, key) order
    /// like a scan of every vShard. In a vShard where the table's version
    /// is the one the reconnaissance saw, nothing changed since: the keys it
    /// found and the rows this transaction wrote itself. Elsewhere the
    /// vShard's rows are read and `selection` evaluated over them: what
    /// matches now must be among the keys found (their write locks are all
    /// the statement holds) or this transaction's own writes, else the
    /// reconnaissance is stale — `StaleReconnaissance` on every participant
    /// alike, since all read the same versions and rows at their position.
    async fn reconnoitred(
        &self,
        table: &TableDef,
        shape: &ModifyShape<'_>,
        recon: &Recon,
    ) -> ExecResult<Vec<Candidate>> {
        if recon.versions.len() != self.vshards as usize {
            return Err(ExecError::StaleReconnaissance(format!(
                "the reconnaissance saw {} vShards, the cluster has {}",
                recon.versions.len(),
                self.vshards
            )));
        }
        // Independent reads go RECON_READS_CONCURRENT at a time; results are
        // taken, and their bytes counted, in order, and the first error in
        // that order kept: as if made one after another, whichever answer
        // came first.
        let version_key = table_version_key(table.id);
        let reads: Vec<_> = (0..self.vshards).map(|v| self.get_uncounted(v, &version_key)).collect();
        let versions: Vec<_> = stream::iter(reads).buffered(RECON_READS_CONCURRENT).collect().await;
        let mut changed = Vec::new();
        for (v, read) in (0..self.vshards).zip(versions) {
            let (stored, bytes) = read?;
            self.count_read(bytes)?;
            if decode_table_version(stored.as_deref()) != recon.versions[v as usize] {
                changed.push(v);
            }
        }
        let found: BTreeSet<(u32, Vec<u8>)> = recon.keys.iter().cloned().collect();
        let prefix = table_prefix(table.id);
        let mut out = Vec::new();
        let scans: Vec<_> = changed.iter().map(|&v| self.scan_uncounted(v, &prefix)).collect();
        let scans: Vec<_> = stream::iter(scans).buffered(RECON_READS_CONCURRENT).collect().await;
        for (&vshard, scanned) in changed.iter().zip(scans) {
            let (scanned, bytes) = scanned?;
            self.count_read(bytes)?;
            let rows = decode_rows(&scanned)?;
            let matches = matching(table, shape, &self.params, &rows).await?;
            let mut rows: Vec<Option<Vec<Datum>>> = rows.into_iter().map(Some).collect();
            for i in matches {
                let key = &scanned[i].0;
                let at = (vshard, key.clone());
                if !found.contains(&at) && !self.overlay.contains_key(&at) {
                    return Err(ExecError::StaleReconnaissance(format!(
                        "a row of table \"{}\" in vShard {vshard} came to match the statement after its keys were found; retry it",
                        table.name
                    )));
                }
                out.push(Candidate { vshard, key: key.clone(), row: rows[i].take().expect("each index once") });
            }
        }
        let keys: BTreeSet<(u32, Vec<u8>)> = found
            .into_iter()
            .chain(self.overlay.keys().filter(|(_, k)| k.starts_with(&prefix)).cloned())
            .filter(|(v, _)| !changed.contains(v))
            .collect();
        let reads: Vec<_> = keys.iter().map(|(v, k)| self.get_uncounted(*v, k)).collect();
        let rows: Vec<_> = stream::iter(reads).buffered(RECON_READS_CONCURRENT).collect().await;
        for ((vshard, key), read) in keys.into_iter().zip(rows) {
            let (row, read_bytes) = read?;
            self.count_read(read_bytes)?;
            if let Some(bytes) = row {
                let row = decode_row(&bytes).map_err(|e| ExecError::Internal(e.to_string()))?;
                out.push(Candidate { vshard, key, row });
            }
        }
        out.sort_by(|a, b| (a.vshard, &a.key).cmp(&(b.vshard, &b.key)));
        Ok(out)
    }

    fn write(&mut self, vshard: u32, key: Vec<u8>, value: Option<Vec<u8>>) -> ExecResult<()> {
        let mut end = key.clone();
        end.push(0);
        self.check(vshard, &key, Some(&end), LockMode::Write)?;
        self.overlay.insert((vshard, key), value);
        Ok(())
    }

    async fn statement(&mut self, st: &ProgStatement) -> ExecResult<StmtOutput> {
        match st {
            ProgStatement::Insert { table, targets, rows, returning } => {
                self.insert(table, targets, rows, returning.as_ref()).await
            }
            ProgStatement::Modify { table, assignments, delete, selection, returning, recon } => {
                let shape = (assignments.as_slice(), *delete, selection.as_deref());
                self.modify(table, shape, recon.as_ref(), returning.as_ref()).await
            }
            ProgStatement::Select { table, sql, selection, binds } => {
                let sel = selection.as_deref().map(parse_expr).transpose()?;
                let t = target(table, sel.as_ref(), &self.params, self.vshards);
                let rows: Vec<Vec<Datum>> = self.candidates(table, &t).await?.into_iter().map(|c| c.row).collect();
                if let Some(out) = self.select_fast(table, sql, sel.as_ref(), &rows, binds)? {
                    return Ok(out);
                }
                let batch = rows_to_batch(table, &table_schema(table), &rows)?;
                let out = self.query(table, batch, sql).await?;
                self.output(&out, binds, None)
            }
        }
    }

    /// `INSERT INTO table (targets) VALUES rows`: fails on a key that
    /// exists or repeats.
    async fn insert(
        &mut self,
        table: &TableDef,
        targets: &[usize],
        rows: &[Vec<String>],
        returning: Option<&Returning>,
    ) -> ExecResult<StmtOutput> {
        let mut inserted = Vec::with_capacity(rows.len());
        let mut seen = BTreeSet::new();
        for cells in rows {
            let mut inputs = vec![Input::Null; table.columns.len()];
            for (text, &ci) in cells.iter().zip(targets) {
                inputs[ci] = eval_scalar(&parse_expr(text)?, &self.params)?;
            }
            let mut row = Vec::with_capacity(table.columns.len());
            for (input, col) in inputs.into_iter().zip(&table.columns) {
                row.push(coerce(input, col)?);
            }
            let pk: Vec<Datum> = table.primary_key.iter().map(|&i| row[i].clone()).collect();
            let vshard = vshard_of_key(table, &pk, self.vshards);
            let key = row_key(table.id, &encode_key(&pk.iter().collect::<Vec<_>>()));
            if !seen.insert(key.clone()) || self.get(vshard, &key).await?.is_some() {
                return Err(ExecError::UniqueViolation(table.name.clone()));
            }
            self.write(vshard, key, Some(encode_row(&row)))?;
            inserted.push(row);
        }
        let n = inserted.len() as u64;
        self.returning(table, returning, &inserted, n).await
    }

    /// UPDATE (`assignments`) or DELETE (`delete`) of the rows `selection`
    /// matches among the candidates its keys (or reconnaissance) allow.
    async fn modify(
        &mut self,
        table: &TableDef,
        (assignments, delete, selection): (&[(usize, String)], bool, Option<&str>),
        recon: Option<&Recon>,
        returning: Option<&Returning>,
    ) -> ExecResult<StmtOutput> {
        let sel = selection.map(parse_expr).transpose()?;
        let candidates = match (recon, selection) {
            (Some(r), Some(selection)) => {
                let shape = ModifyShape { assignments, delete, selection };
                self.reconnoitred(table, &shape, r).await?
            }
            _ => {
                let t = target(table, sel.as_ref(), &self.params, self.vshards);
                self.candidates(table, &t).await?
            }
        };
        let changed = match self.modify_fast(table, assignments, delete, sel.as_ref(), &candidates)? {
            Some(changed) => changed,
            None => self.modify_planned(table, assignments, delete, selection, &candidates).await?,
        };
        let n = changed.len() as u64;
        self.returning(table, returning, &changed, n).await
    }

    /// An UPDATE/DELETE the fast path does not cover, planned by DataFusion
    /// over the candidates; the rows it wrote (deleted rows for DELETE).
    async fn modify_planned(
        &mut self,
        table: &TableDef,
        assignments: &[(usize, String)],
        delete: bool,
        selection: Option<&str>,
        candidates: &[Candidate],
    ) -> ExecResult<Vec<Vec<Datum>>> {
        let select = modify_query(table, assignments, selection);
        let rows: Vec<Vec<Datum>> = candidates.iter().map(|c| c.row.clone()).collect();
        let batch = rows_with_index(table, &rows)?;
        let out = self.query(table, batch, &select).await?;
        let mut changed = Vec::new();
        for b in &out {
            let idx = row_indexes(b)?;
            for r in 0..b.num_rows() {
                let c = &candidates[idx.value(r) as usize];
                if delete {
                    self.write(c.vshard, c.key.clone(), None)?;
                    changed.push(c.row.clone());
                } else {
                    let mut row = c.row.clone();
                    for (j, (ci, _)) in assignments.iter().enumerate() {
                        row[*ci] = coerce(input_at(b.column(j + 1).as_ref(), r)?, &table.columns[*ci])?;
                    }
                    self.write(c.vshard, c.key.clone(), Some(encode_row(&row)))?;
                    changed.push(row);
                }
                if changed.len() > STATEMENT_ROWS_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!(
                        "one statement may change at most {STATEMENT_ROWS_MAX} rows"
                    )));
                }
            }
        }
        Ok(changed)
    }

    /// The output of a write statement: its count, and with RETURNING the
    /// list evaluated over the rows it wrote (deleted rows for DELETE).
    async fn returning(
        &mut self,
        table: &TableDef,
        returning: Option<&Returning>,
        rows: &[Vec<Datum>],
        affected: u64,
    ) -> ExecResult<StmtOutput> {
        let Some(r) = returning else {
            return Ok(StmtOutput { rows_affected: affected, ..Default::default() });
        };
        if let Some(items) = parse_items(&r.items).and_then(|items| plain_columns(&items, table)) {
            let mut out = self.plain_output(table, &items, rows.iter(), &r.binds)?;
            out.rows_affected = affected;
            return Ok(out);
        }
        let batch = rows_to_batch(table, &table_schema(table), rows)?;
        let out = self.query(table, batch, &format!("SELECT {} FROM \"{}\"", r.items, table.name)).await?;
        self.output(&out, &r.binds, Some(affected))
    }

    /// Result rows as an output; the first row's columns bind their slots
    /// (no row binds NULL).
    fn output(
        &mut self,
        batches: &[RecordBatch],
        binds: &[Option<usize>],
        affected: Option<u64>,
    ) -> ExecResult<StmtOutput> {
        let mut out = StmtOutput::default();
        if let Some(b) = batches.first() {
            out.columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| (f.name().clone(), pg_type_name(f.data_type()).to_string()))
                .collect();
        }
        for b in batches {
            for r in 0..b.num_rows() {
                if out.rows.len() >= STATEMENT_ROWS_MAX {
                    return Err(ExecError::ProgramLimitExceeded(format!(
                        "a statement inside a transaction may return at most {STATEMENT_ROWS_MAX} rows"
                    )));
                }
                out.rows.push(b.columns().iter().map(|c| param_at(c.as_ref(), r)).collect::<ExecResult<_>>()?);
            }
        }
        self.bind(&out, binds)?;
        out.rows_affected = affected.unwrap_or(out.rows.len() as u64);
        Ok(out)
    }

    /// UPDATE/DELETE without a query plan (see [`modify_fast`]): the
    /// changed rows (old ones for DELETE), or `None` for the DataFusion path.
    fn modify_fast(
        &mut self,
        table: &TableDef,
        assignments: &[(usize, String)],
        delete: bool,
        sel: Option<&Expr>,
        candidates: &[Candidate],
    ) -> ExecResult<Option<Vec<Vec<Datum>>>> {
        let rows: Vec<&Vec<Datum>> = candidates.iter().map(|c| &c.row).collect();
        let Some(changes) = modify_fast(table, assignments, delete, sel, &self.params, &rows)? else { return Ok(None) };
        let mut changed = Vec::with_capacity(changes.len());
        for (i, new) in changes {
            let c = &candidates[i];
            match new {
                Some(row) => {
                    self.write(c.vshard, c.key.clone(), Some(encode_row(&row)))?;
                    changed.push(row);
                }
                None => {
                    self.write(c.vshard, c.key.clone(), None)?;
                    changed.push(c.row.clone());
                }
            }
        }
        Ok(Some(changed))
    }

    /// A SELECT of plain columns with a simple WHERE, no grouping, ordering
    /// or limit, without a query plan; `None` for anything else.
    fn select_fast(
        &mut self,
        table: &TableDef,
        sql: &str,
        sel: Option<&Expr>,
        rows: &[Vec<Datum>],
        binds: &[Option<usize>],
    ) -> ExecResult<Option<StmtOutput>> {
        let Ok(mut parsed) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else { return Ok(None) };
        let Some(Statement::Query(q)) = parsed.pop() else { return Ok(None) };
        if q.fetch.is_some() || q.with.is_some() {
            return Ok(None);
        }
        let Some(order) = fast_select::order_column(q.order_by.as_ref(), table) else { return Ok(None) };
        let Some(limit) = fast_select::limit(q.limit_clause.as_ref()) else { return Ok(None) };
        let SetExpr::Select(s) = q.body.as_ref() else { return Ok(None) };
        let simple = s.distinct.is_none()
            && s.having.is_none()
            && matches!(&s.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
        if !simple {
            return Ok(None);
        }
        let items = plain_columns(&s.projection, table);
        let aggs = match items {
            Some(_) => None,
            None => match fast_select::aggregates(&s.projection, table) {
                Some(a) if order.is_none() && limit.is_none() => Some(a),
                _ => return Ok(None),
            },
        };
        let Some(mut kept) = self.kept_fast(table, sel, rows)? else { return Ok(None) };
        if let Some(aggs) = aggs {
            return self.aggregate_fast(table, &aggs, &kept, binds);
        }
        let items = items.expect("plain columns when not aggregates");
        if let Some((ci, desc)) = order {
            if fast_select::sort(&mut kept, ci, desc, table).is_none() {
                return Ok(None);
            }
        }
        if let Some(n) = limit {
            kept.truncate(n);
        }
        self.plain_output(table, &items, kept.into_iter(), binds).map(Some)
    }

    /// The rows the WHERE clause keeps, by the fast evaluator; `None` when
    /// it cannot evaluate the clause.
    fn kept_fast<'r>(
        &self,
        table: &TableDef,
        sel: Option<&Expr>,
        rows: &'r [Vec<Datum>],
    ) -> ExecResult<Option<Vec<&'r Vec<Datum>>>> {
        let pred = match sel {
            Some(e) => match fast::compile(e, table, &self.params) {
                Some(p) => Some(p),
                None => return Ok(None),
            },
            None => None,
        };
        let mut kept = Vec::new();
        for row in rows {
            let keep = match &pred {
                Some(p) => fast::keeps(p, row, table),
                None => Ok(true),
            };
            match fast::sql(keep)? {
                None => return Ok(None),
                Some(true) => kept.push(row),
                Some(false) => {}
            }
        }
        Ok(Some(kept))
    }

    /// One row of aggregates over `kept`; `None` when one is not covered.
    fn aggregate_fast(
        &mut self,
        table: &TableDef,
        aggs: &[(String, fast_select::Agg)],
        kept: &[&Vec<Datum>],
        binds: &[Option<usize>],
    ) -> ExecResult<Option<StmtOutput>> {
        let mut out = StmtOutput::default();
        let mut row = Vec::with_capacity(aggs.len());
        for (name, agg) in aggs {
            let Some(ty) = fast_select::type_name(*agg, table) else { return Ok(None) };
            let Some(v) = fast_select::evaluate(*agg, kept, table)? else { return Ok(None) };
            out.columns.push((name.clone(), ty.to_string()));
            row.push(v);
        }
        out.rows.push(row);
        self.bind(&out, binds)?;
        out.rows_affected = 1;
        Ok(Some(out))
    }

    /// Binds each output column's slot to its value in the first row (NULL
    /// when there is no row).
    fn bind(&mut self, out: &StmtOutput, binds: &[Option<usize>]) -> ExecResult<()> {
        for (ci, slot) in binds.iter().enumerate() {
            if let Some(slot) = *slot {
                let value = out.rows.first().and_then(|r| r.get(ci)).cloned().unwrap_or(Param::Null);
                let p = self
                    .params
                    .get_mut(slot)
                    .ok_or_else(|| ExecError::Internal(format!("variable slot {slot} out of range")))?;
                *p = value;
            }
        }
        Ok(())
    }

    /// Output rows of plain column items, with their bindings.
    fn plain_output<'r>(
        &mut self,
        table: &TableDef,
        items: &[(String, usize)],
        rows: impl Iterator<Item = &'r Vec<Datum>>,
        binds: &[Option<usize>],
    ) -> ExecResult<StmtOutput> {
        let mut out = StmtOutput {
            columns: items
                .iter()
                .map(|(name, ci)| (name.clone(), pg_type_name(&arrow_type(&table.columns[*ci].ty)).to_string()))
                .collect(),
            ..Default::default()
        };
        for row in rows {
            if out.rows.len() >= STATEMENT_ROWS_MAX {
                return Err(ExecError::ProgramLimitExceeded(format!(
                    "a statement inside a transaction may return at most {STATEMENT_ROWS_MAX} rows"
                )));
            }
            out.rows.push(items.iter().map(|(_, ci)| datum_param(&row[*ci], &table.columns[*ci].ty)).collect());
        }
        self.bind(&out, binds)?;
        out.rows_affected = out.rows.len() as u64;
        Ok(out)
    }

    /// Runs `sql` (placeholders bound to literals) over `batch` registered
    /// as `table`.
    async fn query(&self, table: &TableDef, batch: RecordBatch, sql: &str) -> ExecResult<Vec<RecordBatch>> {
        let sql = bind_placeholders(sql, &self.params)?;
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(from_datafusion)?;
        self.ctx.deregister_table(table.name.as_str()).map_err(from_datafusion)?;
        self.ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(from_datafusion)?;
        let df = self.ctx.sql(&sql).await.map_err(from_datafusion)?;
        df.collect().await.map_err(from_datafusion)
    }
}

/// An UPDATE/DELETE as far as which rows it changes: its assignments
/// decide, with the WHERE clause, whether it is evaluated without a query
/// plan (see [`modify_fast`]) or by DataFusion.
pub struct ModifyShape<'a> {
    pub assignments: &'a [(usize, String)],
    pub delete: bool,
    pub selection: &'a str,
}

/// The indexes of the `rows` of `table` that the statement of `shape` (its
/// placeholders bound to `params`) changes, evaluated as a program's
/// UPDATE or DELETE evaluates them — the fast path when the statement
/// takes it, else DataFusion over the WHERE clause: what a reconnaissance
/// finds is what the statement would find over the same rows.
pub async fn matching(
    table: &TableDef,
    shape: &ModifyShape<'_>,
    params: &[Param],
    rows: &[Vec<Datum>],
) -> ExecResult<Vec<usize>> {
    let selection = shape.selection;
    let sel = parse_expr(selection)?;
    let refs: Vec<&Vec<Datum>> = rows.iter().collect();
    if let Some(found) = modify_fast(table, shape.assignments, shape.delete, Some(&sel), params, &refs)? {
        return Ok(found.into_iter().map(|(i, _)| i).collect());
    }
    let sql = bind_placeholders(
        &format!("SELECT \"{ROW_INDEX_COLUMN}\" FROM \"{}\" WHERE ({selection})", table.name),
        params,
    )?;
    let batch = rows_with_index(table, rows)?;
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(from_datafusion)?;
    ctx.register_table(table.name.as_str(), Arc::new(mem)).map_err(from_datafusion)?;
    let out = ctx.sql(&sql).await.map_err(from_datafusion)?.collect().await.map_err(from_datafusion)?;
    let mut found = Vec::new();
    for b in &out {
        let idx = row_indexes(b)?;
        found.extend((0..b.num_rows()).map(|r| idx.value(r) as usize));
    }
    Ok(found)
}

/// Replaces every `$n` in `sql` by parameter `n` as a literal.
pub fn bind_placeholders(sql: &str, params: &[Param]) -> ExecResult<String> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| ExecError::Syntax(e.to_string()))?;
    let mut problem = None;
    for st in &mut statements {
        let _ = visit_expressions_mut(st, |e| {
            if let Expr::Value(v) = e {
                if let datafusion::sql::sqlparser::ast::Value::Placeholder(p) = &v.value {
                    let bound = p
                        .strip_prefix('$')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| params.get(n.wrapping_sub(1)))
                        .ok_or_else(|| ExecError::InvalidParameter(format!("there is no parameter {p}")))
                        .and_then(|param| parse_expr(&param_sql(param)));
                    match bound {
                        Ok(lit) => *e = Expr::Nested(Box::new(lit)),
                        Err(err) => {
                            problem = Some(err);
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            ControlFlow::Continue(())
        });
    }
    if let Some(e) = problem {
        return Err(e);
    }
    Ok(statements.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("; "))
}

/// The `ROW_INDEX_COLUMN` of a query's output batch over `rows_with_index`
/// (its first column).
pub fn row_indexes(batch: &RecordBatch) -> ExecResult<&Int64Array> {
    batch.column(0).as_any().downcast_ref::<Int64Array>().ok_or_else(|| ExecError::Internal("row index".into()))
}

/// Decodes stored `(key, row)` pairs' rows.
pub fn decode_rows(stored: &[(Vec<u8>, Vec<u8>)]) -> ExecResult<Vec<Vec<Datum>>> {
    stored.iter().map(|(_, v)| decode_row(v)).collect::<Result<_, _>>().map_err(|e| ExecError::Internal(e.to_string()))
}

/// The table's rows plus a trailing row-index column.
pub fn rows_with_index(table: &TableDef, rows: &[Vec<Datum>]) -> ExecResult<RecordBatch> {
    let schema = table_schema(table);
    let base = rows_to_batch(table, &schema, rows)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(ROW_INDEX_COLUMN, DataType::Int64, false));
    let mut cols: Vec<ArrayRef> = base.columns().to_vec();
    cols.push(Arc::new(Int64Array::from_iter_values(0..rows.len() as i64)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| ExecError::Internal(e.to_string()))
}

/// `a, b AS x, *` as select items.
fn parse_items(items: &str) -> Option<Vec<SelectItem>> {
    let mut parsed = Parser::parse_sql(&PostgreSqlDialect {}, &format!("SELECT {items}")).ok()?;
    match parsed.pop()? {
        Statement::Query(q) => match *q.body {
            SetExpr::Select(s) => Some(s.projection),
            _ => None,
        },
        _ => None,
    }
}

/// Output name and column of each item, when every item is a plain column
/// (or `*`).
fn plain_columns(items: &[SelectItem], table: &TableDef) -> Option<Vec<(String, usize)>> {
    let col = |e: &Expr| column_ref(e, table);
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let ci = col(e)?;
                out.push((table.columns[ci].name.clone(), ci));
            }
            SelectItem::ExprWithAlias { expr, alias } => out.push((ident(alias), col(expr)?)),
            SelectItem::Wildcard(opts) if opts.opt_exclude.is_none() && opts.opt_except.is_none() => {
                out.extend(table.columns.iter().enumerate().map(|(i, c)| (c.name.clone(), i)));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The changes of an UPDATE (`Some(new row)`) or DELETE (`None`) by index
/// into `rows`, computed without a query plan when the WHERE clause and
/// every assignment are simple (see [`ordo_expr::fast`]); `None` when they are
/// not, and the caller plans the statement with DataFusion instead.
pub fn modify_fast(
    table: &TableDef,
    assignments: &[(usize, String)],
    delete: bool,
    sel: Option<&Expr>,
    params: &[Param],
    rows: &[&Vec<Datum>],
) -> ExecResult<Option<Changes>> {
    let pred = match sel {
        Some(e) => match fast::compile(e, table, params) {
            Some(p) => Some(p),
            None => return Ok(None),
        },
        None => None,
    };
    let mut assigns = Vec::with_capacity(assignments.len());
    for (ci, text) in assignments {
        match fast::compile(&parse_expr(text)?, table, params) {
            Some(f) => assigns.push((*ci, f)),
            None => return Ok(None),
        }
    }
    let mut changes = Vec::new();
    for (i, old) in rows.iter().enumerate() {
        let keep = match &pred {
            Some(p) => fast::keeps(p, old, table),
            None => Ok(true),
        };
        match fast::sql(keep)? {
            None => return Ok(None),
            Some(false) => continue,
            Some(true) => {}
        }
        if delete {
            changes.push((i, None));
        } else {
            let mut row = (*old).clone();
            for (ci, f) in &assigns {
                let Some(v) = fast::sql(f.eval(old, table))? else { return Ok(None) };
                row[*ci] = coerce(fast::val_input(v), &table.columns[*ci])?;
            }
            changes.push((i, Some(row)));
        }
        if changes.len() > STATEMENT_ROWS_MAX {
            return Err(ExecError::ProgramLimitExceeded(format!(
                "one statement may change at most {STATEMENT_ROWS_MAX} rows"
            )));
        }
    }
    Ok(Some(changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ordo_meta::catalog::{ColumnDef, SqlType};
    use ordo_meta::datum::{encode_key, encode_row};

    fn table() -> TableDef {
        let col = |name: &str, ty| ColumnDef { name: name.into(), ty, nullable: false };
        TableDef {
            id: 1,
            name: "t".into(),
            columns: vec![col("id", SqlType::Int), col("body", SqlType::Text)],
            primary_key: vec![0],
            partition_len: 1,
        }
    }

    /// `rows` rows of 1 MiB each in vShard 0.
    struct Wide {
        rows: i64,
    }

    #[async_trait::async_trait]
    impl TxnView for Wide {
        async fn get(&self, _: u32, _: &[u8]) -> ExecResult<Option<Vec<u8>>> {
            Ok(None)
        }

        async fn scan(&self, vshard: u32, _: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
            let rows = if vshard == 0 { self.rows } else { 0 };
            Ok((0..rows)
                .map(|i| {
                    let key = row_key(1, &encode_key(&[&Datum::Int(i)]));
                    (key, encode_row(&[Datum::Int(i), Datum::Text("x".repeat(1 << 20))]))
                })
                .collect())
        }
    }

    /// Rows and table versions by (vShard, key); notes which vShards were
    /// scanned.
    struct Keyed {
        rows: BTreeMap<(u32, Vec<u8>), Vec<u8>>,
        scanned: parking_lot::Mutex<Vec<u32>>,
    }

    #[async_trait::async_trait]
    impl TxnView for Keyed {
        async fn get(&self, vshard: u32, key: &[u8]) -> ExecResult<Option<Vec<u8>>> {
            Ok(self.rows.get(&(vshard, key.to_vec())).cloned())
        }

        async fn scan(&self, vshard: u32, prefix: &[u8]) -> ExecResult<Vec<(Vec<u8>, Vec<u8>)>> {
            self.scanned.lock().push(vshard);
            let rows = self
                .rows
                .range((vshard, prefix.to_vec())..)
                .take_while(|((v, k), _)| *v == vshard && k.starts_with(prefix));
            Ok(rows.map(|((_, k), r)| (k.clone(), r.clone())).collect())
        }
    }

    const VSHARDS: u32 = 4;

    fn located(id: i64) -> (u32, Vec<u8>) {
        let pk = [Datum::Int(id)];
        (vshard_of_key(&table(), &pk, VSHARDS), row_key(1, &encode_key(&[&pk[0]])))
    }

    /// Rows 1 ('x') and 2 (`two`); table version 7 in every vShard but
    /// row 2's, where it is `two_version`.
    fn keyed(two: &str, two_version: u64) -> Keyed {
        let mut rows = BTreeMap::new();
        for (id, body) in [(1, "x"), (2, two)] {
            rows.insert(located(id), encode_row(&[Datum::Int(id), Datum::Text(body.into())]));
        }
        for v in 0..VSHARDS {
            let version = if v == located(2).0 { two_version } else { 7 };
            rows.insert((v, table_version_key(1)), version.to_be_bytes().to_vec());
        }
        Keyed { rows, scanned: Default::default() }
    }

    /// INSERT of row 100 ('x'), then `UPDATE t SET body = 'y' WHERE body =
    /// 'x' RETURNING id`, reconnoitred as having found row 1 at version 7.
    fn insert_then_update() -> TxnProgram {
        let recon = Recon { versions: vec![7; VSHARDS as usize], keys: vec![located(1)] };
        TxnProgram {
            statements: vec![
                ProgStatement::Insert {
                    table: table(),
                    targets: vec![0, 1],
                    rows: vec![vec!["100".into(), "'x'".into()]],
                    returning: None,
                },
                ProgStatement::Modify {
                    table: table(),
                    assignments: vec![(1, "'y'".into())],
                    delete: false,
                    selection: Some("body = 'x'".into()),
                    returning: Some(Returning { items: "id".into(), binds: vec![None] }),
                    recon: Some(recon),
                },
            ],
            params: Vec::new(),
            vars: 1,
        }
    }

    /// Runs `insert_then_update` within its locks: the ids it updated and
    /// the vShards it scanned.
    async fn run_reconnoitred(view: &Keyed) -> ExecResult<(Vec<i64>, Vec<u32>)> {
        assert_ne!(located(1).0, located(2).0, "rows 1 and 2 in different vShards");
        let program = insert_then_update();
        let locks = crate::txn::locks::lock_set(&program, VSHARDS);
        assert_eq!(locks.len(), VSHARDS as usize, "the table is read in every vShard");
        let out = run(&program, 0, VSHARDS, Some(&locks), view).await?;
        let mut ids: Vec<i64> = out.outputs[1]
            .rows
            .iter()
            .map(|r| match r[0] {
                Param::Int(i) => i,
                ref p => panic!("{p:?}"),
            })
            .collect();
        ids.sort();
        assert_eq!(out.outputs[1].rows_affected, ids.len() as u64);
        let written: BTreeSet<(u32, Vec<u8>)> =
            out.writes.iter().flat_map(|(v, ws)| ws.iter().map(|w| (*v, w.key.clone()))).collect();
        assert_eq!(written, ids.iter().map(|&i| located(i)).collect(), "writes are the rows updated");
        Ok((ids, view.scanned.lock().clone()))
    }

    #[tokio::test]
    async fn a_reconnoitred_update_of_an_unchanged_table_reads_the_keys_found_and_its_own_writes_only() {
        let (ids, scanned) = run_reconnoitred(&keyed("z", 7)).await.expect("runs within its locks");
        assert_eq!(ids, vec![1, 100], "the row found and the row inserted");
        assert!(scanned.is_empty(), "no vShard changed, none is scanned: {scanned:?}");
    }

    #[tokio::test]
    async fn a_vshard_whose_table_changed_is_checked_for_rows_that_came_to_match() {
        // Written since, still not matching: that vShard alone is re-read.
        let (ids, scanned) = run_reconnoitred(&keyed("w", 8)).await.expect("no new match");
        assert_eq!(ids, vec![1, 100]);
        assert_eq!(scanned, vec![located(2).0]);
        // Row 2 came to match: its write lock is not held, the statement
        // must not update it or skip it.
        let e = run_reconnoitred(&keyed("x", 8)).await.expect_err("row 2 came to match");
        assert!(matches!(e, ExecError::StaleReconnaissance(_)), "{e:?}");
        assert_eq!(e.sqlstate(), "40001");
        assert!(e.is_retryable());
    }

    #[tokio::test]
    async fn matching_agrees_with_and_without_a_query_plan() {
        let rows: Vec<Vec<Datum>> = ["x", "xy", "z"]
            .iter()
            .enumerate()
            .map(|(i, b)| vec![Datum::Int(i as i64), Datum::Text(b.to_string())])
            .collect();
        let delete = |selection| ModifyShape { assignments: &[], delete: true, selection };
        // Simple comparisons take the fast path; LIKE is planned.
        assert_eq!(
            matching(&table(), &delete("body = $1"), &[Param::Text("xy".into())], &rows).await.unwrap(),
            vec![1]
        );
        assert_eq!(matching(&table(), &delete("body LIKE 'x%'"), &[], &rows).await.unwrap(), vec![0, 1]);
        assert_eq!(matching(&table(), &delete("id >= 1 AND body <> 'q'"), &[], &rows).await.unwrap(), vec![1, 2]);
        // An assignment the fast path does not take sends the WHERE clause to
        // DataFusion, as the statement itself would.
        let assignments = [(1, "upper(body)".to_string())];
        let update = ModifyShape { assignments: &assignments, delete: false, selection: "id >= 1 AND body <> 'q'" };
        assert_eq!(matching(&table(), &update, &[], &rows).await.unwrap(), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_program_that_reads_more_than_its_bound_aborts() {
        let program = TxnProgram {
            statements: vec![ProgStatement::Select {
                table: table(),
                sql: "SELECT count(*) AS n FROM t".into(),
                selection: None,
                binds: vec![None],
            }],
            params: Vec::new(),
            vars: 1,
        };
        let out = run(&program, 0, 4, None, &Wide { rows: 8 }).await.expect("8 MiB is within the bound");
        assert_eq!(out.outputs[0].rows, vec![vec![Param::Int(8)]]);
        let e = run(&program, 0, 4, None, &Wide { rows: 17 }).await.expect_err("17 MiB is not");
        assert!(matches!(e, ExecError::ProgramLimitExceeded(_)), "{e:?}");
    }
}
