//! The workloads that run beside list-append ([`crate::workload`]) in every
//! run, each on its own table with its own clients and checker:
//!
//! - registers (`reg`): point reads, blind writes and compare-and-sets
//!   (`UPDATE ... WHERE v = $old`), checked for linearizability per key;
//! - a grow-only set (`st`): INSERTs of unique elements; no acknowledged
//!   element missing, none present whose INSERT was refused (a `23505` for
//!   one's own row would show here);
//! - a counter (`ctr`): increments; the final value lies between the
//!   acknowledged sum and that plus the unknown ones;
//! - a bank (`bank`): transfers between accounts in one transaction (often
//!   over two vShards), and reads of every balance, which must sum to the
//!   initial total.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_tests::{Cluster, SqlClient, SqlError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::check::bank::{self, BankConfig, BankRead};
use crate::check::register::{self, Linearizability, RegF, RegOp};
use crate::check::set::{self, CounterAdd, SetAdd};
use crate::check::OpKind;
use crate::workload::classify;

/// Registers (rows of `reg`).
pub const REGISTERS: u64 = 3;
/// Bank accounts (rows of `bank`), and each one's opening balance.
pub const ACCOUNTS: u64 = 6;
pub const OPENING_BALANCE: i64 = 100;
const SETUP_WITHIN: Duration = Duration::from_secs(60);

/// The kinds of client, one task each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Register,
    Set,
    Counter,
    Bank,
}

/// Every kind, with how many clients of it a run starts.
pub const CLIENTS: [(Kind, u64); 4] = [(Kind::Register, 2), (Kind::Set, 1), (Kind::Counter, 1), (Kind::Bank, 2)];

/// Creates the four tables and their rows.
pub async fn setup(c: &Cluster) -> Result<(), SqlError> {
    let mut statements = vec![
        "CREATE TABLE reg (k BIGINT PRIMARY KEY, v BIGINT)".to_string(),
        "CREATE TABLE st (e BIGINT PRIMARY KEY)".to_string(),
        "CREATE TABLE ctr (k BIGINT PRIMARY KEY, n BIGINT NOT NULL)".to_string(),
        "INSERT INTO ctr VALUES (0, 0)".to_string(),
        "CREATE TABLE bank (a BIGINT PRIMARY KEY, b BIGINT NOT NULL)".to_string(),
    ];
    statements.extend((0..REGISTERS).map(|k| format!("INSERT INTO reg VALUES ({k}, NULL)")));
    statements.extend((0..ACCOUNTS).map(|a| format!("INSERT INTO bank VALUES ({a}, {OPENING_BALANCE})")));
    for s in &statements {
        c.sql_retry(1, s, json!([]), SETUP_WITHIN).await?;
    }
    Ok(())
}

/// What the clients of one kind recorded.
#[derive(Default)]
pub struct Recorded {
    pub registers: Vec<RegOp>,
    pub adds: Vec<SetAdd>,
    pub increments: Vec<CounterAdd>,
    pub bank_reads: Vec<BankRead>,
}

impl Recorded {
    pub fn extend(&mut self, other: Recorded) {
        self.registers.extend(other.registers);
        self.adds.extend(other.adds);
        self.increments.extend(other.increments);
        self.bank_reads.extend(other.bank_reads);
    }

    pub fn ops(&self) -> usize {
        self.registers.len() + self.adds.len() + self.increments.len() + self.bank_reads.len()
    }
}

/// One client of these workloads.
#[derive(Clone)]
pub struct Client {
    pub sql: SqlClient,
    pub nodes: u64,
    pub start: Instant,
    /// Unique values (register writes, set elements), shared by clients.
    pub values: Arc<AtomicU64>,
}

