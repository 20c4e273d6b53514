//! The TPC-C subcommands: argument parsing, targets, and the `compare`
//! orchestration (a local OrdoDB cluster and PostgreSQL, interleaved rounds).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use ordo_bench::cpu::CpuMeter;
use ordo_bench::stages::Stages;
use ordo_bench::target::{OrdoHttp, PgSimple};
use ordo_bench::tpcc::db::TpccDb;
use ordo_bench::tpcc::ordo::OrdoDb;
use ordo_bench::tpcc::pg::{PgDb, PgMode};
use ordo_bench::tpcc::pg_server::LocalPostgres;
use ordo_bench::tpcc::run::{RunConfig, RunResult};
use ordo_bench::tpcc::{check as checks, prepare as load, report};

/// Where the dev cluster (`scripts/dev.sh`) listens.
const DEV_CLUSTER: &str = "ordo://127.0.0.1:8080,127.0.0.1:8081,127.0.0.1:8082";

#[derive(Args, Clone)]
pub struct TargetArgs {
    /// `ordo://host:port,host:port,...` (HTTP addresses of the nodes) or
    /// `postgres://user@host:port/db`; repeat for several.
    #[arg(long, default_value = DEV_CLUSTER)]
    target: Vec<String>,
    /// PostgreSQL forms to drive: `interactive`, `function` or both.
    #[arg(long, default_value = "interactive,function", value_delimiter = ',')]
    pg_forms: Vec<String>,
    /// Run PostgreSQL's interactive form at SERIALIZABLE (retries counted).
    #[arg(long)]
    serializable: bool,
}

#[derive(Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    targets: TargetArgs,
    #[arg(long, default_value_t = 1)]
    warehouses: i64,
    /// Load jobs in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

#[derive(Args, Clone)]
pub struct RunOpts {
    #[arg(long, default_value_t = 1)]
    warehouses: i64,
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seconds to run (ramp included).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Seconds at the start whose results are not counted.
    #[arg(long, default_value_t = 0)]
    ramp: u64,
    /// Keying and think times of the specification (off: back to back).
    #[arg(long)]
    wait: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a chart (throughput over time, latency per type) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    targets: TargetArgs,
    #[command(flatten)]
    opts: RunOpts,
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    targets: TargetArgs,
    #[arg(long, default_value_t = 1)]
    warehouses: i64,
}

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    opts: RunOpts,
    /// Rounds: every target runs duration / rounds seconds per round, in
    /// turn, so drift of the machine hits all alike.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Run PostgreSQL's interactive form at SERIALIZABLE.
    #[arg(long)]
    serializable: bool,
    /// The `ordo` binary (default: next to this one).
    #[arg(long)]
    ordo_bin: Option<PathBuf>,
    /// Port of the PostgreSQL started for the comparison.
    #[arg(long, default_value_t = 55432)]
    pg_port: u16,
    /// Where to keep the databases (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The databases a target list names (a PostgreSQL URL gives one per form).
fn databases(t: &TargetArgs) -> anyhow::Result<Vec<Arc<dyn TpccDb>>> {
    let mut out: Vec<Arc<dyn TpccDb>> = Vec::new();
    for spec in &t.target {
        if let Some(nodes) = spec.strip_prefix("ordo://") {
            out.push(Arc::new(OrdoDb::new(nodes)?));
        } else if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            for form in &t.pg_forms {
                let mode = match form.as_str() {
                    "interactive" => PgMode::Interactive { serializable: t.serializable },
                    "function" => PgMode::Function,
                    other => anyhow::bail!("unknown PostgreSQL form {other:?} (interactive, function)"),
                };
                out.push(Arc::new(PgDb::new(spec, mode)));
            }
        } else {
            anyhow::bail!("unknown target {spec:?}: use ordo://host:port,... or postgres://...");
        }
    }
    Ok(out)
}

/// One database per distinct store (PostgreSQL's forms share tables).
fn distinct_stores(dbs: &[Arc<dyn TpccDb>]) -> Vec<Arc<dyn TpccDb>> {
    let mut seen = Vec::new();
    dbs.iter()
        .filter(|d| {
            let fresh = !seen.contains(&d.dialect());
            seen.push(d.dialect());
            fresh
        })
        .cloned()
        .collect()
}

pub async fn prepare(a: PrepareArgs) -> anyhow::Result<()> {
    for db in distinct_stores(&databases(&a.targets)?) {
        load(db, a.warehouses, a.parallel).await?;
    }
    Ok(())
}

fn config(o: &RunOpts, seed: u64, duration: Duration) -> anyhow::Result<RunConfig> {
    anyhow::ensure!((1..=4096).contains(&o.workers), "workers must be 1..=4096");
    anyhow::ensure!(o.ramp < o.duration, "the ramp must be shorter than the duration");
    Ok(RunConfig {
        warehouses: o.warehouses,
        workers: o.workers,
        duration,
        ramp: Duration::from_secs(o.ramp),
        wait: o.wait,
        seed,
        cpu: None,
    })
}

