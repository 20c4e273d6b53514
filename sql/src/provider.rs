//! DataFusion's view of OrdoDB tables: a [`SchemaProvider`] over the
//! replicated catalog and a [`TableProvider`] per table whose scan reads
//! every vShard (one partition each) — or only the vShard a primary-key or
//! partition-key equality names, and there only the rows under the longest
//! bound leading part of the primary key.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use ordo_executor::{Gateway, Router};
use ordo_expr::arrow::{rows_to_batch, table_schema};
use ordo_expr::coerce::{coerce_type, Input};
use ordo_expr::{ExecError, ExecResult};
use ordo_meta::catalog::TableDef;
use ordo_meta::datum::{decode_row, encode_key, Datum};
use ordo_meta::logic::MetaLogic;
use ordo_raft::groups::META_GROUP;
use ordo_vshard::routing::vshard_of;
use ordo_vshard::shard::{row_key, table_prefix};

use crate::constants::SCAN_FANOUT_MAX;

/// Per query: the point all of its reads spanning vShards are at, so the
/// query sees one consistent state (chosen lazily, by the first read that
/// needs it): the end of one sequencer epoch, and on each vShard the log
/// index its first read there was at. With `eager` (the query reads more
/// than one table) every read of the query uses it, single-vShard ones too.
#[derive(Debug, Default)]
pub struct QuerySnapshot {
    pub eager: bool,
    epoch: tokio::sync::OnceCell<u64>,
    /// Per vShard read: the log index of the query's reads there (`None`
    /// until the first answers; later reads wait for it).
    indexes: std::sync::Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<Option<u64>>>>>,
}

impl QuerySnapshot {
    pub fn new(eager: bool) -> QuerySnapshot {
        QuerySnapshot { eager, ..Default::default() }
    }

    fn index_of(&self, vshard: u32) -> Arc<tokio::sync::Mutex<Option<u64>>> {
        self.indexes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(vshard).or_default().clone()
    }
}

/// The catalog as DataFusion (and the DML planner) sees it.
#[derive(Debug)]
pub struct OrdoSchema {
    inner: Arc<Shared>,
}

pub struct Shared {
    pub router: Arc<Router>,
    pub meta: Arc<MetaLogic>,
    pub vshards: u32,
    /// Runs this node's transactions and multi-vShard statements.
    pub gateway: Gateway,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared(vshards={})", self.vshards)
    }
}

impl Shared {
    /// Looks a table up in this node's catalog replica; on a miss, catches
    /// the replica up with the meta leader first (the table may be new).
    pub async fn table(&self, name: &str) -> ExecResult<TableDef> {
        if let Some(t) = self.meta.catalog().table(name) {
            return Ok(t.clone());
        }
        self.catch_up_catalog().await?;
        self.meta.catalog().table(name).cloned().ok_or_else(|| ExecError::UndefinedTable(name.to_string()))
    }

    /// Brings this node's catalog up to what the meta leader has committed:
    /// its replica, or, on a node without one, a copy from the leader.
    pub async fn catch_up_catalog(&self) -> ExecResult<()> {
        if self.router.group(META_GROUP).is_some() {
            return self.router.catch_up(META_GROUP).await;
        }
        match self.router.catalog().await? {
            (_, bytes) if bytes.is_empty() => Ok(()),
            (index, bytes) => self.meta.install(index, &bytes).map_err(ExecError::Internal),
        }
    }

    /// The vShard of a row given its primary key values.
    pub fn vshard_of_key(&self, table: &TableDef, pk: &[Datum]) -> u32 {
        let part: Vec<&Datum> = pk[..table.partition_len].iter().collect();
        vshard_of(&encode_key(&part), self.vshards)
    }

    /// The epoch the query reads as of: the one before an epoch the
    /// sequencer committed after the query arrived. So every transaction
    /// acknowledged before the query is in (linearizable), and every write
    /// that starts once the query has read some vShard is out on every
    /// vShard (its fence waits for that later epoch, which versions it after).
    async fn snapshot_epoch(&self, snap: &QuerySnapshot) -> ExecResult<u64> {
        let later = *snap.epoch.get_or_try_init(|| self.router.fresh_epoch()).await?;
        Ok(later - 1)
    }

