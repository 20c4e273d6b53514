//! The docker-compose cluster (deploy/), end to end, as an operator meets it:
//! writes and reads through every node, a node killed and started again, a
//! node cut off the network and reconnected, and every acknowledged write
//! present at the end with every group's replicas equal.
//!
//! Needs the cluster `scripts/compose.sh test` starts (containers ordo1-3,
//! HTTP on localhost:8080-8082); without `ORDO_COMPOSE_TEST` set it does
//! nothing.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use ordo_tests::{SqlClient, SqlError};
use serde_json::{json, Value};

const HEALTHY_WITHIN: Duration = Duration::from_secs(180);
/// Network the compose project's nodes share (`<project>_default`).
const NETWORK: &str = "ordo_default";

struct Compose {
    client: SqlClient,
    http: reqwest::Client,
    /// Keys whose INSERT was acknowledged; and those whose outcome is unknown.
    acked: BTreeSet<i64>,
    unknown: BTreeSet<i64>,
    next_key: i64,
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn url(node: u64) -> String {
    format!("http://127.0.0.1:{}", 8079 + node)
}

/// Whether an error guarantees nothing was applied (see README).
fn retryable(e: &SqlError) -> bool {
    e.code == "connect" || matches!(e.code.as_str(), "40001" | "53300" | "57P03" | "57014")
}

impl Compose {
    async fn healthy(&self, node: u64) -> bool {
        match self.http.get(format!("{}/health", url(node))).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    async fn wait_healthy(&self, nodes: &[u64]) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for &n in nodes {
            while !self.healthy(n).await {
                assert!(Instant::now() < deadline, "node {n} not healthy within {HEALTHY_WITHIN:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Inserts `count` new keys through `nodes` in turn, retrying what was
    /// surely not applied; records each as acknowledged or unknown.
    async fn insert(&mut self, nodes: &[u64], count: usize) {
        for i in 0..count {
            let (k, node) = (self.next_key, nodes[i % nodes.len()]);
            self.next_key += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match self.client.sql(node, "INSERT INTO kv VALUES ($1, $2)", json!([k, format!("v{k}")])).await {
                    Ok(_) => {
                        self.acked.insert(k);
                        break;
                    }
                    Err(e) if retryable(&e) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        assert!(e.code == "08007" || e.status == 0, "insert of {k} through node {node} refused: {e:?}");
                        self.unknown.insert(k);
                        break;
                    }
                }
            }
        }
    }

    /// Every key node `node` reads, retrying while it cannot answer.
    async fn keys(&self, node: u64) -> BTreeSet<i64> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.client.sql(node, "SELECT k FROM kv", json!([])).await {
                Ok(r) => {
                    let rows = r[0]["rows"].as_array().cloned().unwrap_or_default();
                    return rows.iter().map(|row| row[0].as_i64().expect("a key")).collect();
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading through node {node}: {e:?}; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("node {node} could not read: {e:?}"),
            }
        }
    }

    /// The acknowledged keys `keys` lacks, after checking it holds no key
    /// nobody wrote.
    fn missing(&self, node: u64, keys: &BTreeSet<i64>) -> Vec<i64> {
        let stray: Vec<&i64> = keys.iter().filter(|k| !self.acked.contains(k) && !self.unknown.contains(k)).collect();
        assert!(stray.is_empty(), "node {node} reads keys nobody wrote: {stray:?}");
        self.acked.difference(keys).copied().collect()
    }

    /// Node `node` reads every acknowledged key now: a read is
    /// linearizable, so a key acknowledged before it began must be there.
    async fn sees_everything(&self, node: u64) {
        let keys = self.keys(node).await;
        let missing = self.missing(node, &keys);
        assert!(missing.is_empty(), "node {node} read without acknowledged keys {missing:?}");
    }

    /// Waits until node `node`, back after a kill or a cut, can read (its
    /// reads fail until it has caught up), then checks it reads everything.
    async fn caught_up(&self, node: u64) {
        self.wait_healthy(&[node]).await;
        self.sees_everything(node).await;
    }

    /// Waits until `verify` finds every group's replicas equal.
    async fn replicas_equal(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.http.post(format!("{}/v1/admin/verify", url(1))).send().await;
            let verdict: Value = match r {
                Ok(r) if r.status().is_success() => r.json().await.expect("json"),
                other => json!({"error": format!("{other:?}")}),
            };
            if verdict["consistent"] == true {
                return;
            }
            assert!(Instant::now() < deadline, "replicas differ: {verdict}");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Runs `ordo sql` inside the container of `node` against its own HTTP
/// port; its exit status and output.
fn sql_inside(node: u64, sql: &str) -> (bool, String) {
    let name = format!("ordo{node}");
    let out = Command::new("docker")
        .args(["exec", &name, "/ordo", "sql", "--json", "--http", "127.0.0.1:8080", sql])
        .output()
        .expect("docker exec runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_cluster_survives_a_kill_and_a_network_cut() {
    if std::env::var_os("ORDO_COMPOSE_TEST").is_none() {
        eprintln!("skipped: needs the cluster `scripts/compose.sh test` starts");
        return;
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut c = Compose {
        client: SqlClient::new((1..=3).map(url).collect()),
        http,
        acked: BTreeSet::new(),
        unknown: BTreeSet::new(),
        next_key: 1,
    };
    c.wait_healthy(&[1, 2, 3]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.client.sql(1, "CREATE TABLE kv (k BIGINT PRIMARY KEY, v TEXT)", json!([])).await {
            Ok(_) => break,
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("CREATE TABLE: {e:?} (a fresh cluster is needed: scripts/compose.sh down first)"),
        }
    }
    c.insert(&[1, 2, 3], 30).await;
    for n in 1..=3 {
        c.sees_everything(n).await;
    }
    eprintln!("written and read through every node: {} keys", c.acked.len());

    // A node killed: the other two go on; started again, it catches up.
    docker(&["kill", "ordo3"]);
    c.insert(&[1, 2], 30).await;
    c.sees_everything(1).await;
    c.sees_everything(2).await;
    docker(&["start", "ordo3"]);
    c.caught_up(3).await;
    c.replicas_equal().await;
    eprintln!("after a kill and a restart of ordo3: {} keys, replicas equal", c.acked.len());

    // A node cut off: the majority serves; the cut node answers nothing stale.
    docker(&["network", "disconnect", NETWORK, "ordo3"]);
    c.insert(&[1, 2], 30).await;
    c.sees_everything(1).await;
    c.sees_everything(2).await;
    let (ok, text) = sql_inside(3, "SELECT k FROM kv");
    if ok {
        let answer: Value = serde_json::from_str(&text).expect("ordo sql --json");
        let rows = answer["results"][0]["rows"].as_array().cloned().unwrap_or_default();
        let keys: BTreeSet<i64> = rows.iter().map(|r| r[0].as_i64().expect("a key")).collect();
        let missing = c.missing(3, &keys);
        assert!(missing.is_empty(), "the cut node answered without acknowledged keys {missing:?}");
    }
    eprintln!("cut off, ordo3 answered: {}", text.trim());
    docker(&["network", "connect", NETWORK, "ordo3"]);
    c.caught_up(3).await;
    c.insert(&[1, 2, 3], 15).await;
    for n in 1..=3 {
        c.sees_everything(n).await;
    }
    c.replicas_equal().await;
    eprintln!(
        "healed: {} acknowledged keys present on every node ({} unknown), replicas equal",
        c.acked.len(),
        c.unknown.len()
    );
}
