//! The smallest things a database does, side by side with PostgreSQL in one
//! run: a point SELECT by primary key (also with `AND TRUE`, which OrdoDB
//! plans with DataFusion), a single-row INSERT, and an
//! autocommit increment of one hot row, each by `clients` closed-loop
//! clients for a fixed time. Every figure comes with the CPU the server
//! spent per operation (all its processes, [`crate::cpu`]).
//!
//! OrdoDB gets each statement with `$n` parameters over HTTP; PostgreSQL the
//! same statement with the values written in, over its simple protocol
//! (what `pgbench -M simple` sends). After the runs, the hot row must hold
//! every acknowledged increment on both (and, on OrdoDB, at most those plus
//! the ones whose outcome was unknown).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::cpu::CpuMeter;
use crate::target::{Target, TxnError};

/// Rows of the table the point reads and increments use.
pub const ROWS: i64 = 10_000;
/// Rows per INSERT while loading.
const LOAD_BATCH_ROWS: i64 = 500;
/// The row every increment updates.
const HOT_ID: i64 = 1;
/// Latency bound of the histograms (2 minutes).
const LATENCY_US_MAX: u64 = 120_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Basic {
    PointSelect,
    /// The same read with `AND TRUE`, which keeps it off OrdoDB's point-read
    /// path: what planning it with DataFusion costs.
    PlannedPointSelect,
    Insert,
    HotIncrement,
}

impl Basic {
    pub const ALL: [Basic; 4] = [Basic::PointSelect, Basic::PlannedPointSelect, Basic::Insert, Basic::HotIncrement];

    pub fn name(self) -> &'static str {
        match self {
            Basic::PointSelect => "point SELECT by primary key",
            Basic::PlannedPointSelect => "point SELECT ... AND TRUE (planned)",
            Basic::Insert => "single-row INSERT",
            Basic::HotIncrement => "increment of one hot row",
        }
    }

    /// The statement and its parameters for operation `n` of `client`.
    fn statement(self, client: usize, n: u64, rng: &mut u64) -> (&'static str, Vec<i64>) {
        match self {
            Basic::PointSelect => ("SELECT v, pad FROM basics_kv WHERE id = $1", vec![1 + next(rng) as i64 % ROWS]),
            Basic::PlannedPointSelect => {
                ("SELECT v, pad FROM basics_kv WHERE id = $1 AND TRUE", vec![1 + next(rng) as i64 % ROWS])
            }
            // Unique per client and operation: no INSERT conflicts.
            Basic::Insert => {
                let id = (client as i64 + 1) * 1_000_000_000 + n as i64;
                ("INSERT INTO basics_ins (id, v) VALUES ($1, $2)", vec![id, n as i64])
            }
            Basic::HotIncrement => ("UPDATE basics_kv SET v = v + 1 WHERE id = $1", vec![HOT_ID]),
        }
    }
}

