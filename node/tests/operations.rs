//! What an operator uses: `GET /metrics` (counters that move, text that
//! parses), the CLI (`ordo health`, `status`, `sql`, `admin`) against real
//! nodes, and a node configured by `ORDO_*` environment variables alone.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ordo_tests::Cluster;
use serde_json::{json, Value};

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);
const LEADERS_MOVE_WITHIN: Duration = Duration::from_secs(120);

/// A scrape: every sample by its series (`name{labels}`).
type Samples = BTreeMap<String, f64>;

/// Parses Prometheus/OpenMetrics text strictly: every line a `# HELP`,
/// `# TYPE`, `# UNIT` or the final `# EOF`, or `name{k="v",...} value`
/// with a valid metric name and a number.
fn parse_metrics(text: &str) -> Result<Samples, String> {
    let mut samples = Samples::new();
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        return Err("no final # EOF".into());
    }
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap_or("");
            if !["HELP", "TYPE", "UNIT"].contains(&kind) {
                return Err(format!("unexpected comment: {line}"));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("no value: {line}"))?;
        let name = series.split('{').next().unwrap_or("");
        let name_ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok {
            return Err(format!("bad metric name: {line}"));
        }
        if let Some(labels) = series.strip_prefix(name) {
            let labels_ok = labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}'));
            if !labels_ok {
                return Err(format!("bad labels: {line}"));
            }
        }
        let v: f64 = value.parse().map_err(|_| format!("bad value: {line}"))?;
        samples.insert(series.to_string(), v);
    }
    Ok(samples)
}

