//! The list-append workload: clients run transactions of 1-4 appends and
//! reads over a few keys (rows of one table, spread over vShards), through
//! random nodes, and record each as an [`Op`] of the history. A key's list
//! is a text column; an append concatenates `,value`, values unique across
//! the run, so a read tells exactly which appends it saw, in which order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ordo_tests::{Cluster, SqlClient, SqlError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::check::{Mop, Op, OpKind};

/// Most micro-operations in one transaction.
const MOPS_MAX: usize = 4;

/// Creates the table and one empty list per key.
pub async fn setup(c: &Cluster, keys: u64) -> Result<(), SqlError> {
    let create = "CREATE TABLE la (k BIGINT PRIMARY KEY, v TEXT NOT NULL)";
    c.sql_retry(1, create, json!([]), std::time::Duration::from_secs(60)).await?;
    for k in 0..keys {
        let insert = "INSERT INTO la VALUES ($1, '')";
        c.sql_retry(1 + k % 3, insert, json!([k]), std::time::Duration::from_secs(60)).await?;
    }
    Ok(())
}

/// What a client needs: where to send, what to tell apart.
#[derive(Clone)]
pub struct Client {
    pub sql: SqlClient,
    pub nodes: u64,
    pub keys: u64,
    pub start: Instant,
    /// The next value to append (shared: values are unique in the run).
    pub values: Arc<AtomicU64>,
}

impl Client {
    /// Runs transactions until `stop`; returns them as history.
    pub async fn run(self, process: u64, seed: u64, mut stop: watch::Receiver<bool>) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(seed ^ process.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut ops = Vec::new();
        while !*stop.borrow_and_update() {
            let mops = self.plan(&mut rng);
            let node = rng.random_range(1..=self.nodes);
            let invoke_ns = self.now_ns();
            let (kind, mops) = self.execute(node, mops).await;
            let complete_ns = if kind == OpKind::Info { u64::MAX } else { self.now_ns() };
            ops.push(Op { id: 0, process, kind, invoke_ns, complete_ns, mops });
        }
        ops
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn plan(&self, rng: &mut StdRng) -> Vec<Mop> {
        (0..rng.random_range(1..=MOPS_MAX))
            .map(|_| {
                let key = rng.random_range(0..self.keys);
                if rng.random_bool(0.5) {
                    Mop::Append { key, value: self.values.fetch_add(1, Ordering::Relaxed) }
                } else {
                    Mop::Read { key, value: None }
                }
            })
            .collect()
    }

    /// Sends one transaction; its outcome and its mops with what reads saw.
    async fn execute(&self, node: u64, mops: Vec<Mop>) -> (OpKind, Vec<Mop>) {
        let (sql, params) = transaction_sql(&mops);
        match self.sql.sql(node, &sql, Value::Array(params)).await {
            Ok(results) => match read_values(&mops, &results) {
                Some(mops) => (OpKind::Ok, mops),
                // An answer we cannot read: count it as unknown.
                None => (OpKind::Info, mops),
            },
            Err(e) => (classify(&e), mops),
        }
    }
}

/// The SQL of a transaction and its parameters (the appended suffixes).
fn transaction_sql(mops: &[Mop]) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let statements: Vec<String> = mops
        .iter()
        .map(|m| match m {
            Mop::Append { key, value } => {
                params.push(json!(format!(",{value}")));
                format!("UPDATE la SET v = v || ${} WHERE k = {key}", params.len())
            }
            Mop::Read { key, .. } => format!("SELECT v FROM la WHERE k = {key}"),
        })
        .collect();
    let sql =
        if statements.len() == 1 { statements[0].clone() } else { format!("BEGIN; {}; COMMIT", statements.join("; ")) };
    (sql, params)
}