fn next(rng: &mut u64) -> u64 {
    // xorshift64*: a cheap, seeded spread of keys (not for anything else).
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// `sql` with its `$n` replaced by the values (integers only), for a
/// target that takes no parameters.
pub fn inline(sql: &str, params: &[i64]) -> String {
    let mut out = sql.to_string();
    // Highest first, so `$1` does not eat the start of `$10`.
    for (i, v) in params.iter().enumerate().rev() {
        out = out.replace(&format!("${}", i + 1), &v.to_string());
    }
    out
}

/// One system under test: where statements go, whether it takes
/// parameters, and how to measure its CPU.
pub struct System {
    pub name: String,
    pub target: Arc<dyn Target>,
    pub takes_params: bool,
    pub cpu: CpuMeter,
}

impl System {
    async fn run(&self, client: usize, sql: &str, params: &[i64]) -> Result<Vec<Value>, TxnError> {
        if self.takes_params {
            self.target.execute(client, sql, json!(params)).await
        } else {
            self.target.execute(client, &inline(sql, params), json!([])).await
        }
    }
}

/// One workload's figures on one system.
pub struct Figures {
    pub system: String,
    pub basic: Basic,
    pub done: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Operations whose outcome the client could not learn (`08007`, transport).
    pub unknown: u64,
    pub server_core_s: f64,
}

impl Figures {
    pub fn per_s(&self) -> f64 {
        self.done as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    pub fn core_ms_per_op(&self) -> f64 {
        self.server_core_s * 1000.0 / self.done.max(1) as f64
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Creates the tables and loads `ROWS` rows (values 0).
pub async fn prepare(s: &System) -> anyhow::Result<()> {
    let ok = |r: Result<Vec<Value>, TxnError>| r.map(|_| ()).map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message));
    ok(s.run(0, "CREATE TABLE basics_kv (id BIGINT PRIMARY KEY, v BIGINT NOT NULL, pad TEXT NOT NULL)", &[]).await)?;
    ok(s.run(0, "CREATE TABLE basics_ins (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)", &[]).await)?;
    let pad = "x".repeat(100);
    for start in (1..=ROWS).step_by(LOAD_BATCH_ROWS as usize) {
        let values: Vec<String> =
            (start..(start + LOAD_BATCH_ROWS).min(ROWS + 1)).map(|id| format!("({id}, 0, '{pad}')")).collect();
        ok(s.run(0, &format!("INSERT INTO basics_kv VALUES {}", values.join(", ")), &[]).await)?;
    }
    Ok(())
}

/// Runs `basic` on `s` with `clients` clients for `duration`.
pub async fn run(s: Arc<System>, basic: Basic, clients: usize, duration: Duration) -> anyhow::Result<Figures> {
    let cpu_before = s.cpu.server_s()?;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut rng = 0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) << 20);
                let mut hist = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).expect("histogram bounds");
                let (mut done, mut unknown) = (0u64, 0u64);
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                for sent in 0u64.. {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let (sql, params) = basic.statement(c, sent, &mut rng);
                    let t0 = Instant::now();
                    match s.run(c, sql, &params).await {
                        Ok(_) => {
                            done += 1;
                            let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        }
                        Err(e) if e.code == "08007" || e.code == "transport" => unknown += 1,
                        Err(e) => *errors.entry(e.code).or_default() += 1,
                    }
                }
                (done, unknown, hist, errors)
            })
        })
        .collect();
    let mut f = Figures {
        system: s.name.clone(),
        basic,
        done: 0,
        seconds: 0.0,
        latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?,
        errors: BTreeMap::new(),
        unknown: 0,
        server_core_s: 0.0,
    };
    for t in tasks {
        let (done, unknown, hist, errors) = t.await?;
        f.done += done;
        f.unknown += unknown;
        f.latency_us.add(&hist)?;
        for (k, v) in errors {
            *f.errors.entry(k).or_default() += v;
        }
    }
    f.seconds = started.elapsed().as_secs_f64();
    f.server_core_s = s.cpu.server_s()? - cpu_before;
    Ok(f)
}

/// The hot row's value.
pub async fn hot_value(s: &System) -> anyhow::Result<i64> {
    let r = s.run(0, "SELECT v FROM basics_kv WHERE id = $1", &[HOT_ID]).await;
    let r = r.map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))?;
    let v = &r.first().and_then(|r| r["rows"].get(0)).and_then(|row| row.get(0)).cloned().unwrap_or(Value::Null);
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).ok_or_else(|| anyhow::anyhow!("hot row: {v}"))
}

/// The table: each workload on each system, with the first system's
/// throughput as a ratio of the last's.
pub fn table(figures: &[Figures]) -> String {
    let mut s = String::from(
        "| operation | system | ops/s | p50 ms | p99 ms | server core-ms per op | errors | unknown | ratio |\n\
         |---|---|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for basic in Basic::ALL {
        let rows: Vec<&Figures> = figures.iter().filter(|f| f.basic == basic).collect();
        let baseline = rows.last().map(|f| f.per_s()).unwrap_or(0.0);
        for f in &rows {
            let errors = if f.errors.is_empty() { "0".to_string() } else { format!("{:?}", f.errors) };
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {errors} | {} | {:.3} |\n",
                basic.name(),
                f.system,
                f.per_s(),
                f.ms(0.5),
                f.ms(0.99),
                f.core_ms_per_op(),
                f.unknown,
                f.per_s() / baseline.max(f64::MIN_POSITIVE),
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_written_in_highest_first() {
        let sql = "SELECT $1, $10, $2";
        let params: Vec<i64> = (1..=10).map(|i| i * 100).collect();
        assert_eq!(inline(sql, &params), "SELECT 100, 1000, 200");
    }
}
