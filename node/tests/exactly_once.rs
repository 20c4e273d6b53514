//! Exactly-once writes when replies are lost: three real nodes whose
//! forwarded requests lose their reply after they ran (the failpoint
//! `forward-reply-lost`, as when a connection breaks mid-call), so the
//! sending node cannot tell whether a write was applied and sends it again.
//! Every write must still be applied once: no increment counted twice, no
//! INSERT answered with a unique violation for its own row.

use std::time::Duration;

use ordo_tests::{Cluster, SqlClient};
use serde_json::{json, Value};

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
/// A third of all forwarded replies are lost.
const LOSS: &str = "forward-reply-lost=33%return";
const CLIENTS: u64 = 3;
const PER_CLIENT: u64 = 15;

fn as_i64(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v}"))
}

/// One client's writes, each through the next node in turn: increments of
/// row 1, inserts of its own keys, and two-row transactions (some of them
/// over two vShards, so ordered by the sequencer).
async fn client_writes(sql: SqlClient, client: u64) {
    for i in 0..PER_CLIENT {
        let node = 1 + (client + i) % 3;
        let ok = |r: Result<Vec<Value>, ordo_tests::SqlError>, what: &str| {
            r.unwrap_or_else(|e| panic!("client {client}, {what} #{i} via node {node}: {e:?}"))
        };
        let r = ok(sql.sql(node, "UPDATE hot SET n = n + 1 WHERE id = 1", json!([])).await, "increment");
        assert_eq!(r[0]["rows_affected"], 1);
        let key = client * 1000 + i;
        ok(sql.sql(node, "INSERT INTO seen VALUES ($1)", json!([key])).await, "insert");
        let other = 2 + (key % 7);
        let txn = "BEGIN; UPDATE hot SET n = n + 1 WHERE id = 2; UPDATE hot SET n = n + 1 WHERE id = $1; COMMIT";
        ok(sql.sql(node, txn, json!([other + 1])).await, "transaction");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_replies_never_apply_a_write_twice() {
    let mut c = Cluster::start_with_env(ORDO, 3, &[], &[("FAILPOINTS", LOSS)]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let setup = ["CREATE TABLE hot (id BIGINT PRIMARY KEY, n BIGINT)", "CREATE TABLE seen (k BIGINT PRIMARY KEY)"];
    for (i, s) in setup.iter().enumerate() {
        // DDL goes to the meta leader: a lost reply must not turn into
        // "already exists".
        c.sql(1 + i as u64, s, json!([])).await.unwrap_or_else(|e| panic!("{s}: {e:?}"));
    }
    for id in 1..=10 {
        c.sql(1 + id % 3, "INSERT INTO hot VALUES ($1, 0)", json!([id])).await.unwrap();
    }
    let clients = (0..CLIENTS).map(|k| tokio::spawn(client_writes(c.client(), k)));
    for r in futures::future::join_all(clients).await {
        r.expect("client panicked");
    }
    let writes = (CLIENTS * PER_CLIENT) as i64;
    assert_eq!(as_i64(&c.scalar(2, "SELECT n FROM hot WHERE id = 1").await), writes, "increments applied once each");
    assert_eq!(as_i64(&c.scalar(3, "SELECT count(*) FROM seen").await), writes, "every insert applied");
    let bumped = as_i64(&c.scalar(1, "SELECT sum(n) FROM hot WHERE id > 1").await);
    assert_eq!(bumped, 2 * writes, "each transaction applied once");

    // The request records are replicated state: after a rolling restart
    // without the failpoint, every replica holds the same.
    c.set_env(&[]);
    for n in 1..=3 {
        c.restart(n);
        c.wait_healthy(HEALTHY_WITHIN).await;
    }
    let v = c.verify(1).await;
    assert_eq!(v["consistent"], true, "replicas differ: {v}");
}

/// A proposal that times out (its outcome unknown) releases its locks while
/// its entry may still commit; a write computed in between would not see it
/// and overwrite it. The failpoint `propose-timeout` gives up on a tenth of
/// all proposals at once while their entries go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proposal_that_timed_out_is_not_overwritten() {
    increments_are_counted_once(&[("FAILPOINTS", "propose-timeout=10%return")]).await;
}

/// A forwarded write whose handling is cancelled (its connection broke)
/// mid-proposal: its entry may still commit after its locks are gone. The
/// failpoint `forward-cancel` drops a quarter of all forwarded requests'
/// handling after 5 ms, wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_forward_is_not_overwritten() {
    increments_are_counted_once(&[("FAILPOINTS", "forward-cancel=25%return(5)")]).await;
}

/// Eight clients increment four rows through every node under `env`'s
/// failpoints: every acknowledged increment must be in the final values,
/// and nothing beyond those whose outcome was unknown.
async fn increments_are_counted_once(env: &[(&str, &str)]) {
    let c = Cluster::start_with_env(ORDO, 3, &[], env);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let setup =
        ["CREATE TABLE ctr (id BIGINT PRIMARY KEY, n BIGINT)", "INSERT INTO ctr VALUES (1, 0), (2, 0), (3, 0), (4, 0)"];
    for s in setup {
        c.sql_retry(1, s, json!([]), HEALTHY_WITHIN).await.unwrap_or_else(|e| panic!("{s}: {e:?}"));
    }
    let clients: Vec<_> = (0..8u64)
        .map(|k| {
            let sql = c.client();
            tokio::spawn(async move {
                // Per row: (acknowledged, unknown).
                let mut counts = [(0i64, 0i64); 5];
                for i in 0..40 {
                    let id = 1 + (k + i) % 4;
                    match sql.sql(1 + (k + i) % 3, "UPDATE ctr SET n = n + 1 WHERE id = $1", json!([id])).await {
                        Ok(_) => counts[id as usize].0 += 1,
                        Err(e) if e.code == "08007" || e.status == 0 || e.code.starts_with("XX") => {
                            counts[id as usize].1 += 1
                        }
                        Err(_) => {}
                    }
                }
                counts
            })
        })
        .collect();
    let mut expected = [(0i64, 0i64); 5];
    for h in futures::future::join_all(clients).await {
        for (id, (ok, unknown)) in h.unwrap().iter().enumerate() {
            expected[id].0 += ok;
            expected[id].1 += unknown;
        }
    }
    let r = c.sql_retry(2, "SELECT id, n FROM ctr ORDER BY id", json!([]), HEALTHY_WITHIN).await.unwrap();
    for row in r[0]["rows"].as_array().unwrap() {
        let (id, n) = (as_i64(&row[0]) as usize, as_i64(&row[1]));
        let (ok, unknown) = expected[id];
        assert!(ok > 0, "row {id}: no increment acknowledged");
        assert!(n >= ok, "row {id}: {n} increments applied, {ok} acknowledged: an update was lost");
        assert!(n <= ok + unknown, "row {id}: {n} applied, only {ok} acknowledged and {unknown} unknown");
    }
}
