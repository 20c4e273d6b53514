//! Test harness: a cluster of real `ordo start` processes on loopback, each
//! with its own RocksDB directory, driven over the HTTP API.
//!
//! Clusters of one test binary run one at a time (a process-wide lock), so
//! tests on a small machine do not starve each other's Raft timers.
//!
//! Dependency rule: talks to nodes over HTTP only; depends on no OrdoDB
//! crate, so the tests see the database as a client does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod links;

static CLUSTER_LOCK: Mutex<()> = Mutex::new(());

/// An error answer of `POST /v1/sql`.
#[derive(Debug, Clone)]
pub struct SqlError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

pub struct NodeProc {
    pub id: u64,
    pub http_port: u16,
    pub rpc_port: u16,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    peers: String,
    extra_args: Vec<String>,
    /// Environment variables of every node started from now on.
    env: Vec<(String, String)>,
    /// Per node, the `--peers` it is started with, when it differs from
    /// `peers` (links through [`links::Links`]).
    node_peers: std::collections::BTreeMap<u64, String>,
    /// Keep data and logs when dropped (see [`Cluster::keep`]).
    keep: bool,
    pub nodes: Vec<NodeProc>,
    client: reqwest::Client,
    _guard: MutexGuard<'static, ()>,
}

/// A secret for one test cluster (its nodes refuse calls without it).
fn cluster_secret() -> String {
    let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("test-secret-{}-{ns}", std::process::id())
}

