//! Cross-shard transactions on three real `ordo` processes: a bank under
//! SIGKILLs with concurrent consistent reads, and a high-contention
//! counter workload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_tests::{Cluster, SqlClient};
use serde_json::{json, Value};

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

async fn three_nodes(extra: &[&str]) -> Cluster {
    let c = Cluster::start(ORDO, 3, extra);
    c.wait_healthy(HEALTHY_WITHIN).await;
    c
}

fn as_i64(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v}"))
}

/// xorshift64*: a reproducible stream per client, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const ACCOUNTS: i64 = 100;
const INITIAL: i64 = 1_000;

const TRANSFER: &str = "BEGIN; \
    UPDATE acct SET bal = bal - $3 WHERE id = $1; \
    UPDATE acct SET bal = bal + $3 WHERE id = $2; \
    INSERT INTO transfers VALUES ($4, $1, $2, $3); \
    COMMIT";

/// The outcome of one client's transfers.
#[derive(Default)]
struct Tally {
    acked: Vec<i64>,
    /// Errors a client cannot tell the outcome of (node killed mid-request,
    /// outcome unknown): the transfer may or may not have happened.
    unknown: Vec<i64>,
    /// One message per kind of unknown outcome, for the report.
    unknown_kinds: BTreeMap<String, usize>,
    /// Errors that mean "did not happen" (e.g. no leader yet).
    refused: usize,
    /// Anything else: a deterministic database has no reason for these.
    unexpected: Vec<String>,
}

async fn transfers(db: SqlClient, client: u64, stop: Arc<AtomicBool>, down: Arc<AtomicU64>) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (client + 1).wrapping_mul(0x1000_0001));
    let mut tally = Tally::default();
    let mut seq = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let from = rng.below(ACCOUNTS as u64) as i64;
        let to = (from + 1 + rng.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
        let amount = 1 + rng.below(50) as i64;
        seq += 1;
        let id = client as i64 * 1_000_000 + seq;
        // Through every node, skipping the one that is down.
        let mut node = 1 + (seq as u64 + client) % 3;
        if node == down.load(Ordering::Relaxed) {
            node = 1 + node % 3;
        }
        match db.sql(node, TRANSFER, json!([from, to, amount, id])).await {
            Ok(r) => {
                assert_eq!(r.len(), 5, "one result per statement");
                assert_eq!(r[1]["rows_affected"], 1);
                assert_eq!(r[2]["rows_affected"], 1);
                tally.acked.push(id);
            }
            // Connection lost or the node gave up waiting: unknown outcome.
            Err(e) if e.status == 0 || e.code == "57P03" => {
                tally.unknown.push(id);
                let kind: String = e.message.chars().take(60).collect();
                *tally.unknown_kinds.entry(kind).or_default() += 1;
                // Give the cluster a moment (a node is down or electing).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) if e.code == "53300" => tally.refused += 1,
            Err(e) => tally.unexpected.push(format!("{e:?}")),
        }
    }
    tally
}

/// Rows per batch of [`batches`]: spread over vShards by their keys.
const BATCH_ROWS: i64 = 8;

/// What a batch inserter saw: batches acknowledged, batches refused with a
/// duplicate key on purpose, and anything unexpected.
#[derive(Default)]
struct Batches {
    acked: BTreeSet<i64>,
    duplicate: BTreeSet<i64>,
    unexpected: Vec<String>,
}

/// Inserts batches of rows over several vShards in single autocommit
/// statements; every fourth batch repeats a key of an earlier acknowledged
/// one, so it must fail as a whole.
async fn batches(db: SqlClient, stop: Arc<AtomicBool>, down: Arc<AtomicU64>) -> Batches {
    let mut out = Batches::default();
    let mut batch = 0i64;
    while !stop.load(Ordering::Relaxed) {
        batch += 1;
        let mut rows: Vec<String> = (0..BATCH_ROWS).map(|j| format!("({}, {batch})", batch * 100 + j)).collect();
        let dup_of = out.acked.iter().next_back().copied().filter(|_| batch % 4 == 0);
        if let Some(earlier) = dup_of {
            rows[BATCH_ROWS as usize - 1] = format!("({}, {batch})", earlier * 100);
        }
        let mut node = 1 + batch as u64 % 3;
        if node == down.load(Ordering::Relaxed) {
            node = 1 + node % 3;
        }
        match db.sql(node, &format!("INSERT INTO batches VALUES {}", rows.join(", ")), json!([])).await {
            Ok(r) if dup_of.is_none() && r[0]["rows_affected"] == BATCH_ROWS => {
                out.acked.insert(batch);
            }
            Ok(r) => out.unexpected.push(format!("batch {batch} (duplicate: {dup_of:?}) succeeded: {r:?}")),
            Err(e) if e.code == "23505" && dup_of.is_some() => {
                out.duplicate.insert(batch);
            }
            // Unknown outcome or refused: either way, all or nothing.
            Err(e) if e.status == 0 || e.code == "57P03" || e.code == "53300" => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => out.unexpected.push(format!("batch {batch}: {e:?}")),
        }
    }
    out
}