/// Runs one target with a live progress line.
async fn run_one(db: Arc<dyn TpccDb>, cfg: RunConfig) -> anyhow::Result<RunResult> {
    let counter = Arc::new(AtomicU64::new(0));
    let bar = ProgressBar::new(cfg.duration.as_secs());
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} s {msg}")?.progress_chars("=> "));
    bar.set_prefix(format!("{} W={} workers={}", db.name(), cfg.warehouses, cfg.workers));
    let ticker = {
        let (bar, counter) = (bar.clone(), counter.clone());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = counter.load(Ordering::Relaxed);
                bar.inc(1);
                bar.set_message(format!("{} New-Orders/s", now - last));
                last = now;
            }
        })
    };
    let r = ordo_bench::tpcc::run::run(db, cfg, counter).await;
    ticker.abort();
    bar.finish_and_clear();
    r
}

fn write_outputs(results: &[RunResult], json: Option<&Path>, svg: Option<&Path>) -> anyhow::Result<()> {
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&report::json(results))?)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = svg {
        report::svg(results, p)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for db in databases(&a.targets)? {
        let r = run_one(db, config(&a.opts, a.opts.seed, Duration::from_secs(a.opts.duration))?).await?;
        println!("{}\n", report::summary(&r));
        results.push(r);
    }
    if results.len() > 1 {
        println!("{}", report::side_by_side(&results));
    }
    write_outputs(&results, a.opts.json.as_deref(), a.opts.svg.as_deref())
}

/// Checks every store; prints violations; the exit code (1 on any).
async fn check_all(dbs: &[Arc<dyn TpccDb>], warehouses: i64) -> anyhow::Result<i32> {
    let mut code = 0;
    for db in distinct_stores(dbs) {
        let mut s = db.session(0).await?;
        let violations = checks::check(s.as_mut(), warehouses).await?;
        if violations.is_empty() {
            println!(
                "{}: consistency conditions 1-4 and the YTD/history sums hold for {warehouses} warehouse(s)",
                db.name()
            );
        } else {
            code = 1;
            for v in &violations {
                println!("{}: VIOLATION {}", db.name(), v.0);
            }
        }
    }
    Ok(code)
}

pub async fn check(a: CheckArgs) -> anyhow::Result<i32> {
    check_all(&databases(&a.targets)?, a.warehouses).await
}

/// Starts a local 3-node OrdoDB cluster; returns it and its node list.
pub async fn local_cluster(
    ordo_bin: Option<PathBuf>,
    extra_args: &[&str],
) -> anyhow::Result<(ordo_tests::Cluster, String)> {
    let bin = match ordo_bin {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("ordo"),
    };
    anyhow::ensure!(bin.exists(), "{} not found: build it (cargo build --bins) or pass --ordo-bin", bin.display());
    let version = std::process::Command::new(&bin).arg("--version").output()?;
    println!("OrdoDB: {} ({})", String::from_utf8_lossy(&version.stdout).trim(), bin.display());
    println!("ordo-bench: {}", if cfg!(debug_assertions) { "dev build" } else { "optimised build" });
    eprintln!("starting a local 3-node OrdoDB cluster ({})", bin.display());
    let c = ordo_tests::Cluster::start(bin.to_str().unwrap_or("ordo"), 3, extra_args);
    c.wait_healthy(Duration::from_secs(120)).await;
    let spec = c.http_addrs();
    Ok((c, spec))
}

#[derive(Args)]
pub struct BasicsArgs {
    /// Closed-loop clients per system.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per operation and system.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The `ordo` binary (default: next to this one).
    #[arg(long)]
    ordo_bin: Option<PathBuf>,
    /// Port of the PostgreSQL started for the comparison.
    #[arg(long, default_value_t = 55433)]
    pg_port: u16,
}

/// `basics`: point SELECT, INSERT and hot-row increments on OrdoDB and on
/// PostgreSQL in one run; exit 1 if a hot row lost or gained increments.
pub async fn basics(a: BasicsArgs) -> anyhow::Result<i32> {
    use ordo_bench::basics::{self, Basic, System};
    anyhow::ensure!((1..=256).contains(&a.clients), "clients must be 1..=256");
    let dir = std::env::temp_dir().join(format!("ordo-basics-{}", std::process::id()));
    let (cluster, nodes) = local_cluster(a.ordo_bin, &[]).await?;
    let pg = LocalPostgres::start(&dir, a.pg_port)?;
    let systems = [
        Arc::new(System {
            name: "ordodb".into(),
            target: Arc::new(OrdoHttp::new(&nodes)?),
            takes_params: true,
            cpu: CpuMeter::new(cluster.pids()),
        }),
        Arc::new(System {
            name: "postgres".into(),
            target: Arc::new(PgSimple::connect(&pg.url(), a.clients).await?),
            takes_params: false,
            cpu: CpuMeter::new([pg.pid()?]),
        }),
    ];
    for s in &systems {
        basics::prepare(s).await?;
    }
    let mut figures = Vec::new();
    for basic in Basic::ALL {
        for s in &systems {
            eprintln!("{} on {} with {} clients for {} s", basic.name(), s.name, a.clients, a.seconds);
            figures.push(basics::run(s.clone(), basic, a.clients, Duration::from_secs(a.seconds)).await?);
        }
    }
    println!("\n{}", basics::table(&figures));
    let mut code = 0;
    for (s, f) in systems.iter().zip(figures.iter().filter(|f| f.basic == Basic::HotIncrement)) {
        let v = basics::hot_value(s).await? as u64;
        let held = f.done <= v && v <= f.done + f.unknown;
        println!(
            "{}: the hot row holds {v} increments; acknowledged {}, unknown {}: {}",
            s.name,
            f.done,
            f.unknown,
            if held { "consistent" } else { "LOST OR EXTRA INCREMENTS" }
        );
        code = code.max(i32::from(!held));
    }
    Ok(code)
}

