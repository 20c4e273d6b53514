//! `ordo-chaos`: one fault-injection run; prints the seed, the fault
//! schedule and the verdict (JSON), exits 1 when the run found anomalies,
//! lost writes or diverged replicas.

use std::path::PathBuf;

use clap::Parser;
use ordo_chaos::nemesis::FaultKind;
use ordo_chaos::Config;

#[derive(Parser)]
#[command(about = "Runs a real OrdoDB cluster under a seeded nemesis and checks its history")]
struct Args {
    /// Seed of the fault schedule and the workload (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the workload under faults.
    #[arg(long, default_value_t = 120)]
    duration_s: u64,
    /// Faults to draw from: kill, kill-sequencer, kill-vshard, pause, partition, slow, all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    nemesis: Vec<String>,
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    #[arg(long, default_value_t = 16)]
    vshards: u32,
    /// Lists (rows) the transactions append to and read.
    #[arg(long, default_value_t = 20)]
    keys: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Write the history here (JSON, one op per line).
    #[arg(long)]
    history: Option<PathBuf>,
    /// The `ordo` binary (default: next to this one).
    #[arg(long)]
    ordo_bin: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut nemeses = Vec::new();
    for n in &args.nemesis {
        nemeses.extend(FaultKind::parse(n).map_err(anyhow::Error::msg)?);
    }
    nemeses.sort();
    nemeses.dedup();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let ordo_bin = match args.ordo_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("ordo"),
    };
    let cfg = Config {
        ordo_bin,
        seed,
        duration_s: args.duration_s,
        nodes: args.nodes,
        vshards: args.vshards,
        keys: args.keys,
        clients: args.clients,
        nemeses,
        history_out: args.history,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let verdict = rt.block_on(ordo_chaos::run(&cfg))?;
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    if !verdict.passed() {
        eprintln!(
            "ordo-chaos: FAILED (seed {seed}); replay: ordo-chaos --seed {seed} --duration-s {}",
            args.duration_s
        );
        std::process::exit(1);
    }
    Ok(())
}
