//! Where a benchmark sends its transactions. One small trait, so the same
//! workload code drives OrdoDB over HTTP today and other targets (the
//! PostgreSQL wire protocol, PostgreSQL itself) later.

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