/// Reads the total of all accounts in one query (or, every third time, in
/// a transaction that also records it in `audits`), concurrently with the
/// transfers: a consistent snapshot always sees the same total.
async fn auditor(db: SqlClient, stop: Arc<AtomicBool>, down: Arc<AtomicU64>) -> (usize, Vec<String>) {
    let mut good = 0;
    let mut wrong = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let mut node = 1 + i % 3;
        if node == down.load(Ordering::Relaxed) {
            node = 1 + node % 3;
        }
        if i.is_multiple_of(3) {
            // A transaction that reads every vShard and writes one: all but
            // one or two participants are passive (serve reads, run nothing).
            let sql =
                "BEGIN; SELECT sum(bal) AS s, count(*) AS n FROM acct; INSERT INTO audits VALUES ($1, $s, $n); COMMIT";
            if let Ok(r) = db.sql(node, sql, json!([i])).await {
                let (sum, n) = (as_i64(&r[1]["rows"][0][0]), as_i64(&r[1]["rows"][0][1]));
                if sum == ACCOUNTS * INITIAL && n == ACCOUNTS {
                    good += 1;
                } else {
                    wrong.push(format!("{sql}: sum {sum}, count {n}"));
                }
            }
            continue;
        }
        let sql = if i.is_multiple_of(2) {
            "SELECT sum(bal), count(*) FROM acct"
        } else {
            // Two tables in one query: both read at the same point.
            "SELECT sum(a.bal), count(*) FROM acct a JOIN acct b ON a.id = b.id"
        };
        if let Ok(r) = db.sql(node, sql, json!([])).await {
            let (sum, n) = (as_i64(&r[0]["rows"][0][0]), as_i64(&r[0]["rows"][0][1]));
            if sum == ACCOUNTS * INITIAL && n == ACCOUNTS {
                good += 1;
            } else {
                wrong.push(format!("{sql}: sum {sum}, count {n}"));
            }
        }
    }
    (good, wrong)
}

