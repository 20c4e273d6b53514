//! One chaos run: cluster up, workload under the nemesis, heal, check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordo_tests::links::Links;
use ordo_tests::Cluster;
use serde::Serialize;
use tokio::sync::watch;

use crate::check::{list_append, Anomaly, Mop, Op, OpKind};
use crate::nemesis::{self, FaultKind, Step};
use crate::others;
use crate::workload::{self, Client};

const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub ordo_bin: PathBuf,
    pub seed: u64,
    pub duration_s: u64,
    pub nodes: u64,
    pub vshards: u32,
    pub keys: u64,
    pub clients: u64,
    pub nemeses: Vec<FaultKind>,
    /// Where to write the history (JSON, one op per line), if anywhere.
    pub history_out: Option<PathBuf>,
}

/// What a run found.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub seed: u64,
    pub ops: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    pub faults: BTreeMap<FaultKind, usize>,
    /// Operations of the register, set, counter and bank workloads.
    pub other_ops: usize,
    /// Checks that could not decide (not failures), one line each.
    pub inconclusive: Vec<String>,
    /// Anomalies the checkers reported, one line each.
    pub anomalies: Vec<String>,
    /// Acknowledged appends missing from the final read.
    pub lost: usize,
    /// Every group's replicas equal at the end (`verify`).
    pub consistent: bool,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.anomalies.is_empty() && self.lost == 0 && self.consistent
    }
}

/// Runs `cfg` to its verdict. Errors are failures of the run itself (a
/// node that never came back, a final read that never answered).
pub async fn run(cfg: &Config) -> anyhow::Result<Verdict> {
    let bin = cfg.ordo_bin.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path"))?;
    let vshards = cfg.vshards.to_string();
    let (mut cluster, links) = Cluster::start_linked(bin, cfg.nodes, &["--vshards", &vshards], &[]).await;
    cluster.wait_healthy(HEALTHY_WITHIN).await;
    workload::setup(&cluster, cfg.keys).await.map_err(|e| anyhow::anyhow!("setup: {e:?}"))?;
    others::setup(&cluster).await.map_err(|e| anyhow::anyhow!("setup: {e:?}"))?;
    let duration_ms = cfg.duration_s * 1000;
    let steps = nemesis::schedule(cfg.seed, duration_ms, cfg.nodes, &cfg.nemeses);
    eprintln!("ordo-chaos: seed {} ({} faults); replay: ordo-chaos --seed {}", cfg.seed, steps.len(), cfg.seed);
    for s in &steps {
        eprintln!("  {s}");
    }
    let start = Instant::now();
    let (stop_tx, stop) = watch::channel(false);
    let client =
        Client { sql: cluster.client(), nodes: cfg.nodes, keys: cfg.keys, start, values: Arc::new(AtomicU64::new(1)) };
    let workers: Vec<_> =
        (0..cfg.clients).map(|p| tokio::spawn(client.clone().run(p, cfg.seed, stop.clone()))).collect();
    let other = others::Client { sql: cluster.client(), nodes: cfg.nodes, start, values: client.values.clone() };
    let kinds = others::CLIENTS.iter().flat_map(|&(kind, n)| std::iter::repeat_n(kind, n as usize));
    let other_workers: Vec<_> = kinds
        .enumerate()
        .map(|(i, kind)| tokio::spawn(other.clone().run(kind, cfg.clients + 1 + i as u64, cfg.seed, stop.clone())))
        .collect();
    for step in &steps {
        tokio::time::sleep_until((start + Duration::from_millis(step.at_ms)).into()).await;
        inflict(&mut cluster, &links, step).await;
    }
    tokio::time::sleep_until((start + Duration::from_millis(duration_ms)).into()).await;
    stop_tx.send_replace(true);
    let mut history = Vec::new();
    for w in workers {
        history.extend(w.await?);
    }
    let mut recorded = others::Recorded::default();
    for w in other_workers {
        recorded.extend(w.await?);
    }
    heal(&mut cluster, &links, cfg.nodes).await;
    history.push(workload::final_read(&cluster, cfg.keys, start, cfg.clients).await.map_err(anyhow::Error::msg)?);
    let consistent = cluster.verify(1).await["consistent"] == true;
    let mut verdict = judge(cfg.seed, history, nemesis::counts(&steps), consistent, cfg.history_out.as_deref())?;
    verdict.other_ops = recorded.ops();
    let found = others::check(&cluster, recorded).await.map_err(anyhow::Error::msg)?;
    verdict.anomalies.extend(found.anomalies);
    verdict.inconclusive = found.inconclusive;
    if !verdict.passed() {
        eprintln!("ordo-chaos: node data and logs kept in {}", cluster.keep().display());
    }
    Ok(verdict)
}

