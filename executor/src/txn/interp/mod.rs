//! Runs a [`TxnProgram`] over a [`TxnView`] of the rows it reads, and
//! returns its outputs and its write set by vShard.
//!
//! Determinism: the result depends only on the program, the timestamp
//! passed in and what the view returns. Rows are visited in key order
//! (BTreeMaps, sorted scans), DataFusion runs single-partitioned over an
//! in-memory table, parameters are substituted as literals, and `now()`
//! was rewritten by the gateway to the timestamp slot. Nothing here reads
//! a clock, a random source or hash-map order.
//!
//! - `modify`: INSERT, UPDATE and DELETE statements of a program, and which
//!   rows an UPDATE/DELETE changes (the fast path or a DataFusion plan);
//! - `select`: SELECT and RETURNING outputs, the fast path for simple
//!   queries, and queries planned by DataFusion over in-memory rows;
//! - `rows`: rows as Arrow batches with a row-index column.

mod modify;
mod rows;
mod select;

use std::collections::{BTreeMap, BTreeSet};

use datafusion::prelude::SessionContext;
use futures::{stream, StreamExt};
use ordo_expr::arrow::{rows_to_batch, table_schema};
use ordo_expr::parse::parse_expr;
use ordo_expr::target::{target, Target};
use ordo_expr::Param;
use ordo_expr::{ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{decode_row, Datum};
use ordo_scheduler::LockMode;
use ordo_vshard::shard::{decode_table_version, row_key, table_prefix, table_version_key, RowWrite};

use crate::constants::{PROGRAM_READ_BYTES_MAX, RECON_READS_CONCURRENT};
use crate::txn::locks::{covered, LockSet};
use crate::txn::program::{ProgStatement, Recon, StmtOutput, TxnProgram};

pub use modify::{matching, modify_fast, modify_query, Changes, ModifyShape};
pub use rows::{decode_rows, row_indexes, rows_with_index, ROW_INDEX_COLUMN};

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

/// [`run`], with a panic while evaluating turned into an error. The same
/// program on the same rows panics alike on every participant and every
/// replay, so it becomes the same abort everywhere, instead of a task that
/// fails and is retried forever while its vShards wait behind it.
pub async fn run_guarded(
    program: &TxnProgram,
    now_us: i64,
    vshards: u32,
    locks: Option<&LockSet>,
    view: &dyn TxnView,
) -> ExecResult<RunOutput> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(run(program, now_us, vshards, locks, view)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            tracing::error!("a transaction's evaluation panicked (a bug; the transaction is aborted): {what:?}");
            // A fixed text: the record every participant stores must agree.
            Err(ExecError::Internal("the transaction's evaluation failed on an internal error; it was aborted".into()))
        }
    }
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
    // Fault injection: `FAILPOINTS=txn-evaluate=panic` (see docs/RELIABILITY.md).
    fail::fail_point!("txn-evaluate");
    let mut params = program.params.clone();
    params.resize(program.params.len() + program.vars.max(1), Param::Null);
    params[program.params.len()] = Param::Timestamp(now_us);
    let mut run = Run {
        view,
        vshards,
        locks,
        overlay: BTreeMap::new(),
        params,
        ctx: ordo_expr::session::context(),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::program::Returning;
    use ordo_expr::target::vshard_of_key;
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
