//! [`SqlEngine`]: runs the statements of one request.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use ordo_executor::{Gateway, ReconStats, Router};
use ordo_expr::{from_datafusion, ExecError, ExecResult, Param};
use ordo_meta::command::{MetaCommand, MetaResult};
use ordo_meta::logic::MetaLogic;
use ordo_metrics::{seconds_since, RequestKind, SqlMetrics};

use crate::constants::{
    DROP_ATTEMPTS_MAX, DROP_FANOUT_MAX, NODE_QUERY_MEMORY_BYTES_MAX, QUERY_RETRIES_MAX, QUERY_TIMEOUT_MS,
    STATEMENTS_PER_REQUEST_MAX,
};
use crate::memory::{QueryLimits, QueryPool};
use crate::names::object_name;
use crate::provider::{OrdoSchema, QuerySnapshot, Shared};
use crate::result::StatementResult;

pub struct SqlEngine {
    shared: Arc<Shared>,
    ctx: SessionContext,
    limits: QueryLimits,
    metrics: SqlMetrics,
}

impl SqlEngine {
    pub fn new(router: Arc<Router>, meta: Arc<MetaLogic>, vshards: u32, limits: QueryLimits) -> ExecResult<SqlEngine> {
        let metrics = SqlMetrics::default();
        let gateway = Gateway::new(router.clone(), metrics.clone());
        let shared = Arc::new(Shared { router, meta, vshards, gateway });
        let cfg = ordo_expr::session::config().with_target_partitions(2);
        // One pool for every query of the node, each query drawing on it
        // through its own (`crate::memory`): an operator that would exceed
        // either fails its query (53200) instead of the node.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(NODE_QUERY_MEMORY_BYTES_MAX, 1.0)
            .build_arc()
            .map_err(from_datafusion)?;
        let ctx = SessionContext::new_with_config_rt(cfg, runtime);
        ordo_expr::session::install(&ctx);
        ctx.catalog("datafusion")
            .ok_or_else(|| ExecError::Internal("no default catalog".into()))?
            .register_schema("public", Arc::new(OrdoSchema::new(shared.clone())))
            .map_err(from_datafusion)?;
        Ok(SqlEngine { shared, ctx, limits, metrics })
    }

    /// What this engine and its gateway record, for the node's registry.
    pub fn metrics(&self) -> &SqlMetrics {
        &self.metrics
    }

    /// How this gateway's reconnaissances went, for operators.
    pub fn recon_stats(&self) -> &ReconStats {
        self.shared.gateway.recon_stats()
    }

