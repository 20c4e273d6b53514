//! PostgreSQL as a TPC-C target, in the two forms serious kits use:
//!
//! - [`PgMode::Interactive`]: one statement per round trip inside
//!   `BEGIN ... COMMIT`, prepared statements, READ COMMITTED by default or
//!   SERIALIZABLE with `--serializable`; serialization failures and
//!   deadlocks are retried and counted.
//! - [`PgMode::Function`]: each transaction is a PL/pgSQL function
//!   ([`FUNCTIONS`]) called in one round trip.
//!
//! NUMERIC values cross the wire as text (`$n::text::numeric`,
//! `x::text`), so no decimal crate is needed.

use tokio_postgres::{Client, NoTls, Statement};

use super::db::{Done, TpccDb, TpccSession, TxnError, TxnResult};
use super::input::{middle, CustomerRef, Delivery, NewOrder, OrderStatus, Payment, StockLevel};
use super::load::{money, parse_decimal};
use super::schema::Dialect;
use super::DISTRICTS_PER_WAREHOUSE;

/// Attempts of one transaction before its serialization failures count as
/// an error.
const RETRIES_MAX: u32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgMode {
    Interactive { serializable: bool },
    Function,
}

pub struct PgDb {
    url: String,
    mode: PgMode,
}

impl PgDb {
    pub fn new(url: &str, mode: PgMode) -> PgDb {
        PgDb { url: url.to_string(), mode }
    }
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

fn pg_err(e: tokio_postgres::Error) -> TxnError {
    match e.code() {
        Some(c) => TxnError {
            code: c.code().to_string(),
            message: e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default(),
        },
        None => TxnError { code: "transport".into(), message: e.to_string() },
    }
}

fn unexpected(what: &str) -> TxnError {
    TxnError { code: "unexpected".into(), message: what.to_string() }
}

fn retryable(e: &TxnError) -> bool {
    e.code == "40001" || e.code == "40P01"
}

/// Waits before retry `n` (from 1): jittered, doubling up to 32 ms, so
/// retries of hot rows do not collide again at once (what client
/// libraries of serializable databases do).
async fn backoff(n: u32) {
    use rand::Rng;
    let cap_us = 1000u64 << n.min(5);
    let wait_us = rand::rng().random_range(cap_us / 2..=cap_us);
    tokio::time::sleep(std::time::Duration::from_micros(wait_us)).await;
}

/// A NUMERIC's text as cents (values of scale <= 2).
fn cents(s: &str) -> Result<i64, TxnError> {
    parse_decimal(s, 2).and_then(|c| i64::try_from(c).ok()).ok_or_else(|| unexpected(s))
}

#[async_trait::async_trait]
impl TpccDb for PgDb {
    fn name(&self) -> String {
        match self.mode {
            PgMode::Interactive { serializable: false } => "pg-interactive".into(),
            PgMode::Interactive { serializable: true } => "pg-interactive-serializable".into(),
            PgMode::Function => "pg-function".into(),
        }
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn session(&self, _worker: usize) -> anyhow::Result<Box<dyn TpccSession>> {
        let client = connect(&self.url).await?;
        Ok(Box::new(PgSession { client, mode: self.mode, stmts: None, calls: None }))
    }

    async fn after_load(&self) -> anyhow::Result<()> {
        let client = connect(&self.url).await?;
        client.batch_execute(FUNCTIONS).await?;
        client.batch_execute("ANALYZE").await?;
        Ok(())
    }
}

/// The interactive form's statements.
struct Prepared {
    no_wh: Statement,
    no_cust: Statement,
    no_dist: Statement,
    no_order: Statement,
    no_new: Statement,
    no_item: Statement,
    no_stock: Statement,
    no_line: Statement,
    cust_by_name: Statement,
    pay_wh: Statement,
    pay_dist: Statement,
    pay_cust: Statement,
    pay_bc: Statement,
    pay_hist: Statement,
    os_cust: Statement,
    os_order: Statement,
    os_lines: Statement,
    dl_new: Statement,
    dl_order: Statement,
    dl_lines: Statement,
    dl_cust: Statement,
    sl_dist: Statement,
    sl_count: Statement,
}

impl Prepared {
    /// Longer than our ~70-line rule on purpose: one prepared statement per
    /// field, the SQL of the PostgreSQL form next to its name.
    async fn new(c: &Client) -> anyhow::Result<Prepared> {
        let dists: Vec<String> = (1..=DISTRICTS_PER_WAREHOUSE).map(|d| format!("s_dist_{d:02}")).collect();
        Ok(Prepared {
            no_wh: c.prepare("SELECT w_tax::text FROM warehouse WHERE w_id = $1").await?,
            no_cust: c.prepare("SELECT c_discount::text, c_last, c_credit FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3").await?,
            no_dist: c
                .prepare("UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = $1 AND d_id = $2 RETURNING d_tax::text, d_next_o_id - 1")
                .await?,
            no_order: c.prepare("INSERT INTO orders VALUES ($1, $2, $3, $4, now(), NULL, $5, $6)").await?,
            no_new: c.prepare("INSERT INTO new_order VALUES ($1, $2, $3)").await?,
            no_item: c.prepare("SELECT i_price::text, i_name, i_data FROM item WHERE i_id = $1").await?,
            no_stock: c
                .prepare(&format!(
                    "UPDATE stock SET s_quantity = CASE WHEN s_quantity >= $3 + 10 THEN s_quantity - $3 ELSE s_quantity - $3 + 91 END, \
                     s_ytd = s_ytd + $3, s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + $4 \
                     WHERE s_w_id = $1 AND s_i_id = $2 RETURNING s_quantity, s_data, {}",
                    dists.join(", ")
                ))
                .await?,
            no_line: c.prepare("INSERT INTO order_line VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8::text::numeric, $9)").await?,
            cust_by_name: c.prepare("SELECT c_id FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_last = $3 ORDER BY c_first").await?,
            pay_wh: c.prepare("UPDATE warehouse SET w_ytd = w_ytd + $2::text::numeric WHERE w_id = $1 RETURNING w_name").await?,
            pay_dist: c.prepare("UPDATE district SET d_ytd = d_ytd + $3::text::numeric WHERE d_w_id = $1 AND d_id = $2 RETURNING d_name").await?,
            pay_cust: c
                .prepare(
                    "UPDATE customer SET c_balance = c_balance - $4::text::numeric, c_ytd_payment = c_ytd_payment + $4::text::numeric, \
                     c_payment_cnt = c_payment_cnt + 1 WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3 \
                     RETURNING c_first, c_middle, c_last, c_balance::text, c_credit",
                )
                .await?,
            pay_bc: c.prepare("UPDATE customer SET c_data = substr($4 || c_data, 1, 500) WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3").await?,
            pay_hist: c.prepare("INSERT INTO history VALUES ($1, $2, $3, $4, $5, $6, now(), $7::text::numeric, $8)").await?,
            os_cust: c
                .prepare("SELECT c_balance::text, c_first, c_middle, c_last FROM customer WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3")
                .await?,
            os_order: c
                .prepare(
                    "SELECT o_id, o_entry_d::text, o_carrier_id FROM orders WHERE o_w_id = $1 AND o_d_id = $2 AND o_c_id = $3 \
                     ORDER BY o_id DESC LIMIT 1",
                )
                .await?,
            os_lines: c
                .prepare(
                    "SELECT ol_i_id, ol_supply_w_id, ol_quantity, ol_amount::text, ol_delivery_d::text FROM order_line \
                     WHERE ol_w_id = $1 AND ol_d_id = $2 AND ol_o_id = $3",
                )
                .await?,
            dl_new: c
                .prepare(
                    "DELETE FROM new_order WHERE no_w_id = $1 AND no_d_id = $2 AND no_o_id = \
                     (SELECT min(no_o_id) FROM new_order WHERE no_w_id = $1 AND no_d_id = $2) RETURNING no_o_id",
                )
                .await?,
            dl_order: c.prepare("UPDATE orders SET o_carrier_id = $4 WHERE o_w_id = $1 AND o_d_id = $2 AND o_id = $3 RETURNING o_c_id").await?,
            dl_lines: c
                .prepare(
                    "WITH u AS (UPDATE order_line SET ol_delivery_d = now() WHERE ol_w_id = $1 AND ol_d_id = $2 AND ol_o_id = $3 \
                     RETURNING ol_amount) SELECT coalesce(sum(ol_amount), 0)::text FROM u",
                )
                .await?,
            dl_cust: c
                .prepare(
                    "UPDATE customer SET c_balance = c_balance + $4::text::numeric, c_delivery_cnt = c_delivery_cnt + 1 \
                     WHERE c_w_id = $1 AND c_d_id = $2 AND c_id = $3",
                )
                .await?,
            sl_dist: c.prepare("SELECT d_next_o_id FROM district WHERE d_w_id = $1 AND d_id = $2").await?,
            sl_count: c
                .prepare(
                    "SELECT count(DISTINCT s_i_id) FROM order_line, stock WHERE ol_w_id = $1 AND ol_d_id = $2 \
                     AND ol_o_id < $3 AND ol_o_id >= $3 - 20 AND s_w_id = $1 AND s_i_id = ol_i_id AND s_quantity < $4",
                )
                .await?,
        })
    }
}

/// The function form's calls.
struct Calls {
    new_order: Statement,
    payment: Statement,
    order_status: Statement,
    delivery: Statement,
    stock_level: Statement,
}

impl Calls {
    async fn new(c: &Client) -> anyhow::Result<Calls> {
        Ok(Calls {
            new_order: c.prepare("SELECT tpcc_new_order($1, $2, $3, $4, $5, $6)").await?,
            payment: c.prepare("SELECT tpcc_payment($1, $2, $3, $4, $5, $6, $7::text::numeric, $8)").await?,
            order_status: c.prepare("SELECT tpcc_order_status($1, $2, $3, $4)").await?,
            delivery: c.prepare("SELECT tpcc_delivery($1, $2)").await?,
            stock_level: c.prepare("SELECT tpcc_stock_level($1, $2, $3)").await?,
        })
    }
}

struct PgSession {
    client: Client,
    mode: PgMode,
    stmts: Option<Prepared>,
    calls: Option<Calls>,
}

/// What one attempt of an interactive transaction ended with.
enum Attempt {
    Commit,
    /// The specified New-Order rollback.
    Rollback,
}

fn i(v: i64) -> i32 {
    i32::try_from(v).expect("TPC-C ids and counts fit INT")
}

impl PgSession {
    /// Prepares the statements of this session's form on first use (the
    /// tables may not exist when a loading session opens).
    async fn ready(&mut self) -> Result<(), TxnError> {
        let prep = |e: anyhow::Error| TxnError { code: "prepare".into(), message: e.to_string() };
        match self.mode {
            PgMode::Interactive { .. } if self.stmts.is_none() => {
                self.stmts = Some(Prepared::new(&self.client).await.map_err(prep)?)
            }
            PgMode::Function if self.calls.is_none() => {
                self.calls = Some(Calls::new(&self.client).await.map_err(prep)?)
            }
            _ => {}
        }
        Ok(())
    }

