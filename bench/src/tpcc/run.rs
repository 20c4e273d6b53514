//! The measured run: `workers` clients, each with a home warehouse, deal
//! transactions from their own deck and run them back to back (or with
//! the specification's keying and think times when `wait` is on).
//! Results of the ramp-up are dropped; the rest go into per-kind latency
//! histograms, outcome counters and a per-second timeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::cpu::{CpuMeter, CpuUse};

use super::db::{TpccDb, TpccSession, TxnResult};
use super::input::Inputs;
use super::load::load_constants;
use super::random::{Deck, NuConstants, TpccRand, TxnKind};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub warehouses: i64,
    pub workers: usize,
    pub duration: Duration,
    pub ramp: Duration,
    pub wait: bool,
    pub seed: u64,
    /// Measures the target's CPU over the measured window, if it runs here.
    pub cpu: Option<CpuMeter>,
}

/// Latency bound of the histograms.
const LATENCY_US_MAX: u64 = 120_000_000;

/// One transaction kind's results.
#[derive(Clone, Debug)]
pub struct KindStats {
    /// Latency of finished transactions (committed or rolled back), µs.
    pub latency_us: Histogram<u64>,
    pub committed: u64,
    pub rolled_back: u64,
    pub retries: u64,
    /// Errors by SQLSTATE (or `transport`, `unexpected`).
    pub errors: BTreeMap<String, u64>,
}