/// 100 accounts over all vShards, 16 clients transferring at random through
/// all three nodes for 60 s while one node is SIGKILLed and restarted twice,
/// and an auditor summing all balances in single queries. Afterwards: the
/// total is unchanged, every acknowledged transfer is there, every account's
/// balance is explained exactly by the transfers recorded (so none is half
/// applied), every audit saw the full total, and all replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_survive_sigkills_and_conserve_the_total() {
    let seconds: u64 = std::env::var("ORDO_BANK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut c = three_nodes(&["--snapshot-logs", "500"]).await;
    c.sql(1, "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "CREATE TABLE transfers (id BIGINT PRIMARY KEY, src INT, dst INT, amount BIGINT)", json!([]))
        .await
        .unwrap();
    c.sql(1, "CREATE TABLE batches (id BIGINT PRIMARY KEY, batch BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "CREATE TABLE audits (id BIGINT PRIMARY KEY, s BIGINT NOT NULL, n BIGINT NOT NULL)", json!([]))
        .await
        .unwrap();
    let rows: Vec<String> = (0..ACCOUNTS).map(|i| format!("({i}, {INITIAL})")).collect();
    c.sql(1, &format!("INSERT INTO acct VALUES {}", rows.join(", ")), json!([])).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..16).map(|i| tokio::spawn(transfers(c.client(), i, stop.clone(), down.clone()))).collect();
    let audit = tokio::spawn(auditor(c.client(), stop.clone(), down.clone()));
    let inserter = tokio::spawn(batches(c.client(), stop.clone(), down.clone()));

    // Two SIGKILL + restart rounds, on different nodes, spread over the run.
    let started = Instant::now();
    let at = |f: u64| started + Duration::from_secs(seconds * f / 12);
    for (victim, kill_at, restart_at) in [(2u64, at(2), at(4)), (3u64, at(6), at(8))] {
        tokio::time::sleep_until(kill_at.into()).await;
        down.store(victim, Ordering::Relaxed);
        c.kill(victim);
        tokio::time::sleep_until(restart_at.into()).await;
        c.restart(victim);
        c.wait_healthy(HEALTHY_WITHIN).await;
        down.store(0, Ordering::Relaxed);
    }
    tokio::time::sleep_until((started + Duration::from_secs(seconds)).into()).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = BTreeSet::new();
    let mut unknown = 0;
    let mut refused = 0;
    let mut unexpected = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for h in clients {
        let t = h.await.unwrap();
        for (k, n) in t.unknown_kinds {
            *kinds.entry(k).or_default() += n;
        }
        acked.extend(t.acked);
        unknown += t.unknown.len();
        refused += t.refused;
        unexpected.extend(t.unexpected);
    }
    let (audits, wrong_audits) = audit.await.unwrap();
    eprintln!(
        "bank: {} acknowledged, {unknown} unknown, {refused} refused, {} unexpected; {audits} audits",
        acked.len(),
        unexpected.len()
    );
    eprintln!("unknown outcomes by kind: {kinds:#?}");
    assert!(unexpected.is_empty(), "transfers failed for no good reason: {:?}", &unexpected[..unexpected.len().min(5)]);
    assert!(wrong_audits.is_empty(), "inconsistent reads: {:?}", &wrong_audits[..wrong_audits.len().min(5)]);
    assert!(acked.len() > 100, "too few transfers went through: {}", acked.len());
    assert!(audits > 5, "too few audits succeeded: {audits}");

    // Every node has applied everything before we look (and verify compares).
    let balances = match c.sql_retry(1, "SELECT id, bal FROM acct ORDER BY id", json!([]), HEALTHY_WITHIN).await {
        Ok(b) => b,
        Err(e) => panic!("final read failed: {e:?}\ntransaction state: {:#}", c.transactions_state().await),
    };
    let recorded =
        c.sql_retry(2, "SELECT id, src, dst, amount FROM transfers", json!([]), HEALTHY_WITHIN).await.unwrap();
    let mut expected = vec![INITIAL; ACCOUNTS as usize];
    let mut ids = BTreeSet::new();
    for row in recorded[0]["rows"].as_array().unwrap() {
        let (id, src, dst, amount) = (as_i64(&row[0]), as_i64(&row[1]), as_i64(&row[2]), as_i64(&row[3]));
        ids.insert(id);
        expected[src as usize] -= amount;
        expected[dst as usize] += amount;
    }
    let missing: Vec<&i64> = acked.difference(&ids).collect();
    assert!(missing.is_empty(), "acknowledged transfers missing: {missing:?}");
    let got: Vec<i64> = balances[0]["rows"].as_array().unwrap().iter().map(|r| as_i64(&r[1])).collect();
    assert_eq!(got.len(), ACCOUNTS as usize);
    assert_eq!(got.iter().sum::<i64>(), ACCOUNTS * INITIAL, "money was created or destroyed");
    assert_eq!(got, expected, "balances are not explained by the recorded transfers: a transfer was half-applied");

    // Multi-vShard INSERTs: each batch is there whole or not at all.
    let inserted = inserter.await.unwrap();
    assert!(
        inserted.unexpected.is_empty(),
        "batch inserts: {:?}",
        &inserted.unexpected[..inserted.unexpected.len().min(5)]
    );
    let r =
        c.sql_retry(3, "SELECT batch, count(*) FROM batches GROUP BY batch", json!([]), HEALTHY_WITHIN).await.unwrap();
    let present: BTreeMap<i64, i64> =
        r[0]["rows"].as_array().unwrap().iter().map(|row| (as_i64(&row[0]), as_i64(&row[1]))).collect();
    eprintln!(
        "batches: {} acknowledged, {} refused as duplicates, {} present",
        inserted.acked.len(),
        inserted.duplicate.len(),
        present.len()
    );
    let partial: Vec<_> = present.iter().filter(|(_, n)| **n != BATCH_ROWS).collect();
    assert!(partial.is_empty(), "batches partly inserted: {partial:?}");
    let missing: Vec<_> = inserted.acked.iter().filter(|b| !present.contains_key(b)).collect();
    assert!(missing.is_empty(), "acknowledged batches missing: {missing:?}");
    let leaked: Vec<_> = inserted.duplicate.iter().filter(|b| present.contains_key(b)).collect();
    assert!(leaked.is_empty(), "batches that failed are there: {leaked:?}");
    assert!(inserted.acked.len() > 10 && !inserted.duplicate.is_empty(), "too few batches went through");

    // Audits recorded by transactions, acknowledged or not, saw it all.
    let r = c.sql_retry(1, "SELECT s, n, count(*) FROM audits GROUP BY s, n", json!([]), HEALTHY_WITHIN).await.unwrap();
    let recorded: Vec<(i64, i64, i64)> = r[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (as_i64(&row[0]), as_i64(&row[1]), as_i64(&row[2])))
        .collect();
    eprintln!("audits recorded by transactions: {recorded:?}");
    assert!(matches!(recorded[..], [(s, n, k)] if s == ACCOUNTS * INITIAL && n == ACCOUNTS && k > 0), "{recorded:?}");

    let v = c.verify(3).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// 32 clients incrementing the same 4 rows (on different vShards) in
/// two-row transactions: nothing aborts, nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_rows_under_contention_lose_no_increment_and_never_abort() {
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE hot (id INT PRIMARY KEY, n BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO hot VALUES (1, 0), (2, 0), (3, 0), (4, 0)", json!([])).await.unwrap();
    let per_client = 15u64;
    let work = (0..32u64).map(|client| {
        let db = c.client();
        tokio::spawn(async move {
            let mut touched = [0i64; 5];
            let mut errors = Vec::new();
            for i in 0..per_client {
                let a = 1 + (client + i) % 4;
                let b = 1 + (client + i + 1 + i % 3) % 4;
                let b = if b == a { 1 + a % 4 } else { b };
                let sql = "BEGIN; UPDATE hot SET n = n + 1 WHERE id = $1; UPDATE hot SET n = n + 1 WHERE id = $2 RETURNING n; COMMIT";
                match db.sql(1 + (client + i) % 3, sql, json!([a, b])).await {
                    Ok(r) => {
                        assert!(as_i64(&r[2]["rows"][0][0]) >= 1, "RETURNING sees the increment");
                        touched[a as usize] += 1;
                        touched[b as usize] += 1;
                    }
                    Err(e) => errors.push(format!("{e:?}")),
                }
            }
            (touched, errors)
        })
    });
    let mut expected = [0i64; 5];
    let mut errors = Vec::new();
    for h in futures::future::join_all(work).await {
        let (t, e) = h.unwrap();
        for k in 1..5 {
            expected[k] += t[k];
        }
        errors.extend(e);
    }
    assert!(errors.is_empty(), "{} transactions failed (aborts?): {:?}", errors.len(), &errors[..errors.len().min(5)]);
    let r = c.sql(2, "SELECT id, n FROM hot ORDER BY id", json!([])).await.unwrap();
    let got: BTreeMap<i64, i64> =
        r[0]["rows"].as_array().unwrap().iter().map(|r| (as_i64(&r[0]), as_i64(&r[1]))).collect();
    for k in 1..5i64 {
        assert_eq!(got[&k], expected[k as usize], "row {k}: every acknowledged increment, exactly once");
    }
    assert_eq!(got.values().sum::<i64>(), 2 * 32 * per_client as i64);
}

/// Sum over the nodes of the `/metrics` sample whose line starts with `series `.
async fn metric_sum(c: &Cluster, series: &str) -> f64 {
    let mut sum = 0.0;
    for node in 1..=3 {
        let text = reqwest::get(format!("{}/metrics", c.url(node))).await.unwrap().text().await.unwrap();
        let line = text.lines().find(|l| l.starts_with(&format!("{series} ")));
        sum += line.and_then(|l| l.rsplit(' ').next()).map_or(0.0, |v| v.parse().unwrap());
    }
    sum
}

/// With `--early-lock-release`, single-row writes release their locks once
/// their entry is queued, not once it commits: the next write of the row reads
/// the pending value. Increments of one row from many clients must still
/// all count, once each, and of many INSERTs of one new key exactly one
/// succeeds — each later one sees the pending row and fails with 23505.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_read_the_pending_rows_of_the_writes_before_them() {
    let c = three_nodes(&["--early-lock-release"]).await;
    c.sql(1, "CREATE TABLE hot (id INT PRIMARY KEY, n BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO hot VALUES (1, 0)", json!([])).await.unwrap();
    let per_client = 20u64;
    let work = (0..16u64).map(|client| {
        let db = c.client();
        tokio::spawn(async move {
            let (mut acked, mut inserted, mut duplicate) = (0i64, 0, 0);
            for i in 0..per_client {
                let node = 1 + (client + i) % 3;
                let r = db.sql(node, "UPDATE hot SET n = n + 1 WHERE id = 1", json!([])).await;
                assert_eq!(r.map_err(|e| format!("{e:?}")).map(|r| as_i64(&r[0]["rows_affected"])), Ok(1));
                acked += 1;
                // Every client inserts the same new keys 1000, 1001...
                match db.sql(node, "INSERT INTO hot VALUES ($1, 0)", json!([1000 + i])).await {
                    Ok(_) => inserted += 1,
                    Err(e) if e.code == "23505" => duplicate += 1,
                    Err(e) => panic!("insert: {e:?}"),
                }
            }
            (acked, inserted, duplicate)
        })
    });
    let (mut acked, mut inserted, mut duplicate) = (0, 0, 0);
    for h in futures::future::join_all(work).await {
        let (a, i, d) = h.unwrap();
        (acked, inserted, duplicate) = (acked + a, inserted + i, duplicate + d);
    }
    let r = c.sql(2, "SELECT n FROM hot WHERE id = 1", json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), acked, "every acknowledged increment, exactly once");
    assert_eq!(inserted, per_client as i64, "exactly one INSERT of each key succeeds");
    assert_eq!(duplicate, 15 * per_client as i64);
    let r = c.sql(3, "SELECT count(*) FROM hot", json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), 1 + per_client as i64);
    let early = metric_sum(&c, "ordo_scheduler_write_lock_releases_total{when=\"queued\"}").await;
    assert!(early > 0.0, "writes released their locks once queued");
}

