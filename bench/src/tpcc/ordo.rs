//! OrdoDB as a TPC-C target: every transaction is one HTTP request holding
//! `BEGIN; ...; COMMIT`, a one-shot deterministic transaction. Values a
//! statement returns reach later statements as `$name` variables (e.g. the
//! district's next order id), so nothing goes back and forth mid-transaction.
//!
//! Lookups of a customer by last name read first, then run the transaction
//! with the id found: last names never change, so the read stays valid.
//! The rolled-back New-Order needs no special statement: the unused item's
//! price is NULL, so its order line violates `ol_amount NOT NULL` (23502)
//! and the whole transaction leaves no trace.

use std::sync::Arc;

use serde_json::{json, Value};

use super::db::{Done, TpccDb, TpccSession, TxnError, TxnResult};
use super::input::{middle, CustomerRef, Delivery, NewOrder, OrderStatus, Payment, StockLevel};
use super::load::money;
use super::schema::Dialect;
use super::DISTRICTS_PER_WAREHOUSE;
use crate::target::{OrdoHttp, Target};

pub struct OrdoDb {
    http: Arc<OrdoHttp>,
}

impl OrdoDb {
    /// `spec`: `host:port,host:port,...`; workers are spread over the nodes.
    pub fn new(spec: &str) -> anyhow::Result<OrdoDb> {
        Ok(OrdoDb { http: Arc::new(OrdoHttp::new(spec)?) })
    }
}

#[async_trait::async_trait]
impl TpccDb for OrdoDb {
    fn name(&self) -> String {
        "ordodb".into()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Ordo
    }

    async fn session(&self, worker: usize) -> anyhow::Result<Box<dyn TpccSession>> {
        Ok(Box::new(OrdoSession { http: self.http.clone(), worker }))
    }
}

struct OrdoSession {
    http: Arc<OrdoHttp>,
    worker: usize,
}