/// Applies one fault and, after its hold, heals it. Waits first until
/// every node is healthy, so faults do not pile up beyond the schedule.
async fn inflict(c: &mut Cluster, links: &Links, step: &Step) {
    c.wait_healthy(HEALTHY_WITHIN).await;
    let node = match step.kind {
        FaultKind::KillSequencerLeader => leader_of(c, "sequencer").await.unwrap_or(step.node),
        FaultKind::KillVshardLeader => busiest_vshard_leader(c).await.unwrap_or(step.node),
        _ => step.node,
    };
    eprintln!("  t+{:>6} ms {:?} on node {node}", step.at_ms, step.kind);
    let hold = Duration::from_millis(step.hold_ms);
    match step.kind {
        FaultKind::Kill | FaultKind::KillSequencerLeader | FaultKind::KillVshardLeader => {
            c.kill(node);
            tokio::time::sleep(hold).await;
            c.restart(node);
        }
        FaultKind::Pause => {
            c.pause(node);
            tokio::time::sleep(hold).await;
            c.resume(node);
        }
        FaultKind::Isolate => {
            for other in (1..=c.nodes.len() as u64).filter(|&o| o != node) {
                links.set_cut(node, other, true);
                links.set_cut(other, node, true);
            }
            tokio::time::sleep(hold).await;
            links.heal_all();
        }
        FaultKind::CutOneWay => {
            links.set_cut(node, step.peer, true);
            tokio::time::sleep(hold).await;
            links.heal_all();
        }
        FaultKind::Slow => {
            for other in (1..=c.nodes.len() as u64).filter(|&o| o != node) {
                links.set_delay(node, other, step.delay_ms);
                links.set_delay(other, node, step.delay_ms);
            }
            tokio::time::sleep(hold).await;
            links.heal_all();
        }
    }
}

/// Ends every fault: links healed, nodes resumed and running, healthy.
async fn heal(c: &mut Cluster, links: &Links, nodes: u64) {
    links.heal_all();
    for n in 1..=nodes {
        c.resume(n);
        if !c.is_running(n) {
            c.restart(n);
        }
    }
    c.wait_healthy(HEALTHY_WITHIN).await;
}

/// The leader of the one group of `kind` ("meta", "sequencer").
async fn leader_of(c: &Cluster, kind: &str) -> Option<u64> {
    let status = c.cluster_status(1).await;
    status["groups"].as_array()?.iter().find(|g| g["kind"] == kind).and_then(|g| g["leader"].as_u64())
}

/// The node leading the most vShards.
async fn busiest_vshard_leader(c: &Cluster) -> Option<u64> {
    let status = c.cluster_status(1).await;
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for g in status["groups"].as_array()?.iter().filter(|g| g["kind"] == "vshard") {
        *led.entry(g["leader"].as_u64()?).or_default() += 1;
    }
    led.into_iter().max_by_key(|(_, n)| *n).map(|(node, _)| node)
}

/// Checks the history: the checker's anomalies, and the acknowledged
/// appends the final read (the history's last op) does not hold.
fn judge(
    seed: u64,
    mut history: Vec<Op>,
    faults: BTreeMap<FaultKind, usize>,
    consistent: bool,
    out: Option<&std::path::Path>,
) -> anyhow::Result<Verdict> {
    for (i, op) in history.iter_mut().enumerate() {
        op.id = i;
    }
    if let Some(path) = out {
        let lines: Vec<String> = history.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n")?;
    }
    let report = list_append::check(&history);
    let anomalies: Vec<String> = report.anomalies.iter().map(Anomaly::to_string).collect();
    let final_lists: BTreeMap<u64, Vec<u64>> = history
        .last()
        .map(|op| op.mops.iter().filter_map(|m| read_list(m).map(|(k, l)| (k, l.to_vec()))).collect())
        .unwrap_or_default();
    let lost = history
        .iter()
        .filter(|op| op.kind == OpKind::Ok)
        .flat_map(|op| op.mops.iter())
        .filter(|m| match m {
            Mop::Append { key, value } => !final_lists.get(key).is_some_and(|l| l.contains(value)),
            Mop::Read { .. } => false,
        })
        .count();
    let count = |k: OpKind| history.iter().filter(|op| op.kind == k).count();
    Ok(Verdict {
        seed,
        ops: history.len(),
        ok: count(OpKind::Ok),
        fail: count(OpKind::Fail),
        info: count(OpKind::Info),
        faults,
        other_ops: 0,
        inconclusive: Vec::new(),
        anomalies,
        lost,
        consistent,
    })
}

fn read_list(m: &Mop) -> Option<(u64, &[u64])> {
    match m {
        Mop::Read { key, value: Some(l) } => Some((*key, l.as_slice())),
        _ => None,
    }
}
