//! SQL requests and transactions: what clients ask of this node, how long
//! it takes, and the SQLSTATEs of what fails.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::latency_histogram;

/// What a request to `POST /v1/sql` was: the `kind` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RequestKind {
    /// One SELECT.
    Query,
    /// One INSERT, UPDATE or DELETE.
    Write,
    /// `BEGIN; ...; COMMIT`, or several writes in one request.
    Transaction,
    /// CREATE or DROP.
    Ddl,
    /// Several statements of mixed kinds, run one by one.
    Batch,
    /// Refused before it could be told apart (syntax, too complex).
    Invalid,
}

impl EncodeLabelValue for RequestKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = match self {
            RequestKind::Query => "query",
            RequestKind::Write => "write",
            RequestKind::Transaction => "transaction",
            RequestKind::Ddl => "ddl",
            RequestKind::Batch => "batch",
            RequestKind::Invalid => "invalid",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

/// How the gateway ran a transaction or write: the `path` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TxnPath {
    /// On its one vShard's leader.
    SingleShard,
    /// Ordered by the sequencer, run by every participant.
    CrossShard,
}

impl EncodeLabelValue for TxnPath {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = match self {
            TxnPath::SingleShard => "single_shard",
            TxnPath::CrossShard => "cross_shard",
        };
        EncodeLabelValue::encode(&s, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: RequestKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    sqlstate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: TxnPath,
    result: &'static str,
}

#[derive(Clone, Debug)]
pub struct SqlMetrics {
    requests: Family<KindLabels, Counter>,
    request: Family<KindLabels, Histogram, fn() -> Histogram>,
    errors: Family<CodeLabels, Counter>,
    in_flight: Gauge,
    txns: Family<PathLabels, Counter>,
    txn: Family<PathLabels, Histogram, fn() -> Histogram>,
    point_reads: Counter,
}

impl Default for SqlMetrics {
    fn default() -> SqlMetrics {
        SqlMetrics {
            requests: Family::default(),
            request: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            errors: Family::default(),
            in_flight: Gauge::default(),
            txns: Family::default(),
            txn: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            point_reads: Counter::default(),
        }
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl SqlMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("sql");
        r.register("requests", "SQL requests answered by this node, by kind", self.requests.clone());
        r.register_with_unit("request", "SQL requests, from parse to result", Unit::Seconds, self.request.clone());
        r.register("errors", "SQL requests that failed, by SQLSTATE", self.errors.clone());
        r.register("requests_in_flight", "SQL requests being run by this node", self.in_flight.clone());
        r.register(
            "transactions",
            "Transaction programs and multi-vShard statements this node's gateway ran, by path and result \
             (single-statement writes to one vShard count in requests only)",
            self.txns.clone(),
        );
        r.register_with_unit(
            "transaction",
            "Transaction programs and multi-vShard statements, until their outcome was known (retries included)",
            Unit::Seconds,
            self.txn.clone(),
        );
        r.register(
            "point_reads",
            "SELECTs of one row by its whole primary key, answered without a query plan",
            self.point_reads.clone(),
        );
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// A request of `kind` answered after `seconds`; `sqlstate` if it failed.
    pub fn finished(&self, kind: RequestKind, seconds: f64, sqlstate: Option<&str>) {
        let labels = KindLabels { kind };
        self.requests.get_or_create(&labels).inc();
        self.request.get_or_create(&labels).observe(seconds);
        if let Some(code) = sqlstate {
            self.errors.get_or_create(&CodeLabels { sqlstate: code.to_string() }).inc();
        }
    }

    /// A SELECT answered by the point-read path.
    pub fn point_read(&self) {
        self.point_reads.inc();
    }

    /// A transaction the gateway ran on `path`.
    pub fn transaction(&self, path: TxnPath, ok: bool, seconds: f64) {
        let labels = PathLabels { path, result: if ok { "ok" } else { "error" } };
        self.txns.get_or_create(&labels).inc();
        self.txn.get_or_create(&labels).observe(seconds);
    }
}
