//! `ordo-bench`: benchmarks that print figures (never tests).
//!
//! - `micro`: throughput and latency of single-shard and cross-shard
//!   deterministic transactions at several client counts, with the
//!   cross-shard figures as ratios of the single-shard ones measured in the
//!   same run; reads of rows being written against rows not written; and
//!   UPDATEs by a non-key predicate, reconnoitred against table-locked.
//!   Starts a local 3-node cluster unless `--target` names one.
//!
//! - `prepare`, `run`, `check`, `compare`: the TPC-C harness ([`tpcc`])
//!   against OrdoDB and PostgreSQL; `compare` starts both itself, and
//!   reports each side's CPU per transaction and OrdoDB's stages.
//!
//! - `basics`: point SELECT, INSERT and hot-row increments, OrdoDB and
//!   PostgreSQL side by side.
//!
//! - `idle`: the CPU and memory of an idle 3-node cluster.

mod cli;
mod micro;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::micro::Workload;
use ordo_bench::target::{OrdoHttp, Target};

#[derive(Parser)]
#[command(name = "ordo-bench", about = "OrdoDB benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Single-shard vs cross-shard transfer transactions.
    Micro {
        /// `ordo://host:port,host:port,...` (HTTP addresses); default: start
        /// a local 3-node cluster.
        #[arg(long)]
        target: Option<String>,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Client counts to measure, comma-separated.
        #[arg(long, default_value = "1,16,64", value_delimiter = ',')]
        clients: Vec<usize>,
        /// The `ordo` binary for the local cluster (default: next to this one).
        #[arg(long)]
        ordo_bin: Option<PathBuf>,
    },
    /// TPC-C: create the tables and load W warehouses.
    Prepare(cli::PrepareArgs),
    /// TPC-C: run the standard mix and print tpmC and latencies.
    Run(cli::RunArgs),
    /// TPC-C: check the consistency conditions (exit 1 when one fails).
    Check(cli::CheckArgs),
    /// TPC-C: start a 3-node OrdoDB and a PostgreSQL 15, load, run both in
    /// interleaved rounds, check both, print the side-by-side table.
    Compare(cli::CompareArgs),
    /// What an idle cluster costs: CPU and memory of 3 nodes doing nothing.
    Idle(cli::IdleArgs),
    /// Point SELECT, INSERT and hot-row increments, OrdoDB and PostgreSQL
    /// side by side, with the CPU each spends per operation.
    Basics(cli::BasicsArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let code = rt.block_on(async {
        match cli.command {
            Command::Micro { target, seconds, clients, ordo_bin } => {
                micro_cmd(target, seconds, clients, ordo_bin).await.map(|_| 0)
            }
            Command::Prepare(a) => cli::prepare(a).await.map(|_| 0),
            Command::Run(a) => cli::run(a).await.map(|_| 0),
            Command::Check(a) => cli::check(a).await,
            Command::Compare(a) => cli::compare(a).await,
            Command::Idle(a) => cli::idle(a).await.map(|_| 0),
            Command::Basics(a) => cli::basics(a).await,
        }
    })?;
    std::process::exit(code)
}

async fn micro_cmd(
    target: Option<String>,
    seconds: u64,
    clients: Vec<usize>,
    ordo_bin: Option<PathBuf>,
) -> anyhow::Result<()> {
    anyhow::ensure!(clients.iter().all(|c| (1..=4096).contains(c)), "client counts must be between 1 and 4096");
    let mut _cluster = None;
    let spec = match target {
        Some(t) => t.strip_prefix("ordo://").unwrap_or(&t).to_string(),
        None => {
            let (c, spec) = cli::local_cluster(ordo_bin, &[]).await?;
            _cluster = Some(c);
            spec
        }
    };
    let target: Arc<dyn Target> = Arc::new(OrdoHttp::new(&spec)?);
    eprintln!("loading {} accounts per table", micro::ACCOUNTS);
    micro::prepare(target.as_ref()).await?;
    let run = |w: Workload, n: usize| micro::run(target.clone(), w, n, Duration::from_secs(seconds));

    let mut rows = Vec::new();
    for &n in &clients {
        for w in [Workload::SingleShard, Workload::CrossShard] {
            eprintln!("{} with {n} clients for {seconds} s", w.name());
            rows.push(run(w, n).await);
        }
    }
    let readers = 8;
    let mut reads = Vec::new();
    for w in [Workload::HotRead, Workload::ColdRead, Workload::HotCrossRead, Workload::ColdCrossRead] {
        eprintln!("{} with {readers} readers and {} writers for {seconds} s", w.name(), micro::READ_WRITERS);
        reads.push(run(w, readers).await);
    }
    let updaters = 4;
    let mut predicates = Vec::new();
    for w in [Workload::PredicateRecon, Workload::PredicateLocked] {
        eprintln!("{} with {updaters} clients for {seconds} s", w.name());
        predicates.push(run(w, updaters).await);
    }
    let mut sums = Vec::new();
    for w in [Workload::SumWritten, Workload::SumNotWritten] {
        eprintln!("{} with {updaters} readers and {} writers for {seconds} s", w.name(), micro::READ_WRITERS);
        sums.push(run(w, updaters).await);
    }
    micro::check_totals(target.as_ref()).await?;
    print_transfers(&rows);
    print_reads(&reads);
    print_predicates(&predicates);
    print_sums(&sums);
    println!("\ntotals conserved in both tables: yes");
    Ok(())
}