/// A result's rows.
fn rows(result: &Value) -> &[Value] {
    result["rows"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn unexpected(what: &str) -> TxnError {
    TxnError { code: "unexpected".into(), message: what.to_string() }
}

impl OrdoSession {
    async fn run(&self, sql: &str, params: Value) -> Result<Vec<Value>, TxnError> {
        self.http.execute(self.worker, sql, params).await.map_err(|e| TxnError { code: e.code, message: e.message })
    }

    /// The customer id of a by-name lookup (a read before the transaction).
    async fn customer_id(&self, w_id: i64, d_id: i64, c: &CustomerRef) -> Result<i64, TxnError> {
        match c {
            CustomerRef::Id(id) => Ok(*id),
            CustomerRef::LastName(name) => {
                // The by-name index table (see `schema`): a scan of the
                // (warehouse, district, last name) key prefix.
                let sql = format!(
                    "SELECT c_id FROM customer_by_name WHERE c_w_id = {w_id} AND c_d_id = {d_id} AND c_last = $1 ORDER BY c_first, c_id"
                );
                let out = self.run(&sql, json!([name])).await?;
                let ids: Vec<i64> = out.first().map(rows).unwrap_or(&[]).iter().filter_map(|r| r[0].as_i64()).collect();
                middle(&ids).ok_or_else(|| unexpected(&format!("no customer named {name} in {w_id}/{d_id}")))
            }
        }
    }
}

#[async_trait::async_trait]
impl TpccSession for OrdoSession {
    async fn execute(&mut self, sql: &str) -> Result<(), TxnError> {
        self.run(sql, json!([])).await.map(|_| ())
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, TxnError> {
        let out = self.run(sql, json!([])).await?;
        let last = out.last().ok_or_else(|| unexpected("no result"))?;
        Ok(rows(last).iter().map(|r| r.as_array().map(|r| r.iter().map(text).collect()).unwrap_or_default()).collect())
    }

    async fn new_order(&mut self, t: &NewOrder) -> TxnResult {
        let (w, d, c) = (t.w_id, t.d_id, t.c_id);
        let mut sql = format!(
            "BEGIN; \
             SELECT w_tax FROM warehouse WHERE w_id = {w}; \
             SELECT c_discount, c_last, c_credit FROM customer WHERE c_w_id = {w} AND c_d_id = {d} AND c_id = {c}; \
             SELECT d_tax, d_next_o_id AS o_id FROM district WHERE d_w_id = {w} AND d_id = {d}; \
             UPDATE district SET d_next_o_id = d_next_o_id + 1 WHERE d_w_id = {w} AND d_id = {d}; \
             INSERT INTO orders VALUES ({w}, {d}, $o_id, {c}, now(), NULL, {}, {}); \
             INSERT INTO new_order VALUES ({w}, {d}, $o_id); ",
            t.lines.len(),
            t.all_local() as i64
        );
        for (k, l) in (1..).zip(&t.lines) {
            let (i, sw, q) = (l.i_id, l.supply_w_id, l.quantity);
            let remote = (sw != w) as i64;
            sql.push_str(&format!(
                "SELECT i_price AS price{k}, i_name AS name{k}, i_data AS idata{k} FROM item WHERE i_w_id = {w} AND i_id = {i}; \
                 UPDATE stock SET s_quantity = CASE WHEN s_quantity >= {q} + 10 THEN s_quantity - {q} ELSE s_quantity - {q} + 91 END, \
                 s_ytd = s_ytd + {q}, s_order_cnt = s_order_cnt + 1, s_remote_cnt = s_remote_cnt + {remote} \
                 WHERE s_w_id = {sw} AND s_i_id = {i} RETURNING s_quantity AS sq{k}, s_dist_{d:02} AS dist{k}, s_data AS sdata{k}; \
                 INSERT INTO order_line VALUES ({w}, {d}, $o_id, {k}, {i}, {sw}, NULL, {q}, {q} * $price{k}, $dist{k}); "
            ));
        }
        sql.push_str("COMMIT;");
        match self.run(&sql, json!([])).await {
            Ok(_) if t.rollback => Err(unexpected("a New-Order with an unused item committed")),
            Ok(_) => Ok(Done::COMMITTED),
            Err(e) if t.rollback && e.code == "23502" => Ok(Done { rolled_back: true, retries: 0 }),
            Err(e) => Err(e),
        }
    }

    async fn payment(&mut self, t: &Payment) -> TxnResult {
        let c = self.customer_id(t.c_w_id, t.c_d_id, &t.customer).await?;
        let (w, d, cw, cd, h) = (t.w_id, t.d_id, t.c_w_id, t.c_d_id, t.h_id);
        let amt = money(t.amount_cents);
        let sql = format!(
            "BEGIN; \
             UPDATE warehouse SET w_ytd = w_ytd + {amt} WHERE w_id = {w} RETURNING w_name; \
             UPDATE district SET d_ytd = d_ytd + {amt} WHERE d_w_id = {w} AND d_id = {d} RETURNING d_name; \
             UPDATE customer SET c_balance = c_balance - {amt}, c_ytd_payment = c_ytd_payment + {amt}, \
             c_payment_cnt = c_payment_cnt + 1 WHERE c_w_id = {cw} AND c_d_id = {cd} AND c_id = {c} \
             RETURNING c_first, c_middle, c_last, c_balance, c_credit; \
             UPDATE customer SET c_data = substr('{c} {cd} {cw} {d} {w} {amt} ' || c_data, 1, 500) \
             WHERE c_w_id = {cw} AND c_d_id = {cd} AND c_id = {c} AND c_credit = 'BC'; \
             INSERT INTO history VALUES ({w}, {h}, {c}, {cd}, {cw}, {d}, now(), {amt}, $w_name || '    ' || $d_name); \
             COMMIT;"
        );
        let out = self.run(&sql, json!([])).await?;
        // BEGIN, then the customer update is the fourth statement.
        if out.get(3).map(rows).unwrap_or(&[]).len() != 1 {
            return Err(unexpected(&format!("payment found no customer {cw}/{cd}/{c}")));
        }
        Ok(Done::COMMITTED)
    }

    async fn order_status(&mut self, t: &OrderStatus) -> TxnResult {
        let c = self.customer_id(t.w_id, t.d_id, &t.customer).await?;
        let (w, d) = (t.w_id, t.d_id);
        let sql = format!(
            "BEGIN; \
             SELECT c_balance, c_first, c_middle, c_last FROM customer WHERE c_w_id = {w} AND c_d_id = {d} AND c_id = {c}; \
             SELECT o_id AS o, o_entry_d, o_carrier_id FROM orders WHERE o_w_id = {w} AND o_d_id = {d} AND o_c_id = {c} \
             ORDER BY o_id DESC LIMIT 1; \
             SELECT ol_i_id, ol_supply_w_id, ol_quantity, ol_amount, ol_delivery_d FROM order_line \
             WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id = $o; \
             COMMIT;"
        );
        let out = self.run(&sql, json!([])).await?;
        if out.get(1).map(rows).unwrap_or(&[]).len() != 1 {
            return Err(unexpected(&format!("order-status found no customer {w}/{d}/{c}")));
        }
        Ok(Done::COMMITTED)
    }

    async fn delivery(&mut self, t: &Delivery) -> TxnResult {
        let (w, carrier) = (t.w_id, t.carrier_id);
        let mut sql = String::from("BEGIN; ");
        for d in 1..=DISTRICTS_PER_WAREHOUSE {
            sql.push_str(&format!(
                "SELECT MIN(no_o_id) AS o{d} FROM new_order WHERE no_w_id = {w} AND no_d_id = {d}; \
                 DELETE FROM new_order WHERE no_w_id = {w} AND no_d_id = {d} AND no_o_id = $o{d}; \
                 UPDATE orders SET o_carrier_id = {carrier} WHERE o_w_id = {w} AND o_d_id = {d} AND o_id = $o{d} \
                 RETURNING o_c_id AS c{d}; \
                 UPDATE order_line SET ol_delivery_d = now() WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id = $o{d}; \
                 SELECT SUM(ol_amount) AS amount{d} FROM order_line WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id = $o{d}; \
                 UPDATE customer SET c_balance = c_balance + $amount{d}, c_delivery_cnt = c_delivery_cnt + 1 \
                 WHERE c_w_id = {w} AND c_d_id = {d} AND c_id = $c{d}; "
            ));
        }
        sql.push_str("COMMIT;");
        self.run(&sql, json!([])).await?;
        Ok(Done::COMMITTED)
    }

    async fn stock_level(&mut self, t: &StockLevel) -> TxnResult {
        let (w, d) = (t.w_id, t.d_id);
        // Read committed is enough (clause 2.8.2.3), so three reads: the
        // district's next order id, the last 20 orders' items, their stock.
        let out =
            self.run(&format!("SELECT d_next_o_id FROM district WHERE d_w_id = {w} AND d_id = {d}"), json!([])).await?;
        let next = out.first().map(rows).and_then(|r| r.first()).and_then(|r| r[0].as_i64());
        let next = next.ok_or_else(|| unexpected(&format!("no district {w}/{d}")))?;
        let mut sql = String::from("BEGIN; ");
        for o in (next - 20).max(1)..next {
            sql.push_str(&format!(
                "SELECT ol_i_id FROM order_line WHERE ol_w_id = {w} AND ol_d_id = {d} AND ol_o_id = {o}; "
            ));
        }
        sql.push_str("COMMIT;");
        let out = self.run(&sql, json!([])).await?;
        let mut items: Vec<i64> = out.iter().flat_map(|r| rows(r).iter().filter_map(|r| r[0].as_i64())).collect();
        items.sort_unstable();
        items.dedup();
        if items.is_empty() {
            return Ok(Done::COMMITTED);
        }
        let mut sql = String::from("BEGIN; ");
        for i in &items {
            sql.push_str(&format!(
                "SELECT s_i_id FROM stock WHERE s_w_id = {w} AND s_i_id = {i} AND s_quantity < {}; ",
                t.threshold
            ));
        }
        sql.push_str("COMMIT;");
        let out = self.run(&sql, json!([])).await?;
        let _low: usize = out.iter().map(|r| rows(r).len()).sum();
        Ok(Done::COMMITTED)
    }
}