#[derive(Args)]
pub struct IdleArgs {
    /// vShards of the cluster.
    #[arg(long, default_value_t = 1024)]
    vshards: u32,
    /// Seconds between healthy and the start of the measurement (elections,
    /// leader moves and the first snapshots settle).
    #[arg(long, default_value_t = 20)]
    settle: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// The `ordo` binary (default: next to this one).
    #[arg(long)]
    ordo_bin: Option<PathBuf>,
}

/// `idle`: what an idle 3-node cluster costs: CPU of all its processes
/// over a window, and each node's resident memory at its end.
pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let vshards = a.vshards.to_string();
    let (cluster, _) = local_cluster(a.ordo_bin, &["--vshards", &vshards]).await?;
    eprintln!("healthy; settling for {} s, then measuring for {} s", a.settle, a.seconds);
    tokio::time::sleep(Duration::from_secs(a.settle)).await;
    let meter = CpuMeter::new(cluster.pids());
    let before = meter.server_s()?;
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let used = meter.server_s()? - before;
    let page = procfs::page_size();
    let mut rss = Vec::new();
    for pid in cluster.pids() {
        let stat = procfs::process::Process::new(i32::try_from(pid)?)?.stat()?;
        rss.push(format!("{} MiB", stat.rss.saturating_mul(page) >> 20));
    }
    println!(
        "idle, 3 nodes with {} vShards: {:.1}% of one core in total over {} s; resident memory by node: {}",
        a.vshards,
        used * 100.0 / a.seconds.max(1) as f64,
        a.seconds,
        rss.join(", ")
    );
    Ok(())
}

pub async fn compare(a: CompareArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.rounds >= 1, "at least one round");
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("ordo-tpcc-{}", std::process::id()));
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let (cluster, nodes) = local_cluster(a.ordo_bin.clone(), &[]).await?;
    let pg = LocalPostgres::start(&dir, a.pg_port)?;
    let (ordo_cpu, pg_cpu) = (CpuMeter::new(cluster.pids()), CpuMeter::new([pg.pid()?]));
    println!("PostgreSQL settings:\n{}", pg.settings);
    let targets = TargetArgs {
        target: vec![format!("ordo://{nodes}"), format!("postgres://postgres@127.0.0.1:{}/postgres", a.pg_port)],
        pg_forms: vec!["interactive".into(), "function".into()],
        serializable: a.serializable,
    };
    let dbs = databases(&targets)?;
    for db in distinct_stores(&dbs) {
        load(db, a.opts.warehouses, a.parallel).await?;
    }
    let per_round = Duration::from_secs((a.opts.duration / a.rounds as u64).max(a.opts.ramp + 1));
    let scraper = reqwest::Client::new();
    let node_addrs: Vec<String> = nodes.split(',').map(str::to_string).collect();
    let stages_before = Stages::scrape(&scraper, &node_addrs).await?;
    let mut results: Vec<Option<RunResult>> = vec![None; dbs.len()];
    for round in 0..a.rounds {
        for (i, db) in dbs.iter().enumerate() {
            let mut cfg = config(&a.opts, a.opts.seed + round as u64 * 1000 + i as u64, per_round)?;
            cfg.cpu = Some(if db.name().starts_with("pg") { pg_cpu.clone() } else { ordo_cpu.clone() });
            let r = run_one(db.clone(), cfg).await?;
            eprintln!("round {}: {} tpmC {:.0}", round + 1, r.target, r.tpmc());
            match &mut results[i] {
                Some(total) => total.merge(&r),
                slot => *slot = Some(r),
            }
        }
    }
    let results: Vec<RunResult> = results.into_iter().flatten().collect();
    for r in &results {
        println!("{}\n", report::summary(r));
    }
    println!("{}", report::side_by_side(&results));
    let stages = Stages::scrape(&scraper, &node_addrs).await?.since(&stages_before);
    println!("Where OrdoDB's time went in its rounds (ramps included), from every node's /metrics:\n\n{stages}");
    write_outputs(&results, a.opts.json.as_deref(), a.opts.svg.as_deref())?;
    check_all(&dbs, a.opts.warehouses).await
}
