//! Where a benchmark sends its transactions. One small trait, so the same
//! workload code drives OrdoDB over HTTP and PostgreSQL over its simple
//! query protocol (and OrdoDB's PostgreSQL protocol, once it has one).

use std::time::Duration;

use serde_json::{json, Value};

/// Why a transaction did not commit.
#[derive(Debug, Clone)]
pub struct TxnError {
    /// SQLSTATE, or `transport` when the target could not be reached.
    pub code: String,
    pub message: String,
}

#[async_trait::async_trait]
pub trait Target: Send + Sync {
    /// Runs one request (possibly `BEGIN; ...; COMMIT`) as client `client`;
    /// returns one result per statement.
    async fn execute(&self, client: usize, sql: &str, params: Value) -> Result<Vec<Value>, TxnError>;
}

/// OrdoDB's HTTP SQL API; clients are spread over the nodes round-robin.
pub struct OrdoHttp {
    urls: Vec<String>,
    http: reqwest::Client,
}

impl OrdoHttp {
    /// `spec`: `host:port,host:port,...` (HTTP addresses of the nodes).
    pub fn new(spec: &str) -> anyhow::Result<OrdoHttp> {
        let urls: Vec<String> = spec.split(',').filter(|s| !s.is_empty()).map(|s| format!("http://{s}")).collect();
        anyhow::ensure!(!urls.is_empty(), "no node addresses in {spec:?}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(256).build()?;
        Ok(OrdoHttp { urls, http })
    }
}

#[async_trait::async_trait]
impl Target for OrdoHttp {
    async fn execute(&self, client: usize, sql: &str, params: Value) -> Result<Vec<Value>, TxnError> {
        let url = format!("{}/v1/sql", self.urls[client % self.urls.len()]);
        let transport = |e: reqwest::Error| TxnError { code: "transport".into(), message: e.to_string() };
        let resp =
            self.http.post(url).json(&json!({ "sql": sql, "params": params })).send().await.map_err(transport)?;
        let ok = resp.status().is_success();
        let body: Value = resp.json().await.map_err(transport)?;
        if ok {
            Ok(body["results"].as_array().cloned().unwrap_or_default())
        } else {
            Err(TxnError {
                code: body["error"]["code"].as_str().unwrap_or("?").to_string(),
                message: body["error"]["message"].as_str().unwrap_or("").to_string(),
            })
        }
    }
}

/// PostgreSQL's simple query protocol (what `pgbench -M simple` sends), one
/// connection per client. Takes no parameters: values are in the text.
pub struct PgSimple {
    conns: Vec<tokio::sync::Mutex<tokio_postgres::Client>>,
}

impl PgSimple {
    pub async fn connect(url: &str, clients: usize) -> anyhow::Result<PgSimple> {
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients.max(1) {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    eprintln!("postgres connection ended: {e}");
                }
            });
            conns.push(tokio::sync::Mutex::new(client));
        }
        Ok(PgSimple { conns })
    }
}

#[async_trait::async_trait]
impl Target for PgSimple {
    async fn execute(&self, client: usize, sql: &str, params: Value) -> Result<Vec<Value>, TxnError> {
        if params.as_array().is_some_and(|p| !p.is_empty()) {
            return Err(TxnError { code: "08P01".into(), message: "the simple protocol takes no parameters".into() });
        }
        let conn = self.conns[client % self.conns.len()].lock().await;
        let messages = conn.simple_query(sql).await.map_err(|e| TxnError {
            code: e.code().map_or_else(|| "transport".to_string(), |c| c.code().to_string()),
            message: e.to_string(),
        })?;
        let rows: Vec<Value> = messages
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(Value::Array((0..r.len()).map(|i| r.get(i).map_or(Value::Null, Value::from)).collect()))
                }
                _ => None,
            })
            .collect();
        Ok(vec![json!({ "rows": rows })])
    }
}