    fn s(&self) -> &Prepared {
        self.stmts.as_ref().expect("interactive mode has statements")
    }

    fn f(&self) -> &Calls {
        self.calls.as_ref().expect("function mode has calls")
    }

    async fn customer_id(&self, w: i64, d: i64, c: &CustomerRef) -> Result<i64, TxnError> {
        match c {
            CustomerRef::Id(id) => Ok(*id),
            CustomerRef::LastName(name) => {
                let rows = self.client.query(&self.s().cust_by_name, &[&i(w), &i(d), name]).await.map_err(pg_err)?;
                let ids: Vec<i64> = rows.iter().map(|r| r.get::<_, i32>(0) as i64).collect();
                middle(&ids).ok_or_else(|| unexpected(&format!("no customer named {name} in {w}/{d}")))
            }
        }
    }

    /// Runs `body` between BEGIN and COMMIT, retrying serialization
    /// failures and deadlocks.
    async fn interactive<'a, F, Fut>(&'a self, body: F) -> TxnResult
    where
        F: Fn(&'a PgSession) -> Fut,
        Fut: std::future::Future<Output = Result<Attempt, TxnError>> + 'a,
    {
        let begin = match self.mode {
            PgMode::Interactive { serializable: true } => "BEGIN ISOLATION LEVEL SERIALIZABLE",
            _ => "BEGIN",
        };
        let mut retries = 0;
        loop {
            self.client.batch_execute(begin).await.map_err(pg_err)?;
            let result = match body(self).await {
                Ok(Attempt::Commit) => self.client.batch_execute("COMMIT").await.map_err(pg_err).map(|_| false),
                Ok(Attempt::Rollback) => self.client.batch_execute("ROLLBACK").await.map_err(pg_err).map(|_| true),
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            };
            match result {
                Ok(rolled_back) => return Ok(Done { rolled_back, retries }),
                Err(e) if retryable(&e) && retries < RETRIES_MAX => {
                    retries += 1;
                    backoff(retries).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Calls a function, retrying serialization failures and deadlocks.
    async fn call(&self, stmt: &Statement, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> TxnResult {
        let mut retries = 0;
        loop {
            match self.client.query(stmt, params).await.map_err(pg_err) {
                Ok(_) => return Ok(Done { rolled_back: false, retries }),
                Err(e) if retryable(&e) && retries < RETRIES_MAX => {
                    retries += 1;
                    backoff(retries).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn new_order_once(&self, t: &NewOrder) -> Result<Attempt, TxnError> {
        let s = self.s();
        let c = &self.client;
        let (w, d) = (i(t.w_id), i(t.d_id));
        c.query_one(&s.no_wh, &[&w]).await.map_err(pg_err)?;
        c.query_one(&s.no_cust, &[&w, &d, &i(t.c_id)]).await.map_err(pg_err)?;
        let row = c.query_one(&s.no_dist, &[&w, &d]).await.map_err(pg_err)?;
        let o_id: i32 = row.get(1);
        c.execute(&s.no_order, &[&w, &d, &o_id, &i(t.c_id), &i(t.lines.len() as i64), &(t.all_local() as i32)])
            .await
            .map_err(pg_err)?;
        c.execute(&s.no_new, &[&w, &d, &o_id]).await.map_err(pg_err)?;
        for (k, l) in (1..).zip(&t.lines) {
            let Some(item) = c.query_opt(&s.no_item, &[&i(l.i_id)]).await.map_err(pg_err)? else {
                return if t.rollback {
                    Ok(Attempt::Rollback)
                } else {
                    Err(unexpected(&format!("no item {}", l.i_id)))
                };
            };
            let price = cents(item.get::<_, &str>(0))?;
            let remote = (l.supply_w_id != t.w_id) as i32;
            let stock = c
                .query_one(&s.no_stock, &[&i(l.supply_w_id), &i(l.i_id), &i(l.quantity), &remote])
                .await
                .map_err(pg_err)?;
            let dist: String = stock.get(1 + t.d_id as usize);
            let amount = money(price * l.quantity);
            c.execute(&s.no_line, &[&w, &d, &o_id, &k, &i(l.i_id), &i(l.supply_w_id), &i(l.quantity), &amount, &dist])
                .await
                .map_err(pg_err)?;
        }
        if t.rollback {
            return Err(unexpected("a New-Order with an unused item found all its items"));
        }
        Ok(Attempt::Commit)
    }

    async fn payment_once(&self, t: &Payment) -> Result<Attempt, TxnError> {
        let s = self.s();
        let c = &self.client;
        let amount = money(t.amount_cents);
        let cid = self.customer_id(t.c_w_id, t.c_d_id, &t.customer).await?;
        let (w, d, cw, cd, cid) = (i(t.w_id), i(t.d_id), i(t.c_w_id), i(t.c_d_id), i(cid));
        let wh = c.query_one(&s.pay_wh, &[&w, &amount]).await.map_err(pg_err)?;
        let dist = c.query_one(&s.pay_dist, &[&w, &d, &amount]).await.map_err(pg_err)?;
        let cust = c.query_one(&s.pay_cust, &[&cw, &cd, &cid, &amount]).await.map_err(pg_err)?;
        if cust.get::<_, &str>(4) == "BC" {
            let note = format!("{cid} {cd} {cw} {d} {w} {amount} ");
            c.execute(&s.pay_bc, &[&cw, &cd, &cid, &note]).await.map_err(pg_err)?;
        }
        let h_data = format!("{}    {}", wh.get::<_, &str>(0), dist.get::<_, &str>(0));
        c.execute(&s.pay_hist, &[&w, &t.h_id, &cid, &cd, &cw, &d, &amount, &h_data]).await.map_err(pg_err)?;
        Ok(Attempt::Commit)
    }

    async fn order_status_once(&self, t: &OrderStatus) -> Result<Attempt, TxnError> {
        let s = self.s();
        let c = &self.client;
        let cid = i(self.customer_id(t.w_id, t.d_id, &t.customer).await?);
        let (w, d) = (i(t.w_id), i(t.d_id));
        c.query_one(&s.os_cust, &[&w, &d, &cid]).await.map_err(pg_err)?;
        if let Some(o) = c.query_opt(&s.os_order, &[&w, &d, &cid]).await.map_err(pg_err)? {
            let o_id: i32 = o.get(0);
            c.query(&s.os_lines, &[&w, &d, &o_id]).await.map_err(pg_err)?;
        }
        Ok(Attempt::Commit)
    }

    async fn delivery_once(&self, t: &Delivery) -> Result<Attempt, TxnError> {
        let s = self.s();
        let c = &self.client;
        let w = i(t.w_id);
        for d in 1..=i(DISTRICTS_PER_WAREHOUSE) {
            let Some(no) = c.query_opt(&s.dl_new, &[&w, &d]).await.map_err(pg_err)? else { continue };
            let o_id: i32 = no.get(0);
            let order = c.query_one(&s.dl_order, &[&w, &d, &o_id, &i(t.carrier_id)]).await.map_err(pg_err)?;
            let c_id: i32 = order.get(0);
            let sum = c.query_one(&s.dl_lines, &[&w, &d, &o_id]).await.map_err(pg_err)?;
            let amount: &str = sum.get(0);
            c.execute(&s.dl_cust, &[&w, &d, &c_id, &amount]).await.map_err(pg_err)?;
        }
        Ok(Attempt::Commit)
    }

    async fn stock_level_once(&self, t: &StockLevel) -> Result<Attempt, TxnError> {
        let s = self.s();
        let c = &self.client;
        let (w, d) = (i(t.w_id), i(t.d_id));
        let next: i32 = c.query_one(&s.sl_dist, &[&w, &d]).await.map_err(pg_err)?.get(0);
        c.query_one(&s.sl_count, &[&w, &d, &next, &i(t.threshold)]).await.map_err(pg_err)?;
        Ok(Attempt::Commit)
    }

    /// The by-name lookup's argument of the functions: (id or NULL, name or NULL).
    fn customer_args(c: &CustomerRef) -> (Option<i32>, Option<String>) {
        match c {
            CustomerRef::Id(id) => (Some(i(*id)), None),
            CustomerRef::LastName(n) => (None, Some(n.clone())),
        }
    }
}

#[async_trait::async_trait]
impl TpccSession for PgSession {
    async fn execute(&mut self, sql: &str) -> Result<(), TxnError> {
        self.client.batch_execute(sql).await.map_err(pg_err)
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, TxnError> {
        let msgs = self.client.simple_query(sql).await.map_err(pg_err)?;
        Ok(msgs
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect())
    }

    async fn new_order(&mut self, t: &NewOrder) -> TxnResult {
        self.ready().await?;
        match self.mode {
            PgMode::Function => {
                let items: Vec<i32> = t.lines.iter().map(|l| i(l.i_id)).collect();
                let supply: Vec<i32> = t.lines.iter().map(|l| i(l.supply_w_id)).collect();
                let qty: Vec<i32> = t.lines.iter().map(|l| i(l.quantity)).collect();
                let r =
                    self.call(&self.f().new_order, &[&i(t.w_id), &i(t.d_id), &i(t.c_id), &items, &supply, &qty]).await;
                match r {
                    Ok(_) if t.rollback => Err(unexpected("a New-Order with an unused item committed")),
                    Err(e) if t.rollback && e.code == "P0002" => Ok(Done { rolled_back: true, retries: 0 }),
                    other => other,
                }
            }
            PgMode::Interactive { .. } => self.interactive(|s| s.new_order_once(t)).await,
        }
    }

    async fn payment(&mut self, t: &Payment) -> TxnResult {
        self.ready().await?;
        match self.mode {
            PgMode::Function => {
                let (cid, name) = Self::customer_args(&t.customer);
                let amount = money(t.amount_cents);
                let p = (i(t.w_id), i(t.d_id), i(t.c_w_id), i(t.c_d_id));
                self.call(&self.f().payment, &[&p.0, &p.1, &p.2, &p.3, &cid, &name, &amount, &t.h_id]).await
            }
            PgMode::Interactive { .. } => self.interactive(|s| s.payment_once(t)).await,
        }
    }

    async fn order_status(&mut self, t: &OrderStatus) -> TxnResult {
        self.ready().await?;
        match self.mode {
            PgMode::Function => {
                let (cid, name) = Self::customer_args(&t.customer);
                self.call(&self.f().order_status, &[&i(t.w_id), &i(t.d_id), &cid, &name]).await
            }
            PgMode::Interactive { .. } => self.interactive(|s| s.order_status_once(t)).await,
        }
    }

    async fn delivery(&mut self, t: &Delivery) -> TxnResult {
        self.ready().await?;
        match self.mode {
            PgMode::Function => self.call(&self.f().delivery, &[&i(t.w_id), &i(t.carrier_id)]).await,
            PgMode::Interactive { .. } => self.interactive(|s| s.delivery_once(t)).await,
        }
    }

    async fn stock_level(&mut self, t: &StockLevel) -> TxnResult {
        self.ready().await?;
        match self.mode {
            PgMode::Function => self.call(&self.f().stock_level, &[&i(t.w_id), &i(t.d_id), &i(t.threshold)]).await,
            PgMode::Interactive { .. } => self.interactive(|s| s.stock_level_once(t)).await,
        }
    }
}

/// The five transactions as PL/pgSQL functions, one round trip each. An
/// unused item raises `P0002` (no_data_found), which rolls the call back.
pub const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION tpcc_new_order(w int, d int, c int, items int[], supply int[], qty int[]) RETURNS int AS $$
DECLARE
  o int; n int := array_length(items, 1); all_local int := 1; price numeric; dist text; k int;
  w_tax_v numeric; d_tax_v numeric; disc numeric;
BEGIN
  SELECT w_tax INTO w_tax_v FROM warehouse WHERE w_id = w;
  SELECT c_discount INTO disc FROM customer WHERE c_w_id = w AND c_d_id = d AND c_id = c;
  UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = w AND d_id = d RETURNING d_tax, d_next_o_id - 1 INTO d_tax_v, o;
  FOR k IN 1..n LOOP
    IF supply[k] <> w THEN all_local := 0; END IF;
  END LOOP;
  INSERT INTO orders VALUES (w, d, o, c, now(), NULL, n, all_local);
  INSERT INTO new_order VALUES (w, d, o);
  FOR k IN 1..n LOOP
    SELECT i_price INTO price FROM item WHERE i_id = items[k];
    IF NOT FOUND THEN
      RAISE EXCEPTION 'item % not found', items[k] USING ERRCODE = 'P0002';
    END IF;
    UPDATE stock SET s_quantity = CASE WHEN s_quantity >= qty[k] + 10 THEN s_quantity - qty[k] ELSE s_quantity - qty[k] + 91 END,
      s_ytd = s_ytd + qty[k], s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + (supply[k] <> w)::int
      WHERE s_w_id = supply[k] AND s_i_id = items[k]
      RETURNING CASE d WHEN 1 THEN s_dist_01 WHEN 2 THEN s_dist_02 WHEN 3 THEN s_dist_03 WHEN 4 THEN s_dist_04
        WHEN 5 THEN s_dist_05 WHEN 6 THEN s_dist_06 WHEN 7 THEN s_dist_07 WHEN 8 THEN s_dist_08
        WHEN 9 THEN s_dist_09 ELSE s_dist_10 END INTO dist;
    INSERT INTO order_line VALUES (w, d, o, k, items[k], supply[k], NULL, qty[k], qty[k] * price, dist);
  END LOOP;
  RETURN o;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tpcc_customer(w int, d int, c int, last text) RETURNS int AS $$
DECLARE ids int[];
BEGIN
  IF c IS NOT NULL THEN RETURN c; END IF;
  SELECT array_agg(c_id ORDER BY c_first) INTO ids FROM customer WHERE c_w_id = w AND c_d_id = d AND c_last = last;
  IF ids IS NULL THEN RAISE EXCEPTION 'no customer named %', last; END IF;
  RETURN ids[(array_length(ids, 1) + 1) / 2];
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tpcc_payment(w int, d int, cw int, cd int, c int, last text, amount numeric, hid bigint) RETURNS int AS $$
DECLARE cid int; wname text; dname text; credit text;
BEGIN
  cid := tpcc_customer(cw, cd, c, last);
  UPDATE warehouse SET w_ytd = w_ytd + amount WHERE w_id = w RETURNING w_name INTO wname;
  UPDATE district SET d_ytd = d_ytd + amount WHERE d_w_id = w AND d_id = d RETURNING d_name INTO dname;
  UPDATE customer SET c_balance = c_balance - amount, c_ytd_payment = c_ytd_payment + amount, c_payment_cnt = c_payment_cnt + 1
    WHERE c_w_id = cw AND c_d_id = cd AND c_id = cid RETURNING c_credit INTO credit;
  IF credit = 'BC' THEN
    UPDATE customer SET c_data = substr(cid || ' ' || cd || ' ' || cw || ' ' || d || ' ' || w || ' ' || amount || ' ' || c_data, 1, 500)
      WHERE c_w_id = cw AND c_d_id = cd AND c_id = cid;
  END IF;
  INSERT INTO history VALUES (w, hid, cid, cd, cw, d, now(), amount, wname || '    ' || dname);
  RETURN cid;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tpcc_order_status(w int, d int, c int, last text) RETURNS int AS $$
DECLARE cid int; o int; lines int;
BEGIN
  cid := tpcc_customer(w, d, c, last);
  PERFORM c_balance, c_first, c_middle, c_last FROM customer WHERE c_w_id = w AND c_d_id = d AND c_id = cid;
  SELECT o_id INTO o FROM orders WHERE o_w_id = w AND o_d_id = d AND o_c_id = cid ORDER BY o_id DESC LIMIT 1;
  SELECT count(*) INTO lines FROM order_line WHERE ol_w_id = w AND ol_d_id = d AND ol_o_id = o;
  RETURN lines;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tpcc_delivery(w int, carrier int) RETURNS int AS $$
DECLARE d int; o int; cid int; amount numeric; delivered int := 0;
BEGIN
  FOR d IN 1..10 LOOP
    DELETE FROM new_order WHERE no_w_id = w AND no_d_id = d
      AND no_o_id = (SELECT min(no_o_id) FROM new_order WHERE no_w_id = w AND no_d_id = d) RETURNING no_o_id INTO o;
    CONTINUE WHEN o IS NULL;
    UPDATE orders SET o_carrier_id = carrier WHERE o_w_id = w AND o_d_id = d AND o_id = o RETURNING o_c_id INTO cid;
    WITH u AS (UPDATE order_line SET ol_delivery_d = now() WHERE ol_w_id = w AND ol_d_id = d AND ol_o_id = o RETURNING ol_amount)
      SELECT coalesce(sum(ol_amount), 0) INTO amount FROM u;
    UPDATE customer SET c_balance = c_balance + amount, c_delivery_cnt = c_delivery_cnt + 1
      WHERE c_w_id = w AND c_d_id = d AND c_id = cid;
    delivered := delivered + 1;
  END LOOP;
  RETURN delivered;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tpcc_stock_level(w int, d int, threshold int) RETURNS int AS $$
DECLARE next int; low int;
BEGIN
  SELECT d_next_o_id INTO next FROM district WHERE d_w_id = w AND d_id = d;
  SELECT count(DISTINCT s_i_id) INTO low FROM order_line, stock
    WHERE ol_w_id = w AND ol_d_id = d AND ol_o_id < next AND ol_o_id >= next - 20
      AND s_w_id = w AND s_i_id = ol_i_id AND s_quantity < threshold;
  RETURN low;
END $$ LANGUAGE plpgsql;
"#;
