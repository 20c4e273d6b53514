//! Cluster tests: three real `ordo` processes on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ordo_tests::Cluster;
use serde_json::{json, Value};

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
const RETRY_FOR: Duration = Duration::from_secs(60);

async fn three_nodes(extra: &[&str]) -> Cluster {
    let c = Cluster::start(ORDO, 3, extra);
    c.wait_healthy(HEALTHY_WITHIN).await;
    c
}

fn as_i64(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_forms_with_spread_leaders_and_shared_catalog() {
    let c = three_nodes(&[]).await;
    let status = c.cluster_status(1).await;
    let groups = status["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 66, "meta + sequencer + 64 vShards");
    let mut led = [0usize; 4];
    for g in groups {
        let leader = g["leader"].as_u64().unwrap_or_else(|| panic!("group without leader: {g}"));
        led[leader as usize] += 1;
        for field in ["term", "commit_index", "applied_index", "kind"] {
            assert!(g.get(field).is_some(), "{field} missing in {g}");
        }
    }
    for n in 1..=3 {
        assert!(led[n] >= 10, "leaders not spread: {led:?}");
    }
    let kinds: Vec<&str> = groups.iter().map(|g| g["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "meta").count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == "sequencer").count(), 1);

    c.sql(1, "CREATE TABLE kv (k BIGINT PRIMARY KEY, v TEXT)", json!([])).await.unwrap();
    for n in [2, 3] {
        let r = c.sql(n, "SELECT count(*) FROM kv", json!([])).await.unwrap();
        assert_eq!(as_i64(&r[0]["rows"][0][0]), 0, "table visible on node {n}");
    }
    c.sql(2, "INSERT INTO kv VALUES (1, 'one'), (2, 'two')", json!([])).await.unwrap();
    let r = c.sql(3, "SELECT v FROM kv WHERE k = $1", json!([2])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([["two"]]));
    assert_eq!(r[0]["columns"], json!([{"name": "v", "type": "text"}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sql_types_joins_aggregates_and_dml() {
    let c = three_nodes(&[]).await;
    c.sql(
        1,
        "CREATE TABLE item (w INT, id BIGINT, qty SMALLINT NOT NULL, price NUMERIC(10,2), ratio DOUBLE PRECISION, \
         name VARCHAR(8), active BOOLEAN, created TIMESTAMP, day DATE, PRIMARY KEY (w, id)) PARTITION BY (w)",
        json!([]),
    )
    .await
    .unwrap();
    c.sql(1, "CREATE TABLE wh (w INT PRIMARY KEY, city TEXT)", json!([])).await.unwrap();
    c.sql(2, "INSERT INTO wh VALUES (1, 'Oslo'), (2, 'Lima')", json!([])).await.unwrap();
    let r = c
        .sql(
            3,
            "INSERT INTO item VALUES (1, 1, 5, 9.99, 0.5, 'apple', true, '2024-01-02 03:04:05', '2024-01-02'), \
             (1, 2, 7, 1.50, 1.5, 'pear', false, '2024-02-01 00:00:00', '2024-02-01'), \
             ($1, $2, $3, $4, 2.0, $5, NULL, NULL, NULL)",
            json!([2, 1, 3, "100.005", "plum"]),
        )
        .await
        .unwrap();
    assert_eq!(r[0]["rows_affected"], 3);

    let r = c.sql(1, "SELECT price, created, day, active FROM item WHERE w = 1 AND id = 1", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([["9.99", "2024-01-02 03:04:05", "2024-01-02", true]]));
    let types: Vec<&str> = r[0]["columns"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["numeric", "timestamp", "date", "bool"]);
    let r = c.sql(2, "SELECT price FROM item WHERE w = 2", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([["100.01"]]), "NUMERIC(10,2) rounds half away from zero");

    let r = c
        .sql(
            2,
            "SELECT wh.city, sum(item.qty) AS q, count(*) AS n FROM item JOIN wh ON item.w = wh.w \
             GROUP BY wh.city ORDER BY q DESC LIMIT 5",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(r[0]["rows"], json!([["Oslo", 12, 2], ["Lima", 3, 1]]));

    let r = c.sql(3, "UPDATE item SET qty = qty + 10, name = 'APPLE' WHERE w = 1 AND id = 1", json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 1);
    let r = c.sql(1, "UPDATE item SET ratio = ratio * 2 WHERE qty < 10", json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 2, "non-key predicate across vShards");
    let r = c.sql(1, "SELECT id, qty, name, ratio FROM item ORDER BY w, id", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[1, 15, "APPLE", 0.5], [2, 7, "pear", 3.0], [1, 3, "plum", 4.0]]));
    let r = c.sql(2, "DELETE FROM item WHERE active = false OR active IS NULL", json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 2);
    let r = c.sql(3, "SELECT count(*) FROM item; SELECT count(*) FROM wh", json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), 1);
    assert_eq!(as_i64(&r[1]["rows"][0][0]), 2);

    c.sql(1, "DROP TABLE item", json!([])).await.unwrap();
    let e = c.sql(2, "SELECT * FROM item", json!([])).await.unwrap_err();
    assert_eq!(e.code, "42P01");
    c.sql(3, "CREATE TABLE item (id INT PRIMARY KEY)", json!([])).await.unwrap();
    let r = c.sql(1, "SELECT count(*) FROM item", json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), 0, "a re-created table starts empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_sqlstate_and_node_stays_healthy() {
    let c = three_nodes(&["--http-body-bytes-max", "1048576"]).await;
    c.sql(1, "CREATE TABLE t (id INT PRIMARY KEY, n SMALLINT, s VARCHAR(3))", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO t VALUES (1, 1, 'a')", json!([])).await.unwrap();

    let cases: Vec<(Result<Vec<Value>, ordo_tests::SqlError>, &str)> = vec![
        (c.post_raw(1, b"{not json".to_vec()).await, "08P01"),
        (c.post_raw(2, br#"{"sql": 5}"#.to_vec()).await, "08P01"),
        (c.sql(1, "SELEC 1", json!([])).await, "42601"),
        (c.sql(2, "SELECT * FROM nope", json!([])).await, "42P01"),
        (c.sql(3, "INSERT INTO nope VALUES (1)", json!([])).await, "42P01"),
        (c.sql(1, "INSERT INTO t (id, zzz) VALUES (2, 1)", json!([])).await, "42703"),
        (c.sql(1, "INSERT INTO t VALUES ('abc', 1, 'a')", json!([])).await, "22P02"),
        (c.sql(1, "INSERT INTO t VALUES (2, true, 'a')", json!([])).await, "42804"),
        (c.sql(1, "INSERT INTO t VALUES (2, 70000, 'a')", json!([])).await, "22003"),
        (c.sql(1, "INSERT INTO t VALUES (2, 1, 'abcd')", json!([])).await, "22001"),
        (c.sql(2, "INSERT INTO t VALUES (1, 2, 'b')", json!([])).await, "23505"),
        (c.sql(3, "INSERT INTO t VALUES (3, 1, 'a'), (3, 2, 'b')", json!([])).await, "23505"),
        (c.sql(1, "INSERT INTO t VALUES (NULL, 1, 'a')", json!([])).await, "23502"),
        (c.sql(1, "CREATE TABLE nokey (a INT, b TEXT)", json!([])).await, "42P16"),
        (c.sql(1, "CREATE TABLE t (id INT PRIMARY KEY)", json!([])).await, "42P07"),
        (c.sql(1, "CREATE TABLE bad (id INT PRIMARY KEY, x GEOMETRY)", json!([])).await, "42704"),
        (c.sql(1, "CREATE TABLE p (a INT, b INT, PRIMARY KEY (a, b)) PARTITION BY (b)", json!([])).await, "42P16"),
        (c.sql(1, "SELECT $1 + 1", json!([{"a": 1}])).await, "22023"),
        (c.sql(1, "UPDATE t SET id = 5 WHERE id = 1", json!([])).await, "0A000"),
        (c.sql(1, "DELETE FROM t WHERE id IN (SELECT id FROM t)", json!([])).await, "0A000"),
        (c.sql(2, "UPDATE t SET n = random() * 10 WHERE id = 1", json!([])).await, "0A000"),
        (c.sql(3, "BEGIN; SELECT random() AS r; INSERT INTO t VALUES (7, 1, 'a'); COMMIT", json!([])).await, "0A000"),
        (c.sql(1, "INSERT INTO t VALUES (9, 1, 'a', 'extra')", json!([])).await, "42601"),
        (c.sql(1, "SELECT 1/0", json!([])).await, "22012"),
        // Integer overflow is an error in plans too (DataFusion would wrap).
        (c.sql(1, "SELECT 9223372036854775807 + id FROM t", json!([])).await, "22003"),
        (c.sql(2, "SELECT sum(n) FROM t WHERE id * 9223372036854775807 + id > 0", json!([])).await, "22003"),
        (c.sql(2, "SELECT regexp_like('a', '(')", json!([])).await, "2201B"),
        (c.sql(3, "UPDATE t SET s = 'b' WHERE id = $2 OR now() IS NULL", json!([1])).await, "22023"),
        (c.post_raw(1, format!(r#"{{"sql": "SELECT '{}'"}}"#, "x".repeat(2 << 20)).into_bytes()).await, "54000"),
    ];
    for (i, (result, code)) in cases.into_iter().enumerate() {
        let e = result.expect_err(&format!("case {i} should fail with {code}"));
        assert_eq!(e.code, code, "case {i}: {e:?}");
        assert!(!e.message.is_empty());
    }
    c.wait_healthy(Duration::from_secs(5)).await;
    let r = c.sql(2, "SELECT id, n, s FROM t", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[1, 1, "a"]]), "failed statements left no trace");
    // Without a column list, missing trailing values are NULL.
    c.sql(3, "INSERT INTO t VALUES (2)", json!([])).await.unwrap();
    let r = c.sql(1, "SELECT n, s FROM t WHERE id = 2", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[null, null]]));
}

/// Inserts rows `from..to` of `bulk` in batches, spread over `nodes`, with
/// `clients` concurrent writers; retries retryable errors. Returns the
/// number of rows acknowledged.
async fn load(c: &Cluster, from: i64, to: i64, nodes: &[u64], clients: usize) -> i64 {
    const BATCH: i64 = 100;
    let batches: Vec<i64> = (from..to).step_by(BATCH as usize).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let acked = std::sync::atomic::AtomicI64::new(0);
    let work = (0..clients).map(|w| {
        let (next, acked, batches) = (&next, &acked, &batches);
        async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&start) = batches.get(i) else { break };
                let end = (start + BATCH).min(to);
                let values: Vec<String> = (start..end).map(|k| format!("({k}, {}, 'row {k}')", k * 2)).collect();
                let sql = format!("INSERT INTO bulk VALUES {}", values.join(", "));
                let node = nodes[(i + w) % nodes.len()];
                match c.sql_retry(node, &sql, json!([]), RETRY_FOR).await {
                    Ok(_) => {
                        acked.fetch_add(end - start, std::sync::atomic::Ordering::Relaxed);
                    }
                    // A retried INSERT whose first attempt did commit.
                    Err(e) if e.code == "23505" => {
                        acked.fetch_add(end - start, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => panic!("insert failed: {e:?}"),
                }
            }
        }
    });
    futures::future::join_all(work).await;
    acked.load(std::sync::atomic::Ordering::Relaxed)
}

async fn check_rows(c: &Cluster, node: u64, expected: i64) {
    let r =
        c.sql_retry(node, "SELECT count(*), sum(v), count(DISTINCT k) FROM bulk", json!([]), RETRY_FOR).await.unwrap();
    let row = &r[0]["rows"][0];
    assert_eq!(as_i64(&row[0]), expected, "row count seen from node {node}");
    assert_eq!(as_i64(&row[2]), expected);
    assert_eq!(as_i64(&row[1]), (0..expected).map(|k| k * 2).sum::<i64>(), "sum seen from node {node}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_rows_through_all_nodes_are_readable_from_each() {
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE bulk (k BIGINT PRIMARY KEY, v BIGINT, note TEXT)", json!([])).await.unwrap();
    let started = Instant::now();
    let acked = load(&c, 0, 10_000, &[1, 2, 3], 8).await;
    let secs = started.elapsed().as_secs_f64();
    println!("inserted {acked} rows in {secs:.2}s: {:.0} rows/s (100-row INSERTs, 8 clients)", acked as f64 / secs);
    assert_eq!(acked, 10_000);
    for n in 1..=3 {
        check_rows(&c, n, 10_000).await;
    }
    let r = c.sql(2, "SELECT note FROM bulk WHERE k = 4321", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([["row 4321"]]));
    assert_consistent(&c, 3).await;
}

async fn assert_consistent(c: &Cluster, asking: u64) {
    let v = c.verify(asking).await;
    assert_eq!(v["groups"].as_array().unwrap().len(), 66);
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// The node leading the most vShard groups (as node 1 sees it).
async fn busiest_leader(c: &Cluster, asking: u64) -> u64 {
    let s = c.cluster_status(asking).await;
    let mut led = [0usize; 4];
    for g in s["groups"].as_array().unwrap() {
        if let Some(l) = g["leader"].as_u64() {
            led[l as usize] += 1;
        }
    }
    (1..=3).max_by_key(|&n| led[n]).unwrap() as u64
}

/// How many groups `node` leads, by its own account.
async fn leaders_of(c: &Cluster, node: u64) -> usize {
    let s = c.cluster_status(node).await;
    s["groups"].as_array().unwrap().iter().filter(|g| g["state"] == "Leader").count()
}

/// Waits until `node`'s replica of every group has applied what the
/// group's leader has committed.
async fn wait_caught_up(c: &Cluster, node: u64) {
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let mine = c.cluster_status(node).await;
        let mut behind = Vec::new();
        for g in mine["groups"].as_array().unwrap() {
            let Some(leader) = g["leader"].as_u64() else {
                behind.push(g["group_id"].clone());
                continue;
            };
            let theirs = c.cluster_status(leader).await;
            let lg =
                theirs["groups"].as_array().unwrap().iter().find(|x| x["group_id"] == g["group_id"]).unwrap().clone();
            if g["applied_index"].as_u64() < lg["commit_index"].as_u64() {
                behind.push(g["group_id"].clone());
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "node {node} still behind on groups {behind:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_a_leader_keeps_serving_and_the_node_catches_up() {
    // Small snapshot threshold so the test also exercises log compaction
    // and catch-up through snapshots.
    let mut c = three_nodes(&["--snapshot-logs", "50"]).await;
    c.sql(1, "CREATE TABLE bulk (k BIGINT PRIMARY KEY, v BIGINT, note TEXT)", json!([])).await.unwrap();
    assert_eq!(load(&c, 0, 3_000, &[1, 2, 3], 4).await, 3_000);

    let victim = busiest_leader(&c, 1).await;
    let others: Vec<u64> = (1..=3).filter(|&n| n != victim).collect();
    c.kill(victim);
    // Writes and reads keep working through the two survivors.
    assert_eq!(load(&c, 3_000, 6_000, &others, 4).await, 3_000);
    for &n in &others {
        check_rows(&c, n, 6_000).await;
    }

    c.restart(victim);
    c.wait_healthy(HEALTHY_WITHIN).await;
    wait_caught_up(&c, victim).await;
    check_rows(&c, victim, 6_000).await;
    // Leadership flows back to the restarted node.
    let deadline = Instant::now() + RETRY_FOR;
    while leaders_of(&c, victim).await < 15 {
        assert!(Instant::now() < deadline, "node {victim} did not get its leaders back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Logs were compacted: some group purged its log after a snapshot.
    let s = c.cluster_status(victim).await;
    let purged = s["groups"].as_array().unwrap().iter().filter(|g| g["purged_index"].as_u64().unwrap_or(0) > 0).count();
    assert!(purged > 0, "no group compacted its log: {s}");

    // Kill another node, which may have become a leader meanwhile.
    let second = others[0];
    c.kill(second);
    assert_eq!(load(&c, 6_000, 7_000, &[(1..=3).find(|&n| n != second && c.is_running(n)).unwrap()], 2).await, 1_000);
    c.restart(second);
    c.wait_healthy(HEALTHY_WITHIN).await;
    wait_caught_up(&c, second).await;
    for n in 1..=3 {
        check_rows(&c, n, 7_000).await;
    }
    assert_consistent(&c, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart_loses_nothing_acknowledged() {
    let mut c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE bulk (k BIGINT PRIMARY KEY, v BIGINT, note TEXT)", json!([])).await.unwrap();
    assert_eq!(load(&c, 0, 2_000, &[1, 2, 3], 4).await, 2_000);
    for n in 1..=3 {
        c.kill(n);
    }
    for n in 1..=3 {
        c.restart(n);
    }
    c.wait_healthy(HEALTHY_WITHIN).await;
    for n in 1..=3 {
        check_rows(&c, n, 2_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_detects_a_diverged_replica() {
    let mut c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE bulk (k BIGINT PRIMARY KEY, v BIGINT, note TEXT)", json!([])).await.unwrap();
    assert_eq!(load(&c, 0, 500, &[1, 2, 3], 2).await, 500);
    assert_consistent(&c, 2).await;

    // Corrupt node 3's copy of vShard 5 behind Raft's back.
    c.kill(3);
    let gid = ordo_raft::groups::vshard_group(5);
    {
        let db = rocksdb::DB::open_default(c.data_dir(3).join("db")).expect("open node 3's RocksDB");
        db.put(ordo_raft::keys::key(gid, ordo_raft::keys::Section::Data, b"not-a-row"), b"x").unwrap();
    }
    c.restart(3);
    c.wait_healthy(HEALTHY_WITHIN).await;
    wait_caught_up(&c, 3).await;

    let v = c.verify(1).await;
    assert_eq!(v["consistent"], false, "divergence not detected: {v}");
    let bad: Vec<u64> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["consistent"] != true)
        .map(|g| g["group_id"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![gid], "only the corrupted group differs");
}

/// The hash of each group's data as `verify` reports it (all replicas agree).
async fn group_hashes(c: &Cluster) -> BTreeMap<u64, String> {
    let v = c.verify(1).await;
    assert_eq!(v["consistent"], true, "{v}");
    v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let first = g["replicas"].as_object().unwrap().values().next().unwrap();
            (g["group_id"].as_u64().unwrap(), first["Ok"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Determinism: the same statements, run against two fresh clusters, leave
/// byte-identical data in every group (the hashes cover keys and values).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_workload_twice_gives_identical_replicas() {
    let workload = [
        "CREATE TABLE acct (w INT, id BIGINT, bal NUMERIC(12,2), note TEXT, at TIMESTAMP, PRIMARY KEY (w, id)) PARTITION BY (w)",
        "CREATE TABLE log (id BIGINT PRIMARY KEY, msg VARCHAR(20))",
    ];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let c = three_nodes(&[]).await;
        for s in workload {
            c.sql(1, s, json!([])).await.unwrap();
        }
        for w in 0..8 {
            let rows: Vec<String> = (0..50)
                .map(|i| format!("({w}, {i}, {}.25, 'n{i}', '2024-01-01 00:00:{:02}')", i * 3, i % 60))
                .collect();
            c.sql(1 + (w % 3) as u64, &format!("INSERT INTO acct VALUES {}", rows.join(", ")), json!([]))
                .await
                .unwrap();
        }
        c.sql(2, "UPDATE acct SET bal = bal * 2 WHERE id % 3 = 0", json!([])).await.unwrap();
        c.sql(3, "UPDATE acct SET note = 'x' WHERE w = 2 AND id = 7", json!([])).await.unwrap();
        c.sql(1, "DELETE FROM acct WHERE bal > 200", json!([])).await.unwrap();
        c.sql(2, "INSERT INTO log VALUES (1, 'a'), (2, 'b'), (3, 'c')", json!([])).await.unwrap();
        c.sql(3, "DELETE FROM log WHERE id = 2", json!([])).await.unwrap();
        // Cross-shard transactions (sequenced, outcome recorded by the coordinator).
        for i in 0..5 {
            c.sql(
                1 + i % 3,
                "BEGIN; UPDATE acct SET bal = bal - 1 WHERE w = $1 AND id = 1 RETURNING bal AS b; \
                 UPDATE acct SET bal = bal + 1, note = 'got' WHERE w = $2 AND id = 1; \
                 INSERT INTO log VALUES ($3, 'moved'); COMMIT",
                json!([i, i + 1, 10 + i]),
            )
            .await
            .unwrap();
        }
        runs.push(group_hashes(&c).await);
    }
    assert_eq!(runs[0].len(), 66);
    // The sequencer's log holds wall-clock epoch times and timing-dependent
    // batching: it is compared across replicas (verify), not across runs.
    let differing: Vec<u64> = runs[0].keys().filter(|&&g| g != 1 && runs[0][&g] != runs[1][&g]).copied().collect();
    assert!(differing.is_empty(), "groups whose data differs between runs: {differing:?}");
    // Not vacuous: vShards that got rows hash differently from empty ones.
    let distinct: BTreeSet<&String> = runs[0].values().collect();
    assert!(distinct.len() > 8, "too few distinct hashes: {distinct:?}");
}

/// `BEGIN; ...; COMMIT` on one vShard is atomic and isolated: concurrent
/// transfers lose no update, a failing statement undoes the whole
/// transaction, ROLLBACK changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_vshard_transactions_are_atomic_and_isolated() {
    let c = three_nodes(&[]).await;
    c.sql(
        1,
        "CREATE TABLE acct (w INT, id BIGINT, bal BIGINT NOT NULL, PRIMARY KEY (w, id)) PARTITION BY (w)",
        json!([]),
    )
    .await
    .unwrap();
    let accounts = 10i64;
    let rows: Vec<String> = (0..accounts).map(|i| format!("(1, {i}, 1000)")).collect();
    c.sql(1, &format!("INSERT INTO acct VALUES {}", rows.join(", ")), json!([])).await.unwrap();

    const TRANSFER: &str = "BEGIN; \
        UPDATE acct SET bal = bal - $1 WHERE w = 1 AND id = $2; \
        UPDATE acct SET bal = bal + $1 WHERE w = 1 AND id = $3; COMMIT";
    let clients = 8;
    let per_client = 25;
    let work = (0..clients).map(|w| {
        let c = &c;
        async move {
            let mut deltas = vec![0i64; accounts as usize];
            for t in 0..per_client {
                let (from, to, amount) = ((w * 7 + t * 3) % accounts, (w * 5 + t * 11 + 1) % accounts, 1 + (t % 9));
                if from == to {
                    continue;
                }
                let r = c.sql_retry(1 + (t % 3) as u64, TRANSFER, json!([amount, from, to]), RETRY_FOR).await.unwrap();
                assert_eq!(r.len(), 4, "one result per statement");
                assert_eq!(r[1]["rows_affected"], 1);
                deltas[from as usize] -= amount;
                deltas[to as usize] += amount;
            }
            deltas
        }
    });
    let mut expected = vec![1000i64; accounts as usize];
    for d in futures::future::join_all(work).await {
        for (e, x) in expected.iter_mut().zip(d) {
            *e += x;
        }
    }
    let r = c.sql(2, "SELECT bal FROM acct WHERE w = 1 ORDER BY id", json!([])).await.unwrap();
    let got: Vec<i64> = r[0]["rows"].as_array().unwrap().iter().map(|row| as_i64(&row[0])).collect();
    assert_eq!(got, expected, "every acknowledged transfer applied exactly once");
    assert_eq!(got.iter().sum::<i64>(), 1000 * accounts);

    // A failing statement aborts the whole transaction.
    let e = c
        .sql(
            3,
            "BEGIN; UPDATE acct SET bal = 0 WHERE w = 1 AND id = 1; INSERT INTO acct VALUES (1, 2, 5); COMMIT",
            json!([]),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "23505");
    // ROLLBACK runs nothing.
    let r = c.sql(1, "BEGIN; DELETE FROM acct WHERE w = 1; ROLLBACK", json!([])).await.unwrap();
    assert_eq!(r[1]["rows_affected"], 0);
    // Later statements see earlier ones.
    let r = c
        .sql(
            2,
            "BEGIN; INSERT INTO acct VALUES (1, 100, 7); UPDATE acct SET bal = bal * 2 WHERE w = 1 AND bal = 7; COMMIT",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(r[2]["rows_affected"], 1);
    let r = c.sql(3, "SELECT bal FROM acct WHERE w = 1 AND id = 100", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[14]]));
    let r = c.sql(1, "SELECT sum(bal), count(*) FROM acct WHERE w = 1 AND id < 100", json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), 1000 * accounts, "aborted and rolled-back transactions left no trace");
    assert_eq!(as_i64(&r[0]["rows"][0][1]), accounts);

    // Cross-vShard transactions go through the sequencer.
    c.sql(1, "INSERT INTO acct VALUES (2, 0, 1000)", json!([])).await.unwrap();
    c.sql(1, "BEGIN; UPDATE acct SET bal = bal - 1 WHERE w = 1 AND id = 0; UPDATE acct SET bal = bal + 1 WHERE w = 2 AND id = 0; COMMIT", json!([]))
        .await
        .unwrap();
    let r = c.sql(2, "SELECT w, bal FROM acct WHERE id = 0 ORDER BY w", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[1, expected[0] - 1], [2, 1001]]));
}

/// `(count, sum of v)` of table `a`.
async fn count_and_sum(c: &Cluster, node: u64) -> (i64, i64) {
    let r = c.sql(node, "SELECT count(*), sum(v) FROM a", json!([])).await.unwrap();
    (as_i64(&r[0]["rows"][0][0]), as_i64(&r[0]["rows"][0][1]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autocommit_statements_over_several_vshards_are_atomic() {
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE a (id INT PRIMARY KEY, v INT NOT NULL)", json!([])).await.unwrap();
    let rows: Vec<String> = (1..=200).map(|i| format!("({i}, {i})")).collect();
    let r = c.sql(1, &format!("INSERT INTO a VALUES {}", rows.join(", ")), json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 200);
    let base = (200, (1..=200).sum::<i64>());
    assert_eq!(count_and_sum(&c, 2).await, base);

    // One duplicate key among 51 rows on many vShards: none is inserted.
    let mut rows: Vec<String> = (1000..1050).map(|i| format!("({i}, 1)")).collect();
    rows.push("(7, 1)".into());
    let e = c.sql(2, &format!("INSERT INTO a VALUES {}", rows.join(", ")), json!([])).await.unwrap_err();
    assert_eq!(e.code, "23505", "{e:?}");
    assert_eq!(count_and_sum(&c, 3).await, base, "a failed INSERT left no row behind");

    // An error on one row (v = 150) of one vShard: no vShard changes.
    let e = c.sql(3, "UPDATE a SET v = 100 / (v - 150)", json!([])).await.unwrap_err();
    assert_eq!(e.code, "22012", "{e:?}");
    assert_eq!(count_and_sum(&c, 1).await, base, "a failed UPDATE changed nothing");
    // An error DataFusion raises for one row (an invalid pattern) is a
    // decision too, not trouble to retry forever.
    let bad_pattern =
        "UPDATE a SET v = length(regexp_replace(CAST(v AS TEXT), CASE WHEN v = 150 THEN '(' ELSE 'x' END, 'y'))";
    let e = c.sql(1, bad_pattern, json!([])).await.unwrap_err();
    assert_eq!(e.code, "2201B", "decided, not left unknown: {e:?}");
    assert_eq!(count_and_sum(&c, 2).await, base, "a failed UPDATE changed nothing");

    // Concurrent statements over every vShard, through every node: each
    // applies whole, and the counts add up.
    let work = (0..6u64).map(|i| {
        let c = &c;
        async move {
            let r = c.sql_retry(1 + i % 3, "UPDATE a SET v = v + 1", json!([]), RETRY_FOR).await.unwrap();
            assert_eq!(r[0]["rows_affected"], 200);
        }
    });
    futures::future::join_all(work).await;
    assert_eq!(count_and_sum(&c, 2).await, (200, base.1 + 6 * 200));

    // now() is one timestamp for the whole statement, on every vShard.
    c.sql(2, "CREATE TABLE stamp (id INT PRIMARY KEY, ts TIMESTAMP)", json!([])).await.unwrap();
    let rows: Vec<String> = (0..50).map(|i| format!("({i}, NULL)")).collect();
    c.sql(2, &format!("INSERT INTO stamp VALUES {}", rows.join(", ")), json!([])).await.unwrap();
    let r = c.sql(3, "UPDATE stamp SET ts = now() WHERE ts IS NULL", json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 50);
    let r = c.sql(1, "SELECT count(DISTINCT ts), count(*) FROM stamp WHERE ts <= now()", json!([])).await.unwrap();
    assert_eq!(r[0]["rows"], json!([[1, 50]]), "one now() per statement");

    let r = c.sql(1, "DELETE FROM a WHERE v > 106", json!([])).await.unwrap();
    assert_eq!(r[0]["rows_affected"], 100);
    assert_eq!(count_and_sum(&c, 3).await, (100, (7..=106).sum::<i64>()));
    assert_consistent(&c, 1).await;
}

/// Statements whose expressions nest too deeply get 54001 (not a stack
/// overflow that kills the node); one just under the bound runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deeply_nested_expressions_are_refused_and_the_node_lives() {
    let c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE deep (id BIGINT PRIMARY KEY, s TEXT)", json!([])).await.unwrap();
    c.sql(1, "INSERT INTO deep VALUES (1, 'q')", json!([])).await.unwrap();
    let bad = [
        format!("SELECT {}", vec!["1"; 20_000].join("+")),
        format!("SELECT s FROM deep WHERE {}", vec!["id = 1"; 5_000].join(" AND ")),
        format!("UPDATE deep SET s = 'r' WHERE {}", vec!["s = 'q'"; 5_000].join(" OR ")),
        format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
    ];
    for (i, sql) in bad.iter().enumerate() {
        let node = 1 + i as u64 % 3;
        let e = c.sql(node, sql, json!([])).await.expect_err("refused");
        assert!(e.code == "54001" || e.code == "42601", "statement {i}: {e:?}");
    }
    // Just under the bound: planned and evaluated on every path.
    let n = 490;
    let r = c.sql(2, &format!("SELECT {}", vec!["1"; n].join("+")), json!([])).await.unwrap();
    assert_eq!(as_i64(&r[0]["rows"][0][0]), n as i64);
    let r = c.sql(3, &format!("SELECT s FROM deep WHERE {}", vec!["id = 1"; 240].join(" AND ")), json!([])).await;
    assert_eq!(r.unwrap()[0]["rows"], json!([["q"]]));
    let txn = format!("BEGIN; UPDATE deep SET s = 'r' WHERE {}; COMMIT", vec!["s = 'q'"; 240].join(" OR "));
    c.sql(1, &txn, json!([])).await.unwrap();
    c.wait_healthy(HEALTHY_WITHIN).await;
    assert_eq!(c.scalar(2, "SELECT s FROM deep WHERE id = 1").await, json!("r"));
}

/// The RPC port admits this cluster's nodes only: a client without the
/// cluster secret is refused (and the refusal logged), and a node whose data
/// directory was wiped cannot rejoin as itself (it would have forgotten its
/// votes): it exits with a message, and the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strangers_and_wiped_nodes_are_refused() {
    let mut c = three_nodes(&[]).await;
    c.sql(1, "CREATE TABLE kept (id BIGINT PRIMARY KEY)", json!([])).await.unwrap();
    let addr = format!("http://127.0.0.1:{}", c.nodes[0].rpc_port);
    let mut stranger = ordo_proto::NodeClient::connect(addr).await.expect("connect");
    let forward = ordo_proto::ForwardRequest { group_id: 0, payload: vec![0; 16] };
    let refused = stranger.forward(forward).await.expect_err("a stranger's forward");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let vote = ordo_proto::RaftMsg { group_id: 0, kind: ordo_proto::RaftKind::Vote as i32, payload: vec![0xFF; 64] };
    let refused = stranger.raft(ordo_proto::RaftBatch { from_node: 2, msgs: vec![vote] }).await.expect_err("a vote");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(c.log_tail(1).contains("refused a call"), "{}", c.log_tail(1));
    wiped_node_exits(&mut c).await;
}

/// Wipes node 3 and restarts it: it must exit saying a peer refuses it,
/// and the others go on.
async fn wiped_node_exits(c: &mut Cluster) {
    c.wipe(3);
    c.restart(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = c.exited(3) {
            break s;
        }
        assert!(Instant::now() < deadline, "a wiped node kept running: {}", c.log_tail(3));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success());
    assert!(c.log(3).contains("refuses this node"), "{}", c.log(3));
    c.sql_retry(2, "INSERT INTO kept VALUES (1)", json!([]), RETRY_FOR).await.unwrap();
    assert_eq!(as_i64(&c.scalar(1, "SELECT count(*) FROM kept").await), 1);
}

/// A wiped node whose start-up probe found out nothing (no peer answered
/// in time; here the failpoint skips it) is stopped by the first refusal
/// of a call it makes: it must not run on, refused, as its old self.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_is_stopped_even_without_its_start_probe() {
    let mut c = Cluster::start_with_env(ORDO, 3, &[], &[("FAILPOINTS", "identity-probe=return")]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    c.sql(1, "CREATE TABLE kept (id BIGINT PRIMARY KEY)", json!([])).await.unwrap();
    wiped_node_exits(&mut c).await;
}

/// Reads one HTTP response from `s` until the server closes it (a request
/// sent with `Connection: close`), or the socket's state when `wait` ends.
async fn read_to_close(s: &mut tokio::net::TcpStream, wait: Duration) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match tokio::time::timeout(wait, s.read_to_end(&mut out)).await {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the server kept the connection open")),
    }
}

/// Whether the server has closed `s` (without blocking): EOF or a reset.
fn closed_by_server(s: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 1];
    match s.try_read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// HTTP clients are bounded in number and in time: connections that never
/// send a request, or send a body that never ends, are closed after the
/// read timeout, and at the connection bound a new client waits until one
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_and_slow_http_clients_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let c = Cluster::start(ORDO, 1, &["--http-connections-max", "2", "--http-read-timeout-ms", "1000"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let addr = format!("127.0.0.1:{}", c.nodes[0].http_port);
    let wait = Duration::from_secs(30);
    // Two connections that send nothing take the two slots (or wait for one).
    let idle = [TcpStream::connect(&addr).await.unwrap(), TcpStream::connect(&addr).await.unwrap()];
    let body = r#"{"sql":"SELECT 41 + 1"}"#;
    let request = format!(
        "POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(request.as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut third, wait).await.unwrap()).to_string();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("42"), "{answer}");
    // It was served only once the server had closed an idle one.
    assert!(idle.iter().any(closed_by_server), "a third connection was served while two idle ones held the slots");
    for mut s in idle {
        assert!(read_to_close(&mut s, wait).await.map(|b| b.is_empty()).unwrap_or(true), "idle connection kept");
    }

    // A body announced and never sent: 408 after the read timeout.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, tokio::io::AsyncReadExt::read(&mut slow, &mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(as_i64(&c.scalar(1, "SELECT 1").await), 1);
}

/// Queries are bounded in memory (a pool per query in front of the node's)
/// and in result size: past either bound the query fails with 53200 or
/// 54000, and the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_past_their_memory_or_result_bound_fail_cleanly() {
    let c = Cluster::start(ORDO, 1, &["--query-memory-bytes-max", "4194304", "--result-bytes-max", "1048576"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    // The join's hash table of 2,000,000 keys needs more than 4 MiB.
    let join =
        "SELECT count(*) FROM generate_series(1, 2000000) a JOIN generate_series(1, 2000000) b ON a.value = b.value";
    let e = c.sql(1, join, json!([])).await.expect_err("past the query's memory");
    assert_eq!(e.code, "53200", "{e:?}");
    // 2,000,000 BIGINTs are 16 MB of result.
    let e =
        c.sql(1, "SELECT value FROM generate_series(1, 2000000)", json!([])).await.expect_err("past the result bound");
    assert_eq!(e.code, "54000", "{e:?}");
    assert_eq!(as_i64(&c.scalar(1, "SELECT count(*) FROM generate_series(1, 1000)").await), 1000);
    let small = "SELECT count(*) FROM generate_series(1, 1000) a JOIN generate_series(1, 1000) b ON a.value = b.value";
    assert_eq!(as_i64(&c.scalar(1, small).await), 1000);
}

/// A client that asks for a large result and never reads it blocks the
/// node's writes to it: the connection is cut after the timeout, so its
/// slot frees and the next client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let c = Cluster::start(ORDO, 1, &["--http-connections-max", "1", "--http-read-timeout-ms", "1000"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let addr = format!("127.0.0.1:{}", c.nodes[0].http_port);
    // About 20 MB of JSON, far more than the sockets' buffers hold.
    let body = r#"{"sql":"SELECT repeat('x', 1000) FROM generate_series(1, 20000)"}"#;
    let request = format!(
        "POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    // The only slot is the stalled client's until the node gives up on it.
    let health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut next = TcpStream::connect(&addr).await.unwrap();
    next.write_all(health.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut next, Duration::from_secs(60)).await.expect("served once the slot freed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(stalled);
}

/// This node's `ordo_sql_point_reads_total`.
async fn point_reads(c: &Cluster, node: u64) -> u64 {
    let text = reqwest::get(format!("{}/metrics", c.url(node))).await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("ordo_sql_point_reads_total ")).expect("point reads counter");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A SELECT of one row by its whole primary key is answered without a
/// query plan, and exactly as the planned query answers it: the same
/// columns, types, names and values. `AND TRUE` keeps a query off that
/// path (it is not a plain key equality), so each pair below is the same
/// question asked both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn point_reads_answer_as_planned_queries_do() {
    let c = three_nodes(&["--vshards", "4"]).await;
    let run = |sql: &'static str, params: Value| {
        let c = &c;
        async move { c.sql_retry(2, sql, params, RETRY_FOR).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")) }
    };
    run("CREATE TABLE p (a BIGINT, b TEXT, c INT, d NUMERIC(10,2), e DATE, f BOOLEAN, PRIMARY KEY (a, b))", json!([]))
        .await;
    run("CREATE TABLE k (id INT PRIMARY KEY, v TEXT)", json!([])).await;
    run("INSERT INTO p VALUES (1, 'x', 7, 12.50, '2026-12-07', true), (2, 'y', NULL, NULL, NULL, NULL)", json!([]))
        .await;
    run("INSERT INTO k VALUES (3, 'three'), (4, NULL)", json!([])).await;
    let pairs: [(&'static str, &'static str, Value); 6] = [
        ("SELECT * FROM p WHERE a = 1 AND b = 'x'", "SELECT * FROM p WHERE a = 1 AND b = 'x' AND TRUE", json!([])),
        (
            "SELECT d, a AS alias, E FROM p WHERE b = $2 AND a = $1",
            "SELECT d, a AS alias, E FROM p WHERE b = $2 AND a = $1 AND TRUE",
            json!([2, "y"]),
        ),
        ("SELECT * FROM p WHERE a = 9 AND b = 'x'", "SELECT * FROM p WHERE a = 9 AND b = 'x' AND TRUE", json!([])),
        ("SELECT v FROM k WHERE (id = 3)", "SELECT v FROM k WHERE id = 3 AND TRUE", json!([])),
        ("SELECT id, v FROM public.k WHERE 4 = id", "SELECT id, v FROM k WHERE id = 4 AND TRUE", json!([])),
        ("SELECT \"v\" FROM K WHERE ID = $1", "SELECT v FROM k WHERE id = $1 AND TRUE", json!([3])),
    ];
    let before = point_reads(&c, 2).await;
    for (point, planned, params) in pairs.iter() {
        let fast = run(point, params.clone()).await;
        let slow = run(planned, params.clone()).await;
        assert_eq!(fast, slow, "{point} against {planned}");
    }
    assert_eq!(point_reads(&c, 2).await - before, pairs.len() as u64, "every first query took the point path");
    // Not every column of the key, or another column: planned, same answer.
    let before = point_reads(&c, 2).await;
    run("SELECT * FROM p WHERE a = 1", json!([])).await;
    run("SELECT * FROM p WHERE a = 1 AND b = 'x' AND c = 7", json!([])).await;
    assert_eq!(point_reads(&c, 2).await, before);
    // Errors are the planner's.
    let e = c.sql(2, "SELECT nope FROM k WHERE id = 3", json!([])).await.unwrap_err();
    assert_eq!(e.code, "42703", "{e:?}");
    let e = c.sql(2, "SELECT * FROM nosuch WHERE id = 3", json!([])).await.unwrap_err();
    assert_eq!(e.code, "42P01", "{e:?}");
}