/// The mops with each read's list filled in from the answer (`results`
/// holds one entry per statement, `BEGIN` first in a transaction).
fn read_values(mops: &[Mop], results: &[Value]) -> Option<Vec<Mop>> {
    let offset = usize::from(mops.len() > 1);
    mops.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Mop::Append { .. } => Some(m.clone()),
            Mop::Read { key, .. } => {
                let text = results.get(i + offset)?["rows"].get(0).map_or(Some(""), |row| row[0].as_str())?;
                Some(Mop::Read { key: *key, value: Some(parse_list(text)?) })
            }
        })
        .collect()
}

/// `",3,17,5"` -> `[3, 17, 5]`.
pub fn parse_list(text: &str) -> Option<Vec<u64>> {
    text.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
}

/// An error's meaning for the history: `Fail` only when the database (or
/// the transport, before sending) guarantees nothing was applied.
pub(crate) fn classify(e: &SqlError) -> OpKind {
    match (e.status, e.code.as_str()) {
        (0, "connect") => OpKind::Fail,
        // A lost connection or a timeout: the request may have run.
        (0, _) => OpKind::Info,
        // Outcome unknown, by the database's own word.
        (_, "08007") => OpKind::Info,
        // An internal error promises nothing.
        (_, code) if code.starts_with("XX") => OpKind::Info,
        // Every other SQLSTATE is a refusal: nothing was applied.
        _ => OpKind::Fail,
    }
}

/// One read of every key after the run, as the history's last operation.
pub async fn final_read(c: &Cluster, keys: u64, start: Instant, process: u64) -> Result<Op, String> {
    let invoke_ns = start.elapsed().as_nanos() as u64;
    let r = c
        .sql_retry(1, "SELECT k, v FROM la ORDER BY k", json!([]), std::time::Duration::from_secs(60))
        .await
        .map_err(|e| format!("final read: {e:?}"))?;
    let complete_ns = start.elapsed().as_nanos() as u64;
    let rows = r.first().and_then(|r| r["rows"].as_array()).ok_or("final read: no rows")?;
    if rows.len() as u64 != keys {
        return Err(format!("final read: {} keys, expected {keys}", rows.len()));
    }
    let mut mops = Vec::new();
    for row in rows {
        let key = row[0].as_u64().or_else(|| row[0].as_str()?.parse().ok()).ok_or("final read: bad key")?;
        let list = row[1].as_str().and_then(parse_list).ok_or("final read: bad list")?;
        mops.push(Mop::Read { key, value: Some(list) });
    }
    Ok(Op { id: 0, process, kind: OpKind::Ok, invoke_ns, complete_ns, mops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_and_answers_round_trip() {
        let mops = vec![Mop::Append { key: 3, value: 9 }, Mop::Read { key: 3, value: None }];
        let (sql, params) = transaction_sql(&mops);
        assert_eq!(sql, "BEGIN; UPDATE la SET v = v || $1 WHERE k = 3; SELECT v FROM la WHERE k = 3; COMMIT");
        assert_eq!(params, vec![json!(",9")]);
        let results = vec![json!({}), json!({"rows_affected": 1}), json!({"rows": [[",4,9"]]}), json!({})];
        let read = read_values(&mops, &results).unwrap();
        assert_eq!(read[1], Mop::Read { key: 3, value: Some(vec![4, 9]) });
        assert_eq!(parse_list(""), Some(vec![]));
        assert_eq!(parse_list(",x"), None);
    }

    #[test]
    fn only_refusals_are_failures() {
        let e = |status, code: &str| SqlError { status, code: code.into(), message: String::new() };
        assert_eq!(classify(&e(0, "connect")), OpKind::Fail);
        assert_eq!(classify(&e(0, "transport")), OpKind::Info);
        assert_eq!(classify(&e(504, "08007")), OpKind::Info);
        assert_eq!(classify(&e(500, "XX000")), OpKind::Info);
        assert_eq!(classify(&e(503, "57P03")), OpKind::Fail);
        assert_eq!(classify(&e(409, "40001")), OpKind::Fail);
    }
}