    /// On a node without a meta replica: refreshes its copy of the catalog
    /// every `every`, so changes made elsewhere (a dropped table) reach it;
    /// a lookup that misses refreshes at once.
    pub fn follow_catalog(&self, every: std::time::Duration) {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = shared.catch_up_catalog().await {
                    tracing::debug!("catalog refresh failed: {e}");
                }
            }
        });
    }

    /// Returns once this node's catalog holds every change committed when
    /// the call began (a linearizable view, e.g. for `GET /v1/admin/status`).
    pub async fn catch_up_catalog(&self) -> ExecResult<()> {
        self.shared.catch_up_catalog().await
    }

    /// Parses `sql` (one or more `;`-separated statements) and runs each as
    /// its own auto-committed statement, stopping at the first error.
    pub async fn execute(&self, sql: &str, params: &[Param]) -> ExecResult<Vec<StatementResult>> {
        let _in_flight = self.metrics.start();
        let start = Instant::now();
        let mut kind = RequestKind::Invalid;
        let result = self.execute_counted(sql, params, &mut kind).await;
        let code = result.as_ref().err().map(|e| e.sqlstate());
        self.metrics.finished(kind, seconds_since(start), code);
        result
    }

    /// [`SqlEngine::execute`], telling `kind` what the request turned out to be.
    async fn execute_counted(
        &self,
        sql: &str,
        params: &[Param],
        kind: &mut RequestKind,
    ) -> ExecResult<Vec<StatementResult>> {
        ordo_expr::depth::check_depth(sql)?;
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| ExecError::Syntax(e.to_string()))?;
        *kind = request_kind(&statements);
        if statements.is_empty() {
            return Err(ExecError::Syntax("empty query".into()));
        }
        if statements.len() > STATEMENTS_PER_REQUEST_MAX {
            return Err(ExecError::ProgramLimitExceeded(format!(
                "at most {STATEMENTS_PER_REQUEST_MAX} statements per request"
            )));
        }
        let is_write = |s: &Statement| matches!(s, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_));
        let begins = matches!(statements.first(), Some(Statement::StartTransaction { .. }));
        for st in statements.iter().filter(|s| begins || is_write(s)) {
            crate::determinism::refuse_volatile(st)?;
        }
        if begins {
            return self.transaction(&statements, params).await;
        }
        // Several writes in one request are one transaction too. Requests
        // that mix in DDL or queries run statement by statement.
        if statements.len() > 1 && statements.iter().all(is_write) {
            return crate::txn::transaction(&self.shared, &statements, params, true).await;
        }
        let mut results = Vec::with_capacity(statements.len());
        for st in statements {
            results.push(self.statement(st, params).await?);
        }
        Ok(results)
    }

    /// `BEGIN; ...; COMMIT|ROLLBACK` as one request: one transaction.
    async fn transaction(&self, statements: &[Statement], params: &[Param]) -> ExecResult<Vec<StatementResult>> {
        let is_control = |s: &Statement| {
            matches!(s, Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. })
        };
        let commit = match statements.last() {
            Some(Statement::Commit { .. }) if statements.len() >= 2 => true,
            Some(Statement::Rollback { .. }) if statements.len() >= 2 => false,
            _ => {
                return Err(ExecError::FeatureNotSupported(
                    "a transaction must be sent whole: BEGIN; ...; COMMIT (or ROLLBACK) in one request".into(),
                ))
            }
        };
        let body = &statements[1..statements.len() - 1];
        if body.iter().any(is_control) {
            return Err(ExecError::FeatureNotSupported("nested or repeated transaction control statements".into()));
        }
        let mut results = vec![StatementResult::affected(0)];
        results.extend(crate::txn::transaction(&self.shared, body, params, commit).await?);
        results.push(StatementResult::affected(0));
        Ok(results)
    }

    async fn statement(&self, st: Statement, params: &[Param]) -> ExecResult<StatementResult> {
        match st {
            Statement::CreateTable(ct) => self.create_table(&ct).await,
            Statement::Drop { object_type: ObjectType::Table, if_exists, names, .. } => {
                for n in &names {
                    self.drop_table(&object_name(n)?, if_exists).await?;
                }
                Ok(StatementResult::affected(0))
            }
            // RETURNING needs the rows as written: run as a transaction.
            Statement::Insert(ref ins) if ins.returning.is_some() => self.one_statement_txn(st, params).await,
            Statement::Update(ref up) if up.returning.is_some() => self.one_statement_txn(st, params).await,
            Statement::Delete(ref del) if del.returning.is_some() => self.one_statement_txn(st, params).await,
            Statement::Insert(ins) => crate::dml::insert(&self.shared, &ins, params).await,
            Statement::Update(_) | Statement::Delete(_) => {
                // now() is the executor's one timestamp (the epoch's, when
                // sequenced), bound in a parameter slot after the client's.
                let mut st = st;
                let mut params = params.to_vec();
                let now_slot = crate::txn::bind_timestamp(&mut st, params.len())?.then(|| {
                    params.push(Param::Null);
                    params.len() - 1
                });
                match st {
                    Statement::Update(up) => crate::dml::update(&self.shared, &up, &params, now_slot).await,
                    Statement::Delete(del) => crate::dml::delete(&self.shared, &del, &params, now_slot).await,
                    _ => unreachable!("matched above"),
                }
            }
            Statement::Query(_) => self.query(st, params).await,
            Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => {
                Err(ExecError::FeatureNotSupported(
                    "a transaction must be sent whole: BEGIN; ...; COMMIT (or ROLLBACK) in one request".into(),
                ))
            }
            other => Err(ExecError::FeatureNotSupported(format!(
                "statement not supported: {}",
                first_words(&other.to_string())
            ))),
        }
    }

    async fn one_statement_txn(&self, st: Statement, params: &[Param]) -> ExecResult<StatementResult> {
        let mut r = crate::txn::transaction(&self.shared, std::slice::from_ref(&st), params, true).await?;
        r.pop().ok_or_else(|| ExecError::Internal("no result".into()))
    }

    async fn create_table(&self, ct: &datafusion::sql::sqlparser::ast::CreateTable) -> ExecResult<StatementResult> {
        let def = crate::ddl::table_def(ct)?;
        let name = def.name.clone();
        let cmd = MetaCommand::CreateTable { table: def, if_not_exists: ct.if_not_exists };
        match self.shared.router.meta(cmd).await? {
            MetaResult::Created { .. } => Ok(StatementResult::affected(0)),
            MetaResult::AlreadyExists if ct.if_not_exists => Ok(StatementResult::affected(0)),
            MetaResult::AlreadyExists => Err(ExecError::DuplicateTable(name)),
            other => Err(ExecError::Internal(format!("unexpected catalog answer to CREATE TABLE: {other:?}"))),
        }
    }

    async fn drop_table(&self, name: &str, if_exists: bool) -> ExecResult<()> {
        let cmd = MetaCommand::DropTable { name: name.to_string(), if_exists };
        let table = match self.shared.router.meta(cmd).await? {
            MetaResult::Dropped { table } => table,
            MetaResult::UndefinedTable => return Err(ExecError::UndefinedTable(name.to_string())),
            other => return Err(ExecError::Internal(format!("unexpected catalog answer to DROP TABLE: {other:?}"))),
        };
        if let Some(t) = table {
            // The table is gone from the catalog (ids are never reused), so
            // its rows are unreachable already; this reclaims their space.
            let router = &self.shared.router;
            let drops = futures::stream::iter(0..self.shared.vshards).map(|v| async move {
                // Retryable trouble (a fence not reached yet, a leader
                // change) passes: try a few times before giving up.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match router.drop_table_rows(v, t.id).await {
                        Err(e) if e.is_retryable() && attempt < DROP_ATTEMPTS_MAX => continue,
                        Err(e) => tracing::warn!(table = t.id, vshard = v, "rows of dropped table not reclaimed: {e}"),
                        Ok(_) => {}
                    }
                    return;
                }
            });
            drops.buffer_unordered(DROP_FANOUT_MAX).collect::<Vec<()>>().await;
        }
        Ok(())
    }

    /// A query; one that read below a replica's version horizon (too slowly)
    /// or lost a participant meanwhile (40001) is retried.
    async fn query(&self, st: Statement, params: &[Param]) -> ExecResult<StatementResult> {
        let attempts = async {
            let mut attempt = 0;
            loop {
                match self.query_once(st.clone(), params).await {
                    Err(ExecError::SerializationFailure(_)) if attempt < QUERY_RETRIES_MAX => attempt += 1,
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(std::time::Duration::from_millis(QUERY_TIMEOUT_MS), attempts).await {
            Ok(r) => r,
            Err(_) => Err(ExecError::StatementTimeout(format!("the query took longer than {QUERY_TIMEOUT_MS} ms"))),
        }
    }

    /// The session state of one query: the node's, with a memory pool of
    /// the query's own in front of the node's pool; and that pool, which
    /// the query's result draws on too.
    fn query_state(&self) -> ExecResult<(SessionState, Arc<dyn MemoryPool>)> {
        let node = self.ctx.runtime_env();
        let pool: Arc<dyn MemoryPool> =
            Arc::new(QueryPool::new(node.memory_pool.clone(), self.limits.memory_bytes_max));
        let runtime = RuntimeEnvBuilder::from_runtime_env(&node).with_memory_pool(pool.clone()).build_arc();
        let runtime = runtime.map_err(from_datafusion)?;
        Ok((SessionStateBuilder::new_from_existing(self.ctx.state()).with_runtime_env(runtime).build(), pool))
    }

    async fn query_once(&self, st: Statement, params: &[Param]) -> ExecResult<StatementResult> {
        if let Some(answer) = crate::point::try_point_read(&self.shared, &st, params).await {
            self.metrics.point_read();
            return answer;
        }
        let (mut state, pool) = self.query_state()?;
        let plan = state.statement_to_plan(DfStatement::Statement(Box::new(st))).await.map_err(from_datafusion)?;
        let mut scans = 0;
        plan.apply_with_subqueries(|node| {
            if let datafusion::logical_expr::LogicalPlan::TableScan(_) = node {
                scans += 1;
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .map_err(from_datafusion)?;
        state.config_mut().set_extension(Arc::new(QuerySnapshot::new(scans > 1)));
        let plan = if params.is_empty() {
            plan
        } else {
            let values: Vec<_> = params.iter().map(ordo_expr::arrow::param_scalar).collect();
            plan.with_param_values(values).map_err(from_datafusion)?
        };
        let df = DataFrame::new(state, plan);
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut stream = df.execute_stream().await.map_err(from_datafusion)?;
        let mut batches = Vec::new();
        // The result held here counts in the query's pool (and the node's)
        // until it is turned into the response; its size is the bound's.
        let held = MemoryConsumer::new("query result").register(&pool);
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(from_datafusion)?;
            let size = batch.get_array_memory_size();
            if held.size().saturating_add(size) > self.limits.result_bytes_max {
                return Err(ExecError::ProgramLimitExceeded(format!(
                    "the result is larger than {} bytes: add a LIMIT or a narrower WHERE",
                    self.limits.result_bytes_max
                )));
            }
            held.try_grow(size).map_err(from_datafusion)?;
            batches.push(batch);
        }
        StatementResult::from_batches(&schema, &batches)
    }
}

fn first_words(s: &str) -> String {
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// What a request is, for metrics (see [`RequestKind`]).
fn request_kind(statements: &[Statement]) -> RequestKind {
    let is_write = |s: &Statement| matches!(s, Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_));
    match statements {
        [] => RequestKind::Invalid,
        [Statement::StartTransaction { .. }, ..] => RequestKind::Transaction,
        [Statement::Query(_)] => RequestKind::Query,
        [one] if is_write(one) => RequestKind::Write,
        [Statement::CreateTable(_)] | [Statement::Drop { .. }] => RequestKind::Ddl,
        many if many.len() > 1 && many.iter().all(is_write) => RequestKind::Transaction,
        _ => RequestKind::Batch,
    }
}
