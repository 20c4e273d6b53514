//! Micro-benchmarks of deterministic transactions: bank transfers between
//! two accounts, either both on one vShard (single-shard: the vShard leader
//! runs it, no sequencer) or on two vShards (cross-shard: sequenced into an
//! epoch, executed by both participants). Closed loop: each client sends
//! its next transfer when the previous one is answered.
//!
//! Reads: point reads of rows that writers keep updating (`HotRead`) and of
//! rows of the same vShard that nobody writes (`ColdRead`), under the same
//! write load; the ratio shows how long a read waits for writes of its row.
//! The same with cross-shard writers (`HotCrossRead`, `ColdCrossRead`): a
//! read waits for an earlier cross-shard transaction on its row to apply.
//!
//! Predicates: a transaction updating the 10 rows (over many vShards) whose
//! non-key column `tag` equals a value — given as a parameter, so the
//! gateway reconnoitres it (`PredicateRecon`), or as a value read by an
//! earlier statement, so it cannot and the statement locks and reads the
//! whole table (`PredicateLocked`). Both read one row first.
//!
//! Queries over every vShard: the sum of a 10,000-row table that cross-shard
//! writers keep transferring within (`SumWritten`), and of one nobody
//! writes (`SumNotWritten`), under the same writers; each reads every
//! vShard as of one epoch. The writers' own throughput is reported too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use ordo_bench::target::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    SingleShard,
    CrossShard,
    HotRead,
    ColdRead,
    HotCrossRead,
    ColdCrossRead,
    PredicateRecon,
    PredicateLocked,
    SumWritten,
    SumNotWritten,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::SingleShard => "single-shard transfer",
            Workload::CrossShard => "cross-shard transfer",
            Workload::HotRead => "read of a row being written",
            Workload::ColdRead => "read of a row not written",
            Workload::HotCrossRead => "read of a row in cross-shard transfers",
            Workload::ColdCrossRead => "read of a row not in transfers",
            Workload::PredicateRecon => "UPDATE by a non-key predicate, reconnoitred",
            Workload::PredicateLocked => "UPDATE by a non-key predicate, table locked",
            Workload::SumWritten => "sum over a table in cross-shard transfers",
            Workload::SumNotWritten => "sum over a table not written",
        }
    }
}

/// Accounts per table. Single-shard accounts sit in `BRANCHES` branches
/// (the partition key), so two accounts of one branch share a vShard.
pub const ACCOUNTS: i64 = 10_000;
const BRANCHES: i64 = 100;
/// Distinct `tag` values of `bench_tagged` (`ACCOUNTS` rows, tag = id % TAGS).
pub const TAGS: i64 = 1_000;

pub async fn prepare(target: &dyn Target) -> anyhow::Result<()> {
    let ddl = [
        "DROP TABLE IF EXISTS bench_acct",
        "DROP TABLE IF EXISTS bench_branch_acct",
        "DROP TABLE IF EXISTS bench_tagged",
        "CREATE TABLE bench_acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)",
        "CREATE TABLE bench_tagged (id INT PRIMARY KEY, tag INT NOT NULL, v BIGINT NOT NULL)",
        "CREATE TABLE bench_branch_acct (branch INT, id INT, bal BIGINT NOT NULL, PRIMARY KEY (branch, id)) PARTITION BY (branch)",
    ];
    for sql in ddl {
        target.execute(0, sql, json!([])).await.map_err(|e| anyhow::anyhow!("{sql}: {e:?}"))?;
    }
    for chunk in (0..ACCOUNTS).collect::<Vec<_>>().chunks(500) {
        let rows: Vec<String> = chunk.iter().map(|i| format!("({i}, 1000000)")).collect();
        let sql = format!("INSERT INTO bench_acct VALUES {}", rows.join(", "));
        target.execute(0, &sql, json!([])).await.map_err(|e| anyhow::anyhow!("loading: {e:?}"))?;
        let rows: Vec<String> = chunk.iter().map(|i| format!("({}, {i}, 1000000)", i % BRANCHES)).collect();
        let sql = format!("INSERT INTO bench_branch_acct VALUES {}", rows.join(", "));
        target.execute(0, &sql, json!([])).await.map_err(|e| anyhow::anyhow!("loading: {e:?}"))?;
        let rows: Vec<String> = chunk.iter().map(|i| format!("({i}, {}, 0)", i % TAGS)).collect();
        let sql = format!("INSERT INTO bench_tagged VALUES {}", rows.join(", "));
        target.execute(0, &sql, json!([])).await.map_err(|e| anyhow::anyhow!("loading: {e:?}"))?;
    }
    Ok(())
}

