//! `ordo dev`: a local cluster of child processes with embedded defaults.

use std::process::{Child, Command};

use crate::cli::DevArgs;

pub fn run(args: DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let peers: Vec<String> =
        (1..=args.nodes).map(|n| format!("{n}=127.0.0.1:{}", args.rpc_port as u64 + n - 1)).collect();
    let peers = peers.join(",");
    // One secret for this run's nodes (they store none: a new one each run
    // is as good), from the kernel's random source.
    let secret = new_secret()?;
    let mut children: Vec<Child> = Vec::new();
    for n in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node{n}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(&exe)
            .arg("start")
            .args(["--id", &n.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--rpc", &format!("127.0.0.1:{}", args.rpc_port as u64 + n - 1)])
            .args(["--http", &format!("127.0.0.1:{}", args.http_port as u64 + n - 1)])
            .args(["--peers", &peers])
            .args(["--vshards", &args.vshards.to_string()])
            .env("ORDO_CLUSTER_SECRET", &secret)
            .spawn()?;
        children.push(child);
    }
    println!("OrdoDB dev cluster: {} nodes, {} vShards, data in {}", args.nodes, args.vshards, args.data_dir.display());
    for n in 1..=args.nodes {
        println!("  node {n}: http://127.0.0.1:{}", args.http_port as u64 + n - 1);
    }
    println!(
        "try: curl -s localhost:{}/v1/sql -d '{{\"sql\": \"SELECT 1\"}}'   (Ctrl-C stops the cluster)",
        args.http_port
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    println!("stopping...");
    for c in &children {
        // SIGTERM lets each node close RocksDB cleanly.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    for mut c in children {
        let _ = c.wait();
    }
    println!("stopped");
    Ok(())
}

/// 32 hex digits from /dev/urandom.
fn new_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
