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