pub struct Figures {
    pub workload: Workload,
    pub clients: usize,
    pub committed: u64,
    pub seconds: f64,
    pub latency_us: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Transactions the background writers committed meanwhile.
    pub writer_committed: u64,
}

impl Figures {
    pub fn writer_tps(&self) -> f64 {
        self.writer_committed as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    pub fn tps(&self) -> f64 {
        self.committed as f64 / self.seconds
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// The errors as a table cell: `0`, or each SQLSTATE's count.
    pub fn errors_cell(&self) -> String {
        if self.errors.is_empty() {
            "0".to_string()
        } else {
            format!("{:?}", self.errors)
        }
    }
}

/// xorshift64*: each client its own reproducible stream.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: i64) -> i64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as i64
    }
}

const SINGLE: &str = "BEGIN; \
    UPDATE bench_branch_acct SET bal = bal - $3 WHERE branch = $1 AND id = $2; \
    UPDATE bench_branch_acct SET bal = bal + $3 WHERE branch = $1 AND id = $4; COMMIT";
const CROSS: &str = "BEGIN; \
    UPDATE bench_acct SET bal = bal - $2 WHERE id = $1; \
    UPDATE bench_acct SET bal = bal + $2 WHERE id = $3; COMMIT";

const READ: &str = "SELECT bal FROM bench_branch_acct WHERE branch = $1 AND id = $2";
/// `$1`: a row whose id is the tag to update (ids below TAGS have tag = id).
const PREDICATE_RECON: &str = "BEGIN; SELECT tag AS t FROM bench_tagged WHERE id = $1; \
    UPDATE bench_tagged SET v = v + 1 WHERE tag = $1; COMMIT";
const PREDICATE_LOCKED: &str = "BEGIN; SELECT tag AS t FROM bench_tagged WHERE id = $1; \
    UPDATE bench_tagged SET v = v + 1 WHERE tag = $t; COMMIT";
/// Writers that keep transferring among the hot accounts during reads.
pub const READ_WRITERS: usize = 8;
/// Accounts of branch 0 (one vShard): the writers move money among the
/// first four, and the others are only read.
const HOT: [i64; 4] = [0, BRANCHES, 2 * BRANCHES, 3 * BRANCHES];
const COLD: [i64; 4] = [4 * BRANCHES, 5 * BRANCHES, 6 * BRANCHES, 7 * BRANCHES];

/// Accounts of `bench_acct` (on different vShards, likely) that
/// cross-shard writers keep transferring among, and accounts nobody writes.
const HOT_CROSS: [i64; 4] = [11, 2_222, 5_555, 8_888];
const COLD_CROSS: [i64; 4] = [12, 2_223, 5_556, 8_889];
const CROSS_READ: &str = "SELECT bal FROM bench_acct WHERE id = $1";

/// Transfers among the hot accounts until `deadline`: single-shard ones
/// among `HOT`, or (`cross`) cross-shard ones among `HOT_CROSS`.
async fn hot_writer(target: Arc<dyn Target>, c: usize, deadline: Instant, cross: bool) -> (u64, BTreeMap<String, u64>) {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ ((c as u64 + 1) << 24));
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut committed = 0;
    while Instant::now() < deadline {
        let a = rng.below(HOT.len() as i64) as usize;
        let b = (a + 1 + rng.below(HOT.len() as i64 - 1) as usize) % HOT.len();
        let done = if cross {
            target.execute(c, CROSS, json!([HOT_CROSS[a], 1, HOT_CROSS[b]])).await
        } else {
            target.execute(c, SINGLE, json!([0, HOT[a], 1, HOT[b]])).await
        };
        match done {
            Ok(_) => committed += 1,
            Err(e) => *errors.entry(e.code).or_default() += 1,
        }
    }
    (committed, errors)
}