impl Default for KindStats {
    fn default() -> KindStats {
        KindStats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds"),
            committed: 0,
            rolled_back: 0,
            retries: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl KindStats {
    fn merge(&mut self, o: &KindStats) {
        self.latency_us.add(&o.latency_us).expect("same bounds");
        self.committed += o.committed;
        self.rolled_back += o.rolled_back;
        self.retries += o.retries;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// A run's results.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub target: String,
    pub config: RunConfig,
    /// Seconds measured (the duration without the ramp).
    pub measured_s: f64,
    pub kinds: BTreeMap<TxnKind, KindStats>,
    /// Finished transactions per second of the measured window, by kind
    /// (index of [`TxnKind::ALL`]).
    pub timeline: Vec<[u64; 5]>,
    /// CPU used in the measured window, if measured.
    pub cpu: Option<CpuUse>,
}

impl RunResult {
    fn empty(target: String, config: RunConfig) -> RunResult {
        let seconds = config.duration.saturating_sub(config.ramp).as_secs() as usize;
        RunResult {
            target,
            measured_s: config.duration.saturating_sub(config.ramp).as_secs_f64(),
            config,
            kinds: TxnKind::ALL.iter().map(|&k| (k, KindStats::default())).collect(),
            timeline: vec![[0; 5]; seconds.max(1)],
            cpu: None,
        }
    }

    /// Adds another run (a later round of the same target).
    pub fn merge(&mut self, o: &RunResult) {
        self.measured_s += o.measured_s;
        for (k, s) in &o.kinds {
            self.kinds.entry(*k).or_default().merge(s);
        }
        self.timeline.extend_from_slice(&o.timeline);
        self.cpu = match (self.cpu, o.cpu) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            _ => None,
        };
    }

    /// Transactions finished in the measured window (committed, or rolled
    /// back as the specification asks of 1% of New-Orders).
    pub fn finished(&self) -> u64 {
        self.kinds.values().map(|k| k.committed + k.rolled_back).sum()
    }

    /// Core-milliseconds per finished transaction: (server, client).
    pub fn core_ms_per_txn(&self) -> Option<(f64, f64)> {
        let cpu = self.cpu?;
        let n = self.finished().max(1) as f64;
        Some((cpu.server_s * 1000.0 / n, cpu.client_s * 1000.0 / n))
    }

    /// Committed New-Orders per minute.
    pub fn tpmc(&self) -> f64 {
        self.kinds[&TxnKind::NewOrder].committed as f64 * 60.0 / self.measured_s.max(f64::MIN_POSITIVE)
    }

    /// tpmC as a share of the specification's maximum of 12.86 per warehouse.
    pub fn efficiency(&self) -> f64 {
        self.tpmc() / (12.86 * self.config.warehouses as f64)
    }

    pub fn errors(&self) -> u64 {
        self.kinds.values().map(|k| k.errors.values().sum::<u64>()).sum()
    }
}

fn kind_index(k: TxnKind) -> usize {
    TxnKind::ALL.iter().position(|&x| x == k).expect("in ALL")
}

/// Keying time and mean think time of a kind (clause 5.2.5), seconds.
fn wait_times(k: TxnKind) -> (f64, f64) {
    match k {
        TxnKind::NewOrder => (18.0, 12.0),
        TxnKind::Payment => (3.0, 12.0),
        TxnKind::OrderStatus => (2.0, 10.0),
        TxnKind::Delivery | TxnKind::StockLevel => (2.0, 5.0),
    }
}

async fn one(session: &mut dyn TpccSession, inputs: &mut Inputs, kind: TxnKind) -> TxnResult {
    match kind {
        TxnKind::NewOrder => session.new_order(&inputs.new_order()).await,
        TxnKind::Payment => session.payment(&inputs.payment()).await,
        TxnKind::OrderStatus => session.order_status(&inputs.order_status()).await,
        TxnKind::Delivery => session.delivery(&inputs.delivery()).await,
        TxnKind::StockLevel => session.stock_level(&inputs.stock_level()).await,
    }
}

/// Counts one measured transaction of `kind` that took `took` and ended
/// `at` into the measured window.
fn record(result: &mut RunResult, kind: TxnKind, outcome: TxnResult, took: Duration, at: Duration) {
    let stats = result.kinds.get_mut(&kind).expect("every kind");
    match outcome {
        Ok(done) => {
            stats.latency_us.saturating_record(took.as_micros() as u64);
            stats.retries += done.retries as u64;
            if done.rolled_back {
                stats.rolled_back += 1;
            } else {
                stats.committed += 1;
            }
            if let Some(slot) = result.timeline.get_mut(at.as_secs() as usize) {
                slot[kind_index(kind)] += 1;
            }
        }
        Err(e) => *stats.errors.entry(e.code).or_default() += 1,
    }
}

/// Runs the workload against `db`; `progress` counts finished New-Orders.
pub async fn run(db: Arc<dyn TpccDb>, cfg: RunConfig, progress: Arc<AtomicU64>) -> anyhow::Result<RunResult> {
    let mut sessions = Vec::with_capacity(cfg.workers);
    for w in 0..cfg.workers {
        sessions.push(db.session(w).await?);
    }
    let run_constants = NuConstants::for_run(&load_constants(), &mut rand::rngs::StdRng::seed_from_u64(cfg.seed));
    // Not from the seed: two runs with one seed on one database (e.g. both
    // PostgreSQL forms) must not reuse history keys.
    let run_tag = rand::rng().random_range(1..=9_000_000i64);
    let start = Instant::now();
    let measure_from = start + cfg.ramp;
    let end = start + cfg.duration;
    let cpu = cfg.cpu.clone().map(|meter| tokio::spawn(measure_cpu(meter, measure_from, end)));
    let mut tasks = Vec::new();
    for (worker, mut session) in sessions.into_iter().enumerate() {
        let cfg = cfg.clone();
        let progress = progress.clone();
        let mut result = RunResult::empty(db.name(), cfg.clone());
        tasks.push(tokio::spawn(async move {
            let seed = cfg.seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut inputs = Inputs::new(TpccRand::new(seed, run_constants), worker, cfg.warehouses, run_tag);
            let mut deck = Deck::default();
            while Instant::now() < end {
                let kind = deck.deal(&mut inputs.rand);
                if cfg.wait {
                    let keying = Duration::from_secs_f64(wait_times(kind).0);
                    if tokio::time::timeout_at(end, tokio::time::sleep(keying)).await.is_err() {
                        break;
                    }
                }
                let began = Instant::now();
                let outcome = one(session.as_mut(), &mut inputs, kind).await;
                let finished = Instant::now();
                if kind == TxnKind::NewOrder {
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                if finished >= measure_from && finished <= end {
                    record(&mut result, kind, outcome, finished - began, finished - measure_from);
                }
                if cfg.wait {
                    // Negative exponential think time, capped at 10x its mean.
                    let mean = wait_times(kind).1;
                    let u: f64 = inputs.rand.uniform(1, 1_000_000) as f64 / 1_000_000.0;
                    let think = Duration::from_secs_f64((-u.ln() * mean).min(10.0 * mean));
                    if tokio::time::timeout_at(end, tokio::time::sleep(think)).await.is_err() {
                        break;
                    }
                }
            }
            result
        }));
    }
    let mut total = RunResult::empty(db.name(), cfg.clone());
    for t in tasks {
        let r = t.await?;
        for (k, s) in &r.kinds {
            total.kinds.get_mut(k).expect("every kind").merge(s);
        }
        for (slot, add) in total.timeline.iter_mut().zip(&r.timeline) {
            for (a, b) in slot.iter_mut().zip(add) {
                *a += b;
            }
        }
    }
    if let Some(cpu) = cpu {
        total.cpu = Some(cpu.await??);
    }
    Ok(total)
}

/// The CPU used between `from` and `to` by the server and by this process.
async fn measure_cpu(meter: CpuMeter, from: Instant, to: Instant) -> anyhow::Result<CpuUse> {
    let sample = |m: &CpuMeter| -> anyhow::Result<(f64, f64)> { Ok((m.server_s()?, crate::cpu::client_s()?)) };
    tokio::time::sleep_until(from).await;
    let (server_0, client_0) = sample(&meter)?;
    tokio::time::sleep_until(to).await;
    let (server_1, client_1) = sample(&meter)?;
    Ok(CpuUse { server_s: server_1 - server_0, client_s: client_1 - client_0 })
}