/// A port that is free now, taken from below Linux's ephemeral range
/// (32768+) so that outgoing connections cannot grab it before the node
/// binds it; each test process walks its own stretch of the range.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let offset = (std::process::id() % 100) * 120;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (20_000 + (offset + n) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `n` nodes running `bin` (the `ordo` binary under test) with
    /// `extra_args` added to every `ordo start`.
    pub fn start(bin: &str, n: u64, extra_args: &[&str]) -> Cluster {
        Cluster::start_with_env(bin, n, extra_args, &[])
    }

    /// [`Cluster::start`] with environment variables for every node (e.g.
    /// `FAILPOINTS` to inject faults).
    pub fn start_with_env(bin: &str, n: u64, extra_args: &[&str], env: &[(&str, &str)]) -> Cluster {
        let guard = CLUSTER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let root = std::env::temp_dir().join(format!("ordo-test-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create test dir");
        let nodes: Vec<NodeProc> = (1..=n)
            .map(|id| NodeProc {
                id,
                http_port: free_port(),
                rpc_port: free_port(),
                data_dir: root.join(format!("node{id}")),
                child: None,
            })
            .collect();
        let peers = nodes.iter().map(|p| format!("{}=127.0.0.1:{}", p.id, p.rpc_port)).collect::<Vec<_>>().join(",");
        let mut c = Cluster {
            bin: PathBuf::from(bin),
            root,
            peers,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain([("ORDO_CLUSTER_SECRET".to_string(), cluster_secret())])
                .collect(),
            node_peers: Default::default(),
            keep: false,
            nodes,
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
            _guard: guard,
        };
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// Like [`Cluster::start_with_env`], but every node reaches every other
    /// through a proxy of the returned [`links::Links`], which can cut links.
    pub async fn start_linked(bin: &str, n: u64, extra_args: &[&str], env: &[(&str, &str)]) -> (Cluster, links::Links) {
        let mut c = Cluster::start_with_env(bin, 0, extra_args, env);
        c.nodes = (1..=n)
            .map(|id| NodeProc {
                id,
                http_port: free_port(),
                rpc_port: free_port(),
                data_dir: c.root.join(format!("node{id}")),
                child: None,
            })
            .collect();
        let ports = c.nodes.iter().map(|p| (p.id, p.rpc_port)).collect();
        let links = links::Links::start(&ports).await.expect("link proxies");
        for me in 1..=n {
            let peers: Vec<String> = c
                .nodes
                .iter()
                .map(|p| {
                    let port = if p.id == me { p.rpc_port } else { links.port(me, p.id).expect("link") };
                    format!("{}=127.0.0.1:{port}", p.id)
                })
                .collect();
            c.node_peers.insert(me, peers.join(","));
        }
        for id in 1..=n {
            c.spawn(id);
        }
        (c, links)
    }

    fn node(&self, id: u64) -> &NodeProc {
        &self.nodes[(id - 1) as usize]
    }

    fn spawn(&mut self, id: u64) {
        let peers = self.node_peers.get(&id).cloned().unwrap_or_else(|| self.peers.clone());
        let (bin, extra, env) = (self.bin.clone(), self.extra_args.clone(), self.env.clone());
        let node = &mut self.nodes[(id - 1) as usize];
        std::fs::create_dir_all(&node.data_dir).expect("node dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.data_dir.join("node.log"))
            .expect("log file");
        let child = Command::new(bin)
            .arg("start")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--rpc", &format!("127.0.0.1:{}", node.rpc_port)])
            .args(["--http", &format!("127.0.0.1:{}", node.http_port)])
            .args(["--peers", &peers])
            .args(&extra)
            .envs(env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ordo");
        node.child = Some(child);
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.node(id).http_port)
    }

    /// Every node's HTTP address, `host:port,host:port,...` (what
    /// `ordo-bench --target ordo://...` takes).
    pub fn http_addrs(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.http_port)).collect::<Vec<_>>().join(",")
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    /// SIGKILL: no shutdown, no flush — what a crash looks like.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets the environment of nodes started from now on (see
    /// [`Cluster::start_with_env`]).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        let secret = self.env.iter().find(|(k, _)| k == "ORDO_CLUSTER_SECRET").cloned();
        self.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).chain(secret).collect();
    }

    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.spawn(id);
    }

    /// SIGSTOP: the node freezes, its connections stay open (a long GC
    /// pause or a stalled VM looks like this).
    pub fn pause(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    /// The process ids of the running nodes (e.g. to measure their CPU).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.child.as_ref().map(Child::id)).collect()
    }

    fn signal(&self, id: u64, sig: libc::c_int) {
        if let Some(child) = &self.node(id).child {
            // SAFETY: kill(2) on a pid we spawned and have not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    /// Removes node `id`'s data directory (the node must be stopped): a
    /// disk lost or replaced.
    pub fn wipe(&mut self, id: u64) {
        self.kill(id);
        let _ = std::fs::remove_dir_all(&self.node(id).data_dir);
    }

    /// Keeps the nodes' data directories and logs after the cluster is
    /// dropped; returns where they are.
    pub fn keep(&mut self) -> &Path {
        self.keep = true;
        &self.root
    }

    /// Node `id`'s exit status if its process has ended (it is then no
    /// longer running).
    pub fn exited(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        let node = &mut self.nodes[(id - 1) as usize];
        let status = node.child.as_mut()?.try_wait().ok()??;
        node.child = None;
        Some(status)
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).child.is_some()
    }

    /// Waits until every running node answers `/health` with 200.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for n in &self.nodes {
            if n.child.is_none() {
                continue;
            }
            loop {
                let ok = matches!(self.client.get(format!("{}/health", self.url(n.id))).send().await, Ok(r) if r.status().is_success());
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} not healthy within {timeout:?}; log: {}",
                    n.id,
                    self.log_tail(n.id)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Everything node `id` has logged (stderr included).
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.node(id).data_dir.join("node.log")).unwrap_or_default()
    }

    /// The last 30 lines of node `id`'s log.
    pub fn log_tail(&self, id: u64) -> String {
        let text = self.log(id);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A client of the SQL API that does not borrow the cluster, for
    /// workloads that run while the test kills and restarts nodes.
    pub fn client(&self) -> SqlClient {
        SqlClient { urls: self.nodes.iter().map(|n| self.url(n.id)).collect(), client: self.client.clone() }
    }

    /// Runs `sql` on node `id`; the `results` array, or the error.
    pub async fn sql(&self, id: u64, sql: &str, params: Value) -> Result<Vec<Value>, SqlError> {
        self.client().sql(id, sql, params).await
    }

    /// Posts a raw body to `/v1/sql` of node `id`.
    pub async fn post_raw(&self, id: u64, body: Vec<u8>) -> Result<Vec<Value>, SqlError> {
        self.client().post_raw(id, body).await
    }

    /// Like [`Cluster::sql`] but retries retryable errors (leader changes,
    /// unreachable nodes) until `timeout`; other errors are returned.
    pub async fn sql_retry(
        &self,
        id: u64,
        sql: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Vec<Value>, SqlError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.sql(id, sql, params.clone()).await {
                Err(e) if (e.status == 0 || e.status == 503) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// A single-value query's answer.
    pub async fn scalar(&self, id: u64, sql: &str) -> Value {
        let r = self
            .sql_retry(id, sql, json!([]), Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        r[0]["rows"][0][0].clone()
    }

    /// `POST /v1/admin/verify` on node `id`: replica hashes of every group.
    pub async fn verify(&self, id: u64) -> Value {
        let r = self.client.post(format!("{}/v1/admin/verify", self.url(id))).send().await.expect("verify");
        assert!(r.status().is_success(), "verify answered {}", r.status());
        r.json().await.expect("json")
    }

    /// Every running node's `/v1/admin/transactions` (scheduler and lock
    /// state per vShard), for failure messages.
    pub async fn transactions_state(&self) -> Value {
        let mut all = Vec::new();
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let r = self.client.get(format!("{}/v1/admin/transactions", self.url(n.id))).send().await;
            all.push(match r {
                Ok(r) => r.json().await.unwrap_or_else(|e| json!({"node": n.id, "error": e.to_string()})),
                Err(e) => json!({"node": n.id, "error": e.to_string()}),
            });
        }
        Value::Array(all)
    }

    pub async fn cluster_status(&self, id: u64) -> Value {
        self.client
            .get(format!("{}/v1/cluster", self.url(id)))
            .send()
            .await
            .expect("cluster")
            .json()
            .await
            .expect("json")
    }
}

/// See [`Cluster::client`]. Node ids are 1-based.
#[derive(Clone)]
pub struct SqlClient {
    urls: Vec<String>,
    client: reqwest::Client,
}

impl SqlClient {
    /// A client of the nodes at `urls` (`http://host:port`, node 1 first).
    pub fn new(urls: Vec<String>) -> SqlClient {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
        SqlClient { urls, client }
    }

    pub async fn sql(&self, id: u64, sql: &str, params: Value) -> Result<Vec<Value>, SqlError> {
        self.post_raw(id, json!({"sql": sql, "params": params}).to_string().into_bytes()).await
    }

    pub async fn post_raw(&self, id: u64, body: Vec<u8>) -> Result<Vec<Value>, SqlError> {
        let resp = self
            .client
            .post(format!("{}/v1/sql", self.urls[(id - 1) as usize]))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SqlError {
                status: 0,
                // Not connected: the request was not sent.
                code: if e.is_connect() { "connect" } else { "transport" }.into(),
                message: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let v: Value =
            resp.json().await.map_err(|e| SqlError { status, code: "body".into(), message: e.to_string() })?;
        if (200..300).contains(&status) {
            Ok(v["results"].as_array().cloned().unwrap_or_default())
        } else {
            Err(SqlError {
                status,
                code: v["error"]["code"].as_str().unwrap_or("").to_string(),
                message: v["error"]["message"].as_str().unwrap_or("").to_string(),
            })
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !std::thread::panicking() && !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("cluster data and logs kept in {}", self.root.display());
        }
    }
}