/// The statement and parameters of one request of `workload`.
fn request(workload: Workload, rng: &mut Rng) -> (&'static str, serde_json::Value) {
    let amount = 1 + rng.below(100);
    match workload {
        Workload::SingleShard => {
            // Two accounts of one branch: ids congruent mod BRANCHES.
            let branch = rng.below(BRANCHES);
            let per = ACCOUNTS / BRANCHES;
            let a = branch + BRANCHES * rng.below(per);
            let b = branch + BRANCHES * ((a / BRANCHES + 1 + rng.below(per - 1)) % per);
            (SINGLE, json!([branch, a, amount, b]))
        }
        Workload::CrossShard => {
            let a = rng.below(ACCOUNTS);
            let b = (a + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            (CROSS, json!([a, amount, b]))
        }
        Workload::HotRead => (READ, json!([0, HOT[rng.below(HOT.len() as i64) as usize]])),
        Workload::ColdRead => (READ, json!([0, COLD[rng.below(COLD.len() as i64) as usize]])),
        Workload::HotCrossRead => (CROSS_READ, json!([HOT_CROSS[rng.below(HOT_CROSS.len() as i64) as usize]])),
        Workload::ColdCrossRead => (CROSS_READ, json!([COLD_CROSS[rng.below(COLD_CROSS.len() as i64) as usize]])),
        Workload::PredicateRecon => (PREDICATE_RECON, json!([rng.below(TAGS)])),
        Workload::PredicateLocked => (PREDICATE_LOCKED, json!([rng.below(TAGS)])),
        Workload::SumWritten => ("SELECT sum(bal) FROM bench_acct", json!([])),
        Workload::SumNotWritten => ("SELECT sum(v) FROM bench_tagged", json!([])),
    }
}

/// The writers that run beside the readers of read workloads (none for
/// the others), numbered after the readers.
fn spawn_writers(
    target: &Arc<dyn Target>,
    workload: Workload,
    clients: usize,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<(u64, BTreeMap<String, u64>)>> {
    match workload {
        Workload::HotRead
        | Workload::ColdRead
        | Workload::HotCrossRead
        | Workload::ColdCrossRead
        | Workload::SumWritten
        | Workload::SumNotWritten => {
            let cross = !matches!(workload, Workload::HotRead | Workload::ColdRead);
            (0..READ_WRITERS).map(|w| tokio::spawn(hot_writer(target.clone(), clients + w, deadline, cross))).collect()
        }
        Workload::SingleShard | Workload::CrossShard | Workload::PredicateRecon | Workload::PredicateLocked => {
            Vec::new()
        }
    }
}

pub async fn run(target: Arc<dyn Target>, workload: Workload, clients: usize, duration: Duration) -> Figures {
    let started = Instant::now();
    let deadline = started + duration;
    let writers = spawn_writers(&target, workload, clients, deadline);
    let tasks = (0..clients).map(|c| {
        let target = target.clone();
        tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((c as u64 + 1) << 20));
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut committed = 0u64;
            while Instant::now() < deadline {
                let (sql, params) = request(workload, &mut rng);
                let t0 = Instant::now();
                match target.execute(c, sql, params).await {
                    Ok(_) => {
                        committed += 1;
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    }
                    Err(e) => {
                        let n = errors.entry(e.code.clone()).or_default();
                        if *n == 0 {
                            eprintln!("client {c}: {} {}", e.code, e.message);
                        }
                        *n += 1;
                    }
                }
            }
            (committed, hist, errors)
        })
    });
    let mut figures = Figures {
        workload,
        clients,
        committed: 0,
        seconds: 0.0,
        latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
        errors: BTreeMap::new(),
        writer_committed: 0,
    };
    // Spawned now (the iterator is lazy), to run alongside the writers.
    let tasks: Vec<_> = tasks.collect();
    for w in futures::future::join_all(writers).await {
        let (committed, errors) = w.expect("writer task");
        figures.writer_committed += committed;
        for (k, v) in errors {
            *figures.errors.entry(format!("writer {k}")).or_default() += v;
        }
    }
    for t in futures::future::join_all(tasks).await {
        let (n, h, e) = t.expect("client task");
        figures.committed += n;
        figures.latency_us.add(h).expect("same bounds");
        for (k, v) in e {
            *figures.errors.entry(k).or_default() += v;
        }
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures
}

/// Sum of all balances of both tables: transfers move money, never make it.
pub async fn check_totals(target: &dyn Target) -> anyhow::Result<()> {
    for table in ["bench_acct", "bench_branch_acct"] {
        let r = target
            .execute(0, &format!("SELECT sum(bal), count(*) FROM {table}"), json!([]))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let sum = r[0]["rows"][0][0].as_i64().unwrap_or(-1);
        let n = r[0]["rows"][0][1].as_i64().unwrap_or(-1);
        anyhow::ensure!(
            sum == n * 1_000_000 && n == ACCOUNTS,
            "{table}: total {sum} over {n} accounts is not conserved"
        );
    }
    Ok(())
}