    /// Rows under `prefix` of `vshard` at the query's read point.
    async fn rows_as_of(&self, snap: &QuerySnapshot, vshard: u32, prefix: Vec<u8>) -> ExecResult<Vec<Vec<u8>>> {
        let epoch = self.snapshot_epoch(snap).await?;
        let index = snap.index_of(vshard);
        let mut index = index.lock().await;
        let (at, rows) = self.router.scan_as_of(vshard, epoch, *index, prefix).await?;
        debug_assert!(index.is_none_or(|i| i == at), "read at another index");
        *index = Some(at);
        Ok(rows)
    }
}

impl OrdoSchema {
    pub fn new(inner: Arc<Shared>) -> OrdoSchema {
        OrdoSchema { inner }
    }
}

#[async_trait]
impl SchemaProvider for OrdoSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.meta.catalog().tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        match self.inner.table(name).await {
            Ok(def) => Ok(Some(Arc::new(OrdoTable { schema: table_schema(&def), def, shared: self.inner.clone() }))),
            Err(ExecError::UndefinedTable(_)) => Ok(None),
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.meta.catalog().table(name).is_some()
    }
}

#[derive(Debug)]
pub struct OrdoTable {
    def: TableDef,
    schema: SchemaRef,
    shared: Arc<Shared>,
}