async fn scrape(c: &Cluster, node: u64) -> Samples {
    let r = reqwest::get(format!("{}/metrics", c.url(node))).await.expect("GET /metrics");
    assert!(r.status().is_success());
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = r.text().await.unwrap();
    parse_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// The sum of every series of metric `name` whose labels contain `labels`.
fn total(s: &Samples, name: &str, labels: &str) -> f64 {
    s.iter()
        .filter(|(series, _)| series.split('{').next() == Some(name) && series.contains(labels))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_during_a_workload_and_parse() {
    let c = Cluster::start(ORDO, 3, &["--vshards", "8"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let before: Vec<Samples> = futures::future::join_all((1..=3).map(|n| scrape(&c, n))).await;
    c.sql(1, "CREATE TABLE m (id BIGINT PRIMARY KEY, n BIGINT)", json!([])).await.unwrap();
    for i in 0..40 {
        c.sql_retry(1 + i % 3, "INSERT INTO m VALUES ($1, 0)", json!([i]), HEALTHY_WITHIN).await.unwrap();
    }
    // Cross-shard: every row in one transaction.
    c.sql_retry(2, "UPDATE m SET n = n + 1", json!([]), HEALTHY_WITHIN).await.unwrap();
    let bad = c.sql(3, "SELEC 1", json!([])).await.expect_err("a syntax error");
    assert_eq!(bad.code, "42601");
    assert_eq!(c.scalar(3, "SELECT sum(n) FROM m").await, json!(40));
    let after: Vec<Samples> = futures::future::join_all((1..=3).map(|n| scrape(&c, n))).await;

    let moved = |name: &str, labels: &str| -> f64 {
        (0..3).map(|i| total(&after[i], name, labels) - total(&before[i], name, labels)).sum()
    };
    assert!(moved("ordo_sql_requests_total", "kind=\"write\"") >= 40.0);
    assert!(moved("ordo_sql_requests_total", "kind=\"query\"") >= 1.0);
    assert!(moved("ordo_sql_errors_total", "sqlstate=\"42601\"") >= 1.0);
    assert!(moved("ordo_raft_proposals_total", "group_kind=\"vshard\",outcome=\"ok\"") >= 40.0);
    assert!(moved("ordo_raft_propose_seconds_count", "group_kind=\"vshard\"") >= 40.0);
    assert!(moved("ordo_raft_applied_entries_total", "group_kind=\"vshard\"") >= 120.0, "every replica applies");
    assert!(moved("ordo_raft_append_seconds_count", "") > 0.0);
    assert!(moved("ordo_raft_commit_seconds_count", "group_kind=\"vshard\"") >= 120.0, "on every replica");
    assert!(moved("ordo_storage_wal_syncs_total", "") > 0.0);
    assert!(moved("ordo_sequencer_epochs_total", "outcome=\"ok\"") >= 1.0);
    assert!(moved("ordo_scheduler_positions_total", "") >= 1.0);
    assert!(moved("ordo_sql_transactions_total", "path=\"cross_shard\",result=\"ok\"") >= 1.0);
    // Gauges read when scraped: every group has one leader, on some node
    // (once leaders have settled: a transfer may be under way).
    let deadline = Instant::now() + HEALTHY_WITHIN;
    loop {
        let now: Vec<Samples> = futures::future::join_all((1..=3).map(|n| scrape(&c, n))).await;
        let leaders: f64 = now.iter().map(|s| total(s, "ordo_raft_leaders", "")).sum();
        if leaders == 10.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{leaders} leaders of meta, sequencer and 8 vShards");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for s in &after {
        assert_eq!(total(s, "ordo_raft_groups", ""), 10.0);
        assert!(total(s, "ordo_process_cpu_seconds_total", "") > 0.0);
        assert!(total(s, "ordo_process_resident_memory_bytes", "") > 1e6);
        assert!(total(s, "ordo_storage_live_sst_bytes", "") >= 0.0);
        assert_eq!(total(s, "ordo_sql_requests_in_flight", ""), 0.0);
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(ORDO).args(args).stdin(Stdio::null()).output().expect("run ordo")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

async fn status(c: &Cluster, node: u64) -> Value {
    loop {
        let r = reqwest::get(format!("{}/v1/admin/status", c.url(node))).await.expect("status");
        // 53300: another status is being gathered; ask again.
        if r.status().is_success() {
            return r.json().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn led_by(status: &Value, node: u64) -> usize {
    status["groups"].as_array().unwrap().iter().filter(|g| g["leader"] == node).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_move_leaders_with_the_cli() {
    let c = Cluster::start(ORDO, 3, &["--vshards", "8"]);
    c.wait_healthy(HEALTHY_WITHIN).await;
    let http = c.http_addrs();
    let addr = |n: usize| http.split(',').nth(n - 1).unwrap().to_string();

    let health = cli(&["health", "--http", &addr(1)]);
    assert!(health.status.success(), "{}", text(&health));
    let down = cli(&["health", "--http", "127.0.0.1:1"]);
    assert!(!down.status.success(), "a node that does not answer is not healthy");

    let created = cli(&["sql", "--http", &addr(2), "CREATE TABLE t (id BIGINT PRIMARY KEY, s TEXT)"]);
    assert!(created.status.success(), "{}", text(&created));
    let inserted = cli(&["sql", "--http", &addr(3), "-p", "7", "-p", "seven", "INSERT INTO t VALUES ($1, $2)"]);
    assert!(inserted.status.success(), "{}", text(&inserted));
    let read = cli(&["sql", "--http", &addr(1), "SELECT id, s FROM t"]);
    assert!(
        read.status.success() && text(&read).contains("seven") && text(&read).contains("(1 rows)"),
        "{}",
        text(&read)
    );
    let wrong = cli(&["sql", "--http", &addr(1), "SELEC 1"]);
    assert!(!wrong.status.success() && text(&wrong).contains("42601"), "{}", text(&wrong));

    // The prompt reads statements ending in `;`, over several lines.
    let mut prompt = Command::new(ORDO)
        .args(["sql", "--http", &addr(2)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ordo sql");
    {
        use std::io::Write;
        let mut stdin = prompt.stdin.take().unwrap();
        stdin.write_all(b"SELECT 41\n + 1 AS answer;\nSELEC 2;\nSELECT s FROM t WHERE id = 7;\n").unwrap();
    }
    let out = prompt.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("answer") && said.contains("42") && said.contains("42601") && said.contains("seven"),
        "{said}"
    );

    let table = cli(&["status", "--http", &addr(1)]);
    assert!(table.status.success(), "{}", text(&table));
    assert!(text(&table).contains("10 groups"), "{}", text(&table));

    // Step down: node 2 leads nothing, and writes go on.
    let drained = cli(&["admin", "step-down", "--http", &addr(1), "--node", "2", "--wait-s", "120"]);
    assert!(drained.status.success(), "{}", text(&drained));
    let s = status(&c, 3).await;
    assert_eq!(led_by(&s, 2), 0, "{s}");
    assert_eq!(s["drained"], json!([2]));
    c.sql_retry(2, "INSERT INTO t VALUES (8, 'eight')", json!([]), HEALTHY_WITHIN).await.unwrap();

    // Step up: node 2 takes its preferred groups back.
    let undrained = cli(&["admin", "step-up", "--http", &addr(3), "--node", "2"]);
    assert!(undrained.status.success(), "{}", text(&undrained));
    let deadline = Instant::now() + LEADERS_MOVE_WITHIN;
    while led_by(&status(&c, 1).await, 2) == 0 {
        assert!(Instant::now() < deadline, "node 2 leads nothing after step-up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A leader pinned elsewhere moves there and stays the target.
    let group = 4u64; // vShard 2
    let preferred = status(&c, 1).await["groups"][group as usize]["target_leader"].as_u64().unwrap();
    let to = if preferred == 3 { 1 } else { 3 };
    let to_s = to.to_string();
    let moved =
        cli(&["admin", "transfer-leader", "--http", &addr(2), "--group", "4", "--to", &to_s, "--wait-s", "120"]);
    assert!(moved.status.success(), "{}", text(&moved));
    let s = status(&c, 2).await;
    assert_eq!(s["groups"][group as usize]["leader"], json!(to), "{s}");
    assert_eq!(s["groups"][group as usize]["target_leader"], json!(to), "{s}");
    let refused = cli(&["admin", "transfer-leader", "--http", &addr(2), "--group", "999", "--to", "1"]);
    assert!(!refused.status.success() && text(&refused).contains("no group 999"), "{}", text(&refused));
    let unpinned = cli(&["admin", "unpin", "--http", &addr(2), "--group", "4"]);
    assert!(unpinned.status.success(), "{}", text(&unpinned));
    assert_eq!(status(&c, 2).await["groups"][group as usize]["target_leader"], json!(preferred));
    assert_eq!(c.scalar(1, "SELECT count(*) FROM t").await, json!(2));
}

/// Every `ordo start` flag is also read from `ORDO_<FLAG>`: a node
/// configured by its environment alone starts, and `ordo health` says so.
#[test]
fn a_node_configured_by_environment_alone_starts() {
    let dir = std::env::temp_dir().join(format!("ordo-env-{}", std::process::id()));
    let (http, rpc) = (ordo_tests::free_port(), ordo_tests::free_port());
    let mut node = Command::new(ORDO)
        .arg("start")
        .env("ORDO_ID", "1")
        .env("ORDO_DATA_DIR", &dir)
        .env("ORDO_RPC", format!("127.0.0.1:{rpc}"))
        .env("ORDO_HTTP", format!("127.0.0.1:{http}"))
        .env("ORDO_PEERS", format!("1=127.0.0.1:{rpc}"))
        .env("ORDO_VSHARDS", "2")
        .env("ORDO_CLUSTER_SECRET", "0123456789abcdef0123")
        .env("ORDO_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let addr = format!("127.0.0.1:{http}");
    let deadline = Instant::now() + HEALTHY_WITHIN;
    while !cli(&["health", "--http", &addr]).status.success() {
        if let Ok(Some(status)) = node.try_wait() {
            panic!("the node exited: {status}");
        }
        assert!(Instant::now() < deadline, "not healthy within {HEALTHY_WITHIN:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    node.kill().unwrap();
    let out = node.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let first = logs.lines().next().expect("a log line");
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["level"].is_string() && line["fields"].is_object(), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}