/// Strict serializability across separate requests: a writer sets rows 1
/// and 2 (on different vShards) to `i = 1, 2, 3...` in one cross-shard
/// transaction after another, while readers read one row and then, in a
/// later request, the other. Once a read has seen `i` on one row, the
/// transaction that wrote it precedes every later request, so the other
/// row must read at least `i`, whichever node serves each read — also
/// when a read is ordered before a transaction not yet applied anywhere
/// rather than waiting for it. Row 3
/// counts single-shard increments: a read sees every acknowledged one and
/// never less than an earlier read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_a_read_never_sees_less_of_a_cross_shard_transaction() {
    let seconds: u64 = std::env::var("ORDO_PAIR_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE pair (id INT PRIMARY KEY, n BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO pair VALUES (1, 0), (2, 0), (3, 0)", json!([])).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Row 3 counts single-shard increments; `acked` is how many were
    // acknowledged. Reads do not wait for unfinished single-shard writes,
    // but must see every acknowledged one and never go back.
    let acked = Arc::new(AtomicU64::new(0));
    let counter = {
        let (db, stop, acked) = (c.client(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                db.sql(1 + i % 3, "UPDATE pair SET n = n + 1 WHERE id = 3", json!([]))
                    .await
                    .expect("increments succeed");
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    let writer = {
        let (db, stop) = (c.client(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sql = "BEGIN; UPDATE pair SET n = $1 WHERE id = 1; UPDATE pair SET n = $1 WHERE id = 2; COMMIT";
                db.sql(1 + i as u64 % 3, sql, json!([i])).await.expect("the writer's transactions succeed");
            }
            i
        })
    };
    let readers: Vec<_> = (0..6u64)
        .map(|r| {
            let (db, stop, acked) = (c.client(), stop.clone(), acked.clone());
            tokio::spawn(async move {
                let (first, second) = if r % 2 == 0 { (1, 2) } else { (2, 1) };
                let (mut reads, mut anomalies) = (0u64, Vec::new());
                let mut last_count = 0i64;
                let mut k = r;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let read = |id: i64, node: u64| {
                        let db = db.clone();
                        async move {
                            let rows = db
                                .sql(node, "SELECT n FROM pair WHERE id = $1", json!([id]))
                                .await
                                .expect("reads succeed");
                            as_i64(&rows[0]["rows"][0][0])
                        }
                    };
                    let a = read(first, 1 + k % 3).await;
                    let b = read(second, 1 + (k + 1) % 3).await;
                    reads += 1;
                    if b < a {
                        anomalies.push(format!("row {first} read {a}, then row {second} read {b}"));
                    }
                    let floor = acked.load(Ordering::SeqCst) as i64;
                    let count = read(3, 1 + (k + 2) % 3).await;
                    if count < floor.max(last_count) {
                        anomalies.push(format!(
                            "row 3 read {count} after {floor} increments were acknowledged and {last_count} was read"
                        ));
                    }
                    last_count = count;
                }
                (reads, anomalies)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writer.await.unwrap();
    counter.await.unwrap();
    let (mut reads, mut anomalies) = (0, Vec::new());
    for h in readers {
        let (n, a) = h.await.unwrap();
        reads += n;
        anomalies.extend(a);
    }
    eprintln!(
        "pair: {writes} cross-shard writes, {} single-shard increments, {reads} read pairs, {} anomalies",
        acked.load(Ordering::SeqCst),
        anomalies.len()
    );
    assert!(writes > 10 && reads > 10, "the workload ran: {writes} writes, {reads} read pairs");
    assert!(
        anomalies.is_empty(),
        "{} reads saw a transaction on one vShard only: {:?}",
        anomalies.len(),
        &anomalies[..anomalies.len().min(5)]
    );
    // Reads of rows 1 and 2 met the writer's transactions; those not yet
    // applied anywhere were read around, not waited for.
    let counts =
        counters(&c, "reads_meeting_cross_shard_writes", &["ordered_before_unapplied_writes", "waited_for_writes"])
            .await;
    let (before, waited) = (counts["ordered_before_unapplied_writes"], counts["waited_for_writes"]);
    eprintln!("pair: reads that met cross-shard writes: {before} ordered before them, {waited} waited");
    assert!(before > 0, "no read was ordered before an unapplied cross-shard write");
}

/// Sums what every running node keeps of cross-shard transactions: the
/// outcome records on all its vShard replicas, the newest epoch its
/// sequencer replica applied and the first it still stores.
async fn retained(c: &Cluster) -> (u64, u64, u64) {
    let (mut outcomes, mut last, mut first) = (0u64, 0u64, u64::MAX);
    for node in c.transactions_state().await.as_array().unwrap() {
        for v in node["vshards"].as_array().unwrap_or(&Vec::new()) {
            outcomes += v["outcomes_stored"].as_u64().expect("outcome count");
        }
        last = last.max(node["epochs"]["last_applied"].as_u64().expect("epochs"));
        first = first.min(node["epochs"]["first_retained"].as_u64().expect("epochs"));
    }
    (outcomes, last, first)
}

/// Outcome records and epochs (all but the last) are dropped once every
/// vShard has completed them, on every replica alike; so are row versions
/// older than `--versions-keep-ms`. A node restarted afterwards resumes
/// past the dropped epochs, cross-shard transactions keep working, and
/// queries over every vShard read what they must.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outcomes_and_epochs_are_collected_once_every_vshard_completed_them() {
    let mut c =
        three_nodes(&["--collect-every-ms", "200", "--collect-lag-ms", "1000", "--versions-keep-ms", "1000"]).await;
    c.sql(1, "CREATE TABLE hot (id INT PRIMARY KEY, n BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO hot VALUES (1, 0), (2, 0), (3, 0), (4, 0)", json!([])).await.unwrap();
    let bump = "BEGIN; UPDATE hot SET n = n + 1 WHERE id = $1; UPDATE hot SET n = n + 1 WHERE id = $2; COMMIT";
    let run = |c: &Cluster, rounds: u64| {
        let work: Vec<_> = (0..8u64)
            .map(|client| {
                let db = c.client();
                tokio::spawn(async move {
                    for i in 0..rounds {
                        let (a, b) = (1 + (client + i) % 4, 1 + (client + i + 1) % 4);
                        db.sql(1 + (client + i) % 3, bump, json!([a, b])).await.expect("cross-shard transaction");
                    }
                })
            })
            .collect();
        futures::future::join_all(work)
    };
    for h in run(&c, 25).await {
        h.unwrap();
    }
    let (outcomes, last, _) = retained(&c).await;
    assert!(outcomes > 0 && last > 0, "transactions left outcomes ({outcomes}) and epochs ({last}) to collect");

    // Nothing runs now: everything up to `last` completes and is dropped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (outcomes, now_last, first) = retained(&c).await;
        // The last epoch always stays.
        if outcomes == 0 && first == now_last {
            eprintln!("collected: no outcome left, only the last epoch {now_last} kept");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not collected: {outcomes} outcomes, first retained {first}, last {now_last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // 400 row writes, 4 rows: every replica (3 of each vShard) drops all
    // but the newest version of each row.
    let superseded = 3 * (2 * 8 * 25 - 4);
    loop {
        let dropped = counters(&c, "row_versions", &["dropped"]).await["dropped"];
        if dropped >= superseded {
            eprintln!("row versions dropped: {dropped}");
            break;
        }
        assert!(Instant::now() < deadline, "row versions not collected: {dropped} of {superseded} dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = c.scalar(1, "SELECT SUM(n) FROM hot").await;
    assert_eq!(as_i64(&total), 2 * 8 * 25, "a query over every vShard reads the versions kept");

    // A node restarted now resumes from its durable progress, before the
    // first epoch still stored.
    c.kill(3);
    c.restart(3);
    c.wait_healthy(HEALTHY_WITHIN).await;
    for h in run(&c, 5).await {
        h.unwrap();
    }
    let total = c.scalar(2, "SELECT SUM(n) FROM hot").await;
    assert_eq!(as_i64(&total), 2 * 8 * 30, "every increment, before and after the collection");
    let v = c.verify(1).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// Four nodes, three replicas per group: one node hosts no replica of the
/// sequencer, so the schedulers of the vShards it leads read epochs from
/// the sequencer's leader. Transfers between accounts on every vShard,
/// through all four nodes, all commit; the total is conserved and the
/// replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vshards_led_by_a_node_without_a_sequencer_replica_take_cross_shard_transactions() {
    let c = Cluster::start(ORDO, 4, &["--replication", "3"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let mut without = Vec::new();
    for n in 1..=4u64 {
        let status = c.cluster_status(n).await;
        let groups = status["groups"].as_array().unwrap();
        if !groups.iter().any(|g| g["kind"] == "sequencer") {
            let leads = groups.iter().filter(|g| g["kind"] == "vshard" && g["leader"] == n).count();
            without.push((n, leads));
        }
    }
    assert!(
        matches!(without[..], [(_, leads)] if leads > 0),
        "one node without a sequencer replica, leading vShards: {without:?}"
    );

    c.sql(1, "CREATE TABLE acct (id INT PRIMARY KEY, bal BIGINT NOT NULL)", json!([])).await.unwrap();
    let rows: Vec<String> = (0..ACCOUNTS).map(|i| format!("({i}, {INITIAL})")).collect();
    c.sql(1, &format!("INSERT INTO acct VALUES {}", rows.join(", ")), json!([])).await.unwrap();
    let transfer =
        "BEGIN; UPDATE acct SET bal = bal - $3 WHERE id = $1; UPDATE acct SET bal = bal + $3 WHERE id = $2; COMMIT";
    let work: Vec<_> = (0..8u64)
        .map(|client| {
            let db = c.client();
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (client + 1));
                for i in 0..25u64 {
                    let src = rng.below(ACCOUNTS as u64) as i64;
                    let dst = (src + 1 + rng.below(ACCOUNTS as u64 - 1) as i64) % ACCOUNTS;
                    db.sql(1 + (client + i) % 4, transfer, json!([src, dst, 1 + rng.below(50)]))
                        .await
                        .expect("transfer");
                }
            })
        })
        .collect();
    for h in futures::future::join_all(work).await {
        h.unwrap();
    }
    let total = c.scalar(4, "SELECT SUM(bal) FROM acct").await;
    assert_eq!(as_i64(&total), ACCOUNTS * INITIAL, "money was created or destroyed");
    let v = c.verify(4).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// Counters `keys` of `section` in every node's `/v1/admin/transactions`, summed.
async fn counters(c: &Cluster, section: &str, keys: &[&'static str]) -> BTreeMap<&'static str, u64> {
    let mut sums = BTreeMap::new();
    for node in c.transactions_state().await.as_array().unwrap() {
        for &k in keys {
            *sums.entry(k).or_insert(0u64) += node[section][k].as_u64().unwrap_or(0);
        }
    }
    sums
}

/// Every node's reconnaissance counts, summed.
async fn recon_counts(c: &Cluster) -> BTreeMap<&'static str, u64> {
    counters(c, "reconnaissance", &["ordered", "stale", "gave_up"]).await
}

/// UPDATEs whose WHERE clause names no key, inside cross-shard
/// transactions, while single-shard writers add rows that match, move rows
/// into the match and write rows that do not match (each writer waits for
/// two more acknowledged transactions between its writes, so both stale
/// and valid reconnaissances occur). Every transaction must update exactly
/// the rows that match at its place in the order, which its reconnaissance
/// (keys found beforehand, re-checked at execution, retried when stale)
/// must not get wrong:
/// - a row that matched throughout was updated by every transaction;
/// - rows made to match one after another (each acknowledged before the
///   next is written) were updated by ever fewer transactions, never more;
/// - rows that never matched were not updated, and their own writes count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predicate_updates_in_transactions_update_exactly_the_matching_rows() {
    let seconds: u64 = std::env::var("ORDO_RECON_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE tagged (id INT PRIMARY KEY, grp INT NOT NULL, v BIGINT NOT NULL)", json!([])).await.unwrap();
    c.sql(1, "CREATE TABLE bumps (id INT PRIMARY KEY, n BIGINT NOT NULL)", json!([])).await.unwrap();
    // Rows 1..=60: group id % 3. Group 1 is what the transactions update.
    let rows: Vec<String> = (1..=60).map(|i| format!("({i}, {}, 0)", i % 3)).collect();
    c.sql(1, &format!("INSERT INTO tagged VALUES {}", rows.join(", ")), json!([])).await.unwrap();
    c.sql(1, "INSERT INTO bumps VALUES (1, 0)", json!([])).await.unwrap();
    let bump = "BEGIN; UPDATE tagged SET v = v + 1 WHERE grp = $1; UPDATE bumps SET n = n + 1 WHERE id = 1; COMMIT";
    // Alone, a reconnaissance cannot go stale.
    for i in 0..3u64 {
        let r = c.sql(1 + i, bump, json!([1])).await.unwrap();
        assert_eq!(as_i64(&r[1]["rows_affected"]), 20);
    }
    let quiet = recon_counts(&c).await;
    assert_eq!((quiet["ordered"], quiet["stale"]), (3, 0), "three reconnoitred transactions, none stale: {quiet:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let (progress, watch) = tokio::sync::watch::channel(0u64);
    let progress = Arc::new(progress);
    let updaters: Vec<_> = (0..4u64)
        .map(|client| {
            let (db, stop, progress) = (c.client(), stop.clone(), progress.clone());
            tokio::spawn(async move {
                let mut acked = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let r = db
                        .sql(1 + (client + acked as u64) % 3, bump, json!([1]))
                        .await
                        .expect("predicate updates succeed");
                    assert!(as_i64(&r[1]["rows_affected"]) >= 20, "the 20 rows of group 1 always match: {r:?}");
                    acked += 1;
                    progress.send_modify(|n| *n += 1);
                }
                acked
            })
        })
        .collect();
    // Waits until two more transactions were acknowledged; false once the
    // run is stopping (the updaters may not make two more).
    let paced = |watch: &tokio::sync::watch::Receiver<u64>, stop: &Arc<AtomicBool>| {
        let (mut watch, from, stop) = (watch.clone(), *watch.borrow(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), watch.wait_for(|n| *n >= from + 2)).await
                {
                    return true;
                }
            }
            false
        }
    };
    // Single-shard writers, each in order: new rows of group 1, rows of
    // group 2 moved to group 1, and increments of group-0 rows.
    let inserter = {
        let (db, stop, watch) = (c.client(), stop.clone(), watch.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            while paced(&watch, &stop).await && !stop.load(Ordering::Relaxed) {
                let id = 1_000 + ids.len() as i64;
                db.sql(1 + id as u64 % 3, "INSERT INTO tagged VALUES ($1, 1, 0)", json!([id])).await.expect("insert");
                ids.push(id);
            }
            ids
        })
    };
    let mover = {
        let (db, stop, watch) = (c.client(), stop.clone(), watch.clone());
        tokio::spawn(async move {
            let mut moved = Vec::new();
            for id in (1..=60i64).filter(|i| i % 3 == 2) {
                if !paced(&watch, &stop).await || stop.load(Ordering::Relaxed) {
                    break;
                }
                db.sql(1 + id as u64 % 3, "UPDATE tagged SET grp = 1 WHERE id = $1", json!([id])).await.expect("move");
                moved.push(id);
            }
            moved
        })
    };
    let toucher = {
        let (db, stop) = (c.client(), stop.clone());
        tokio::spawn(async move {
            let mut touched: BTreeMap<i64, i64> = BTreeMap::new();
            let mut k = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let id = 3 * (1 + k % 20);
                db.sql(1 + k as u64 % 3, "UPDATE tagged SET v = v + 1 WHERE id = $1", json!([id]))
                    .await
                    .expect("touch");
                *touched.entry(id).or_default() += 1;
                k += 1;
            }
            touched
        })
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut transactions = 3;
    for h in updaters {
        transactions += h.await.unwrap();
    }
    let (inserted, moved, touched) = (inserter.await.unwrap(), mover.await.unwrap(), toucher.await.unwrap());

    let n = as_i64(&c.scalar(2, "SELECT n FROM bumps WHERE id = 1").await);
    assert_eq!(n, transactions, "every acknowledged transaction counted once");
    let r = c.sql(2, "SELECT id, grp, v FROM tagged ORDER BY id", json!([])).await.unwrap();
    let rows: BTreeMap<i64, (i64, i64)> =
        r[0]["rows"].as_array().unwrap().iter().map(|r| (as_i64(&r[0]), (as_i64(&r[1]), as_i64(&r[2])))).collect();
    for id in (1..=60i64).filter(|i| i % 3 == 1) {
        assert_eq!(rows[&id].1, n, "row {id} matched throughout: every transaction updated it");
    }
    for (what, ids) in [("inserted", &inserted), ("moved", &moved)] {
        let vs: Vec<i64> = ids.iter().map(|id| rows[id].1).collect();
        assert!(vs.iter().all(|&v| v <= n), "{what} rows updated more often than there were transactions: {vs:?}");
        assert!(
            vs.windows(2).all(|w| w[0] >= w[1]),
            "{what} rows, in the order they came to match, must have been updated by ever fewer transactions: {vs:?}"
        );
    }
    for id in (1..=60i64).filter(|i| i % 3 == 0) {
        assert_eq!(
            rows[&id].1,
            touched.get(&id).copied().unwrap_or(0),
            "row {id} never matched: only its own increments"
        );
    }
    for id in (1..=60i64).filter(|i| i % 3 == 2 && !moved.contains(i)) {
        assert_eq!(rows[&id], (2, 0), "row {id} was never moved");
    }
    let counts = recon_counts(&c).await;
    eprintln!(
        "recon: {transactions} transactions, {} inserted and {} moved rows, {} touches; reconnaissances {counts:?}",
        inserted.len(),
        moved.len(),
        touched.values().sum::<i64>()
    );
    // Each path taken at least once (a slow, shared CI machine manages few).
    assert!(transactions > 10 && !inserted.is_empty() && !moved.is_empty(), "the workload ran");
    let v = c.verify(1).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// Queries over every vShard read row versions as of an epoch. Single-shard
/// transfers (two accounts of one branch) and cross-shard ones (two
/// branches) move money among the same accounts, so single-shard writes
/// depend on cross-shard ones and the other way round; a version placed on
/// the wrong side of a cross-shard transaction would make a query see a
/// debit without its credit. Meanwhile "movers" take money out of one
/// branch and, once that is acknowledged, put it into another, in two
/// autocommit statements: a query that saw the deposit but not the
/// withdrawal would break real-time order (the two do not conflict).
/// Auditors sum every balance (one table, and a join of two reads)
/// throughout: every sum is the initial total, less what movers have in
/// flight, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_over_every_vshard_see_single_and_cross_shard_writes_consistently() {
    const BRANCHES: u64 = 8;
    const PER_BRANCH: u64 = 4;
    const TRANSFERS_PER_CLIENT: u64 = 120;
    let c = three_nodes(&[]).await;
    c.sql(
        1,
        "CREATE TABLE bacct (branch INT, id INT, bal BIGINT NOT NULL, PRIMARY KEY (branch, id)) PARTITION BY (branch)",
        json!([]),
    )
    .await
    .unwrap();
    let rows: Vec<String> =
        (0..BRANCHES).flat_map(|b| (0..PER_BRANCH).map(move |i| format!("({b}, {i}, {INITIAL})"))).collect();
    c.sql(1, &format!("INSERT INTO bacct VALUES {}", rows.join(", ")), json!([])).await.unwrap();
    let total = (BRANCHES * PER_BRANCH) as i64 * INITIAL;
    let transfer = "BEGIN; UPDATE bacct SET bal = bal - $3 WHERE branch = $1 AND id = $2; \
        UPDATE bacct SET bal = bal + $3 WHERE branch = $4 AND id = $5; COMMIT";
    const MOVERS: u64 = 2;
    const MOVE_MAX: u64 = 20;
    let stop = Arc::new(AtomicBool::new(false));
    let movers: Vec<_> = (0..MOVERS)
        .map(|m| {
            let (db, stop) = (c.client(), stop.clone());
            tokio::spawn(async move {
                let mut rng = Rng(0x5851_F42D_4C95_7F2D ^ (m + 1));
                let mut moves = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (from, to) = (rng.below(BRANCHES), rng.below(BRANCHES));
                    let (id, amount) = (rng.below(PER_BRANCH), 1 + rng.below(MOVE_MAX));
                    let change = "UPDATE bacct SET bal = bal + $3 WHERE branch = $1 AND id = $2";
                    db.sql(1 + moves % 3, change, json!([from, id, -(amount as i64)])).await.expect("withdrawal");
                    db.sql(1 + (moves + 1) % 3, change, json!([to, id, amount])).await.expect("deposit");
                    moves += 1;
                }
                moves
            })
        })
        .collect();
    let auditors: Vec<_> = (0..2u64)
        .map(|a| {
            let (db, stop) = (c.client(), stop.clone());
            tokio::spawn(async move {
                let (mut good, mut wrong, mut i) = (0u64, Vec::new(), a);
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let sql = if i % 2 == 0 {
                        "SELECT sum(bal), count(*) FROM bacct"
                    } else {
                        "SELECT sum(a.bal), count(*) FROM bacct a JOIN bacct b ON a.branch = b.branch AND a.id = b.id"
                    };
                    let r = db.sql(1 + i % 3, sql, json!([])).await.expect("a query over every vShard");
                    let (sum, n) = (as_i64(&r[0]["rows"][0][0]), as_i64(&r[0]["rows"][0][1]));
                    let in_flight_max = (MOVERS * MOVE_MAX) as i64;
                    if sum <= total && sum >= total - in_flight_max && n == (BRANCHES * PER_BRANCH) as i64 {
                        good += 1;
                    } else {
                        wrong.push(format!("{sql}: sum {sum}, count {n}"));
                    }
                }
                (good, wrong)
            })
        })
        .collect();
    let writers: Vec<_> = (0..6u64)
        .map(|client| {
            let db = c.client();
            tokio::spawn(async move {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ (client + 1));
                let mut single = 0u64;
                for i in 0..TRANSFERS_PER_CLIENT {
                    let (sb, si) = (rng.below(BRANCHES), rng.below(PER_BRANCH));
                    // Two in three stay in the branch: one vShard.
                    let db_branch = if rng.below(3) == 0 { (sb + 1 + rng.below(BRANCHES - 1)) % BRANCHES } else { sb };
                    let di = if db_branch == sb {
                        (si + 1 + rng.below(PER_BRANCH - 1)) % PER_BRANCH
                    } else {
                        rng.below(PER_BRANCH)
                    };
                    single += (db_branch == sb) as u64;
                    let params = json!([sb, si, 1 + rng.below(20), db_branch, di]);
                    db.sql(1 + (client + i) % 3, transfer, params).await.expect("transfer");
                }
                single
            })
        })
        .collect();
    let mut single = 0;
    for w in futures::future::join_all(writers).await {
        single += w.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut moves = 0;
    for m in futures::future::join_all(movers).await {
        moves += m.unwrap();
    }
    let (mut good, mut wrong) = (0, Vec::new());
    for a in futures::future::join_all(auditors).await {
        let (g, w) = a.unwrap();
        good += g;
        wrong.extend(w);
    }
    eprintln!("{single} single-shard transfers of {}, {moves} moves, {good} consistent sums", 6 * TRANSFERS_PER_CLIENT);
    assert!(moves > 0, "the movers ran");
    assert!(wrong.is_empty(), "inconsistent sums: {:?}", &wrong[..wrong.len().min(5)]);
    assert!(single > 0 && single < 6 * TRANSFERS_PER_CLIENT, "both kinds of transfer ran");
    assert!(good >= 20, "the auditors ran throughout ({good} sums)");
    assert_eq!(as_i64(&c.scalar(2, "SELECT sum(bal) FROM bacct").await), total);
    let v = c.verify(1).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// A transaction whose evaluation panics (the failpoint `txn-evaluate`,
/// standing in for a bug) is aborted with XX000 on every path — single
/// vShard and sequenced — instead of retrying forever and blocking its
/// vShards; once the failpoint is off, the same vShards serve again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_evaluation_aborts_instead_of_blocking() {
    let mut c = Cluster::start_with_env(ORDO, 3, &[], &[("FAILPOINTS", "txn-evaluate=panic")]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    c.sql(1, "CREATE TABLE pp (id BIGINT PRIMARY KEY, n BIGINT)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO pp VALUES (1, 0), (2, 0), (3, 0), (4, 0)", json!([])).await.unwrap();
    let bump = "BEGIN; UPDATE pp SET n = n + 1 WHERE id = $1; UPDATE pp SET n = n + 1 WHERE id = $2; COMMIT";
    for (a, b) in [(1, 1), (1, 2), (3, 4), (2, 3)] {
        let started = Instant::now();
        let e = c.sql(1 + a % 3, bump, json!([a, b])).await.expect_err("aborted");
        assert_eq!(e.code, "XX000", "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    }
    assert_eq!(as_i64(&c.scalar(2, "SELECT sum(n) FROM pp").await), 0, "nothing applied");
    c.set_env(&[]);
    for n in 1..=3 {
        c.restart(n);
    }
    c.wait_healthy(HEALTHY_WITHIN).await;
    for (a, b) in [(1, 2), (3, 4)] {
        c.sql_retry(1, bump, json!([a, b]), HEALTHY_WITHIN).await.unwrap();
    }
    assert_eq!(as_i64(&c.scalar(3, "SELECT sum(n) FROM pp").await), 4);
}