/// Single- and cross-shard transfers, and their ratios.
fn print_transfers(rows: &[micro::Figures]) {
    println!();
    println!("| workload | clients | txn/s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for f in rows {
        let errors = f.errors_cell();
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} |",
            f.workload.name(),
            f.clients,
            f.tps(),
            f.ms(0.5),
            f.ms(0.99),
            f.latency_us.max() as f64 / 1000.0,
            errors
        );
    }
    println!();
    println!("cross-shard relative to single-shard, same run:");
    println!("| clients | throughput ratio | p50 ratio | p99 ratio |");
    println!("|---:|---:|---:|---:|");
    for pair in rows.chunks(2) {
        if let [s, x] = pair {
            println!(
                "| {} | {:.2} | {:.2} | {:.2} |",
                s.clients,
                x.tps() / s.tps().max(f64::MIN_POSITIVE),
                x.ms(0.5) / s.ms(0.5).max(f64::MIN_POSITIVE),
                x.ms(0.99) / s.ms(0.99).max(f64::MIN_POSITIVE)
            );
        }
    }
}

/// Point reads of rows being written and not written.
fn print_reads(reads: &[micro::Figures]) {
    println!();
    println!(
        "point reads while {} clients keep transferring among 4 accounts (single-shard: of one vShard; cross-shard: of four):",
        micro::READ_WRITERS
    );
    latency_table(["rows read", "readers", "reads/s"], reads);
    for (pair, writers) in reads.chunks(2).zip(["single-shard", "cross-shard"]) {
        if let [hot, cold] = pair {
            println!(
                "{writers} writers: rows being written relative to rows not written: p50 {:.2}, p99 {:.2}",
                hot.ms(0.5) / cold.ms(0.5).max(f64::MIN_POSITIVE),
                hot.ms(0.99) / cold.ms(0.99).max(f64::MIN_POSITIVE)
            );
        }
    }
}

/// Reconnoitred against table-locked predicate updates.
fn print_predicates(predicates: &[micro::Figures]) {
    println!();
    println!(
        "transactions updating the {} rows (over many vShards) matching a non-key predicate in a {}-row table:",
        micro::ACCOUNTS / micro::TAGS,
        micro::ACCOUNTS
    );
    latency_table(["workload", "clients", "txn/s"], predicates);
    if let [recon, locked] = predicates {
        println!(
            "reconnoitred relative to table-locked: throughput {:.2}, p50 {:.2}, p99 {:.2}",
            recon.tps() / locked.tps().max(f64::MIN_POSITIVE),
            recon.ms(0.5) / locked.ms(0.5).max(f64::MIN_POSITIVE),
            recon.ms(0.99) / locked.ms(0.99).max(f64::MIN_POSITIVE)
        );
    }
}

/// Queries over every vShard of tables written and not written.
fn print_sums(sums: &[micro::Figures]) {
    println!();
    println!(
        "queries over all vShards (sum of a {}-row table) while {} clients keep transferring between vShards:",
        micro::ACCOUNTS,
        micro::READ_WRITERS
    );
    latency_table(["query", "readers", "queries/s"], sums);
    for f in sums {
        println!("writers during \"{}\": {:.0} txn/s", f.workload.name(), f.writer_tps());
    }
    if let [written, not_written] = sums {
        println!(
            "table being written relative to table not written: p50 {:.2}, p99 {:.2}",
            written.ms(0.5) / not_written.ms(0.5).max(f64::MIN_POSITIVE),
            written.ms(0.99) / not_written.ms(0.99).max(f64::MIN_POSITIVE)
        );
    }
}

/// A table of `figures` (name, clients, rate, p50, p99, errors) with the
/// first three column headings given.
fn latency_table(headings: [&str; 3], figures: &[micro::Figures]) {
    let [name, clients, rate] = headings;
    println!("| {name} | {clients} | {rate} | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---|");
    for f in figures {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {} |",
            f.workload.name(),
            f.clients,
            f.tps(),
            f.ms(0.5),
            f.ms(0.99),
            f.errors_cell()
        );
    }
}