impl Client {
    /// Runs `kind`'s operations through random nodes until `stop`.
    pub async fn run(self, kind: Kind, process: u64, seed: u64, mut stop: watch::Receiver<bool>) -> Recorded {
        let mut rng = StdRng::seed_from_u64(seed ^ process.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut out = Recorded::default();
        // Per register, the last value this client saw: what its CAS expects.
        let mut seen: BTreeMap<u64, i64> = BTreeMap::new();
        while !*stop.borrow_and_update() {
            let node = rng.random_range(1..=self.nodes);
            match kind {
                Kind::Register => out.registers.push(self.register(node, process, &mut rng, &mut seen).await),
                Kind::Set => {
                    let element = self.values.fetch_add(1, Ordering::Relaxed);
                    let kind = self.write(node, "INSERT INTO st VALUES ($1)", json!([element])).await;
                    out.adds.push(SetAdd { id: out.adds.len(), kind, element });
                }
                Kind::Counter => {
                    let delta = rng.random_range(1..=5i64);
                    let kind = self.write(node, "UPDATE ctr SET n = n + $1 WHERE k = 0", json!([delta])).await;
                    out.increments.push(CounterAdd { kind, delta });
                }
                Kind::Bank if rng.random_bool(0.7) => {
                    let from = rng.random_range(0..ACCOUNTS);
                    let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
                    let txn = format!(
                        "BEGIN; UPDATE bank SET b = b - $1 WHERE a = {from}; UPDATE bank SET b = b + $1 WHERE a = {to}; COMMIT"
                    );
                    self.write(node, &txn, json!([rng.random_range(1..=10i64)])).await;
                }
                Kind::Bank => {
                    if let Some(balances) = balances(self.sql.sql(node, "SELECT a, b FROM bank", json!([])).await) {
                        out.bank_reads.push(BankRead { id: out.bank_reads.len(), kind: OpKind::Ok, balances });
                    }
                }
            }
        }
        out
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A statement whose answer only tells whether it applied.
    async fn write(&self, node: u64, sql: &str, params: Value) -> OpKind {
        match self.sql.sql(node, sql, params).await {
            Ok(_) => OpKind::Ok,
            Err(e) => classify(&e),
        }
    }

    /// One read, write or compare-and-set of a random register.
    async fn register(&self, node: u64, process: u64, rng: &mut StdRng, seen: &mut BTreeMap<u64, i64>) -> RegOp {
        let key = rng.random_range(0..REGISTERS);
        let invoke_ns = self.now_ns();
        let pick = rng.random_range(0..10);
        let (f, kind) = if pick < 4 {
            let r = self.sql.sql(node, "SELECT v FROM reg WHERE k = $1", json!([key])).await;
            match r.as_ref().map(|r| r.first().map(|x| &x["rows"][0][0])) {
                Ok(Some(v)) if v.is_null() => (RegF::Read(None), OpKind::Ok),
                Ok(Some(v)) => match as_i64(v) {
                    Some(v) => {
                        seen.insert(key, v);
                        (RegF::Read(Some(v)), OpKind::Ok)
                    }
                    None => (RegF::Read(None), OpKind::Info),
                },
                Ok(None) => (RegF::Read(None), OpKind::Info),
                Err(e) => (RegF::Read(None), classify(e)),
            }
        } else {
            let to = self.values.fetch_add(1, Ordering::Relaxed) as i64;
            match seen.get(&key).copied().filter(|_| pick >= 7) {
                Some(from) => {
                    let sql = "UPDATE reg SET v = $3 WHERE k = $1 AND v = $2";
                    let kind = match self.sql.sql(node, sql, json!([key, from, to])).await {
                        Ok(r) if r.first().is_some_and(|x| x["rows_affected"] == 1) => OpKind::Ok,
                        // The comparison failed: nothing was written.
                        Ok(_) => OpKind::Fail,
                        Err(e) => classify(&e),
                    };
                    (RegF::Cas { from, to }, kind)
                }
                None => {
                    let sql = "UPDATE reg SET v = $2 WHERE k = $1";
                    (RegF::Write(to), self.write(node, sql, json!([key, to])).await)
                }
            }
        };
        let complete_ns = if kind == OpKind::Info { u64::MAX } else { self.now_ns() };
        RegOp { id: 0, process, key, kind, invoke_ns, complete_ns, f }
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// The balances a `SELECT a, b FROM bank` answered, if it did.
fn balances(r: Result<Vec<Value>, SqlError>) -> Option<BTreeMap<u64, i64>> {
    let results = r.ok()?;
    let rows = results.first()?["rows"].as_array()?;
    rows.iter().map(|row| Some((as_i64(&row[0])? as u64, as_i64(&row[1])?))).collect()
}

/// What the checks of these workloads found: anomalies, and checks that
/// could not decide (a register search past its bound), which are not
/// failures.
#[derive(Default)]
pub struct Findings {
    pub anomalies: Vec<String>,
    pub inconclusive: Vec<String>,
}

/// Reads the final state (after healing) and checks every workload.
pub async fn check(c: &Cluster, mut rec: Recorded) -> Result<Findings, String> {
    let mut found = Findings::default();
    for (i, op) in rec.registers.iter_mut().enumerate() {
        op.id = i;
    }
    match register::check(&rec.registers) {
        Linearizability::Linearizable => {}
        unknown @ Linearizability::Unknown { .. } => found.inconclusive.push(format!("registers: {unknown}")),
        verdict => found.anomalies.push(format!("registers: {verdict}")),
    }
    let anomalies = &mut found.anomalies;
    let read = |sql: &'static str| async move {
        let r = c.sql_retry(1, sql, json!([]), SETUP_WITHIN).await.map_err(|e| format!("final read {sql}: {e:?}"))?;
        r.first().and_then(|r| r["rows"].as_array().cloned()).ok_or_else(|| format!("final read {sql}: no rows"))
    };
    let elements: Vec<u64> =
        read("SELECT e FROM st").await?.iter().filter_map(|r| as_i64(&r[0])).map(|e| e as u64).collect();
    anomalies.extend(set::check_set(&rec.adds, &[elements]).anomalies.iter().map(|a| format!("set: {a}")));
    let n =
        read("SELECT n FROM ctr WHERE k = 0").await?.first().and_then(|r| as_i64(&r[0])).ok_or("counter: no value")?;
    let counter = set::check_counter(&rec.increments, n);
    if !counter.is_valid() {
        anomalies.push(format!("counter: {counter}"));
    }
    let last = balances(c.sql_retry(1, "SELECT a, b FROM bank", json!([]), SETUP_WITHIN).await)
        .ok_or("bank: no final read")?;
    rec.bank_reads.push(BankRead { id: rec.bank_reads.len(), kind: OpKind::Ok, balances: last });
    let config = BankConfig {
        total: OPENING_BALANCE * ACCOUNTS as i64,
        accounts: (0..ACCOUNTS).collect(),
        allow_negative: true,
        max_reported: 5,
    };
    let report = bank::check(&rec.bank_reads, &config);
    anomalies.extend(report.anomalies.iter().map(|a| format!("bank: {a}")));
    if report.bad_reads > report.anomalies.len() {
        anomalies.push(format!("bank: {} bad reads in all", report.bad_reads));
    }
    Ok(found)
}
