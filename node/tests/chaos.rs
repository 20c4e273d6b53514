//! The short chaos run CI makes: three real nodes under kills, pauses and
//! partitions for two minutes, the history checked (see `ordo-chaos`).
//! A long run is `ordo-chaos --duration-s 1800` (docs/RELIABILITY.md).

use ordo_chaos::nemesis::FaultKind;
use ordo_chaos::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_minutes_of_faults_leave_no_anomaly() {
    let seed = std::env::var("ORDO_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(19);
    let cfg = Config {
        ordo_bin: env!("CARGO_BIN_EXE_ordo").into(),
        seed,
        duration_s: 120,
        nodes: 3,
        vshards: 16,
        keys: 20,
        clients: 8,
        nemeses: FaultKind::ALL.to_vec(),
        history_out: None,
    };
    let verdict = ordo_chaos::run(&cfg).await.expect("the run completes");
    eprintln!("{}", serde_json::to_string_pretty(&verdict).unwrap());
    assert!(verdict.ok > 100, "the workload made progress: {verdict:?}");
    assert!(verdict.passed(), "seed {seed}: {verdict:?}");
}