/// `column = literal` conjuncts of pushed-down filters, by column index.
fn equalities(def: &TableDef, filters: &[Expr]) -> BTreeMap<usize, ScalarValue> {
    fn walk(def: &TableDef, e: &Expr, out: &mut BTreeMap<usize, ScalarValue>) {
        if let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e {
            match op {
                Operator::And => {
                    walk(def, left, out);
                    walk(def, right, out);
                }
                Operator::Eq => {
                    let pair = match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => Some((c, v)),
                        _ => None,
                    };
                    if let Some((c, v)) = pair {
                        if let Some(i) = def.column_index(&c.name) {
                            out.insert(i, v.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeMap::new();
    for f in filters {
        walk(def, f, &mut out);
    }
    out
}

fn scalar_input(v: &ScalarValue) -> Option<Input> {
    Some(match v {
        ScalarValue::Int8(Some(i)) => Input::Int(*i as i64),
        ScalarValue::Int16(Some(i)) => Input::Int(*i as i64),
        ScalarValue::Int32(Some(i)) => Input::Int(*i as i64),
        ScalarValue::Int64(Some(i)) => Input::Int(*i),
        ScalarValue::UInt8(Some(i)) => Input::Int(*i as i64),
        ScalarValue::UInt16(Some(i)) => Input::Int(*i as i64),
        ScalarValue::UInt32(Some(i)) => Input::Int(*i as i64),
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => {
            Input::Text(s.clone())
        }
        ScalarValue::Boolean(Some(b)) => Input::Bool(*b),
        ScalarValue::Date32(Some(d)) => Input::Datum(Datum::Date(*d)),
        ScalarValue::TimestampMicrosecond(Some(t), None) => Input::Datum(Datum::Timestamp(*t)),
        _ => return None,
    })
}

/// Key datums for the first `n` primary key columns of `def` if `eq` binds
/// each to a value of its exact type (so the lookup cannot miss a row that
/// a looser comparison would match).
pub(crate) fn bound_key(def: &TableDef, eq: &BTreeMap<usize, ScalarValue>, n: usize) -> Option<Vec<Datum>> {
    let mut out = Vec::with_capacity(n);
    for &ci in &def.primary_key[..n] {
        let col = &def.columns[ci];
        let input = scalar_input(eq.get(&ci)?)?;
        let d = coerce_type(input.clone(), &col.ty, &col.name).ok()?;
        // Only exact matches: '1.5' into an integer column must not
        // become a lookup of 2.
        let back_ok = match (&input, &d) {
            (Input::Int(a), Datum::Int(b)) => a == b,
            (Input::Text(a), Datum::Text(b)) => a == b,
            (Input::Bool(_), _) | (Input::Datum(_), _) => true,
            _ => false,
        };
        if !back_ok || d.is_null() {
            return None;
        }
        out.push(d);
    }
    Some(out)
}

#[async_trait]
impl TableProvider for OrdoTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>, DataFusionError> {
        // Inexact: we use key equalities to pick vShards and rows, and
        // DataFusion still applies every filter to what we return.
        Ok(filters.iter().map(|_| TableProviderFilterPushDown::Inexact).collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        let ext = |e: ExecError| DataFusionError::External(Box::new(e));
        let eq = equalities(&self.def, filters);
        let pk_len = self.def.primary_key.len();
        let point = bound_key(&self.def, &eq, pk_len);
        // The longest bound leading part of the primary key, at least the
        // partition key: one vShard, and only the rows under that prefix.
        let partition = (self.def.partition_len.max(1)..pk_len).rev().find_map(|n| bound_key(&self.def, &eq, n));
        let snapshot = state.config().get_extension::<QuerySnapshot>();
        let at = match &snapshot {
            Some(s) if s.eager || (point.is_none() && partition.is_none()) => Some(s),
            _ => None,
        };
        let table_id = self.def.id;
        let parts: Vec<Vec<Vec<u8>>> = if let Some(snap) = at {
            match (point, partition) {
                (Some(pk), _) => {
                    let vshard = self.shared.vshard_of_key(&self.def, &pk);
                    let key = row_key(table_id, &encode_key(&pk.iter().collect::<Vec<_>>()));
                    vec![self.shared.rows_as_of(snap, vshard, key).await.map_err(ext)?]
                }
                (None, Some(part)) => {
                    let vshard = self.shared.vshard_of_key(&self.def, &part);
                    let prefix = row_key(table_id, &encode_key(&part.iter().collect::<Vec<_>>()));
                    vec![self.shared.rows_as_of(snap, vshard, prefix).await.map_err(ext)?]
                }
                (None, None) => futures::stream::iter(0..self.shared.vshards)
                    .map(|v| self.shared.rows_as_of(snap, v, table_prefix(table_id).to_vec()))
                    .buffered(SCAN_FANOUT_MAX)
                    .try_collect()
                    .await
                    .map_err(ext)?,
            }
        } else if let Some(pk) = point {
            let vshard = self.shared.vshard_of_key(&self.def, &pk);
            let key = encode_key(&pk.iter().collect::<Vec<_>>());
            vec![self.shared.router.get_rows(vshard, self.def.clone(), vec![key]).await.map_err(ext)?]
        } else if let Some(part) = partition {
            let vshard = self.shared.vshard_of_key(&self.def, &part);
            let prefix = encode_key(&part.iter().collect::<Vec<_>>());
            vec![self.shared.router.scan_rows(vshard, self.def.clone(), prefix).await.map_err(ext)?]
        } else {
            futures::stream::iter(0..self.shared.vshards)
                .map(|v| self.shared.router.scan_rows(v, self.def.clone(), Vec::new()))
                .buffered(SCAN_FANOUT_MAX)
                .try_collect()
                .await
                .map_err(ext)?
        };
        let mut partitions = Vec::with_capacity(parts.len());
        for raw in parts {
            let rows: Vec<Vec<Datum>> = raw
                .iter()
                .map(|r| decode_row(r))
                .collect::<Result<_, _>>()
                .map_err(|e| ext(ExecError::Internal(e.to_string())))?;
            partitions.push(vec![rows_to_batch(&self.def, &self.schema, &rows).map_err(ext)?]);
        }
        Ok(MemorySourceConfig::try_new_exec(&partitions, self.schema.clone(), projection.cloned())?)
    }
}
