//! `ordo`: the OrdoDB server binary and CLI — startup of a node's groups
//! (`node`), the gRPC service peers talk to (`grpc`), the HTTP API (`http`,
//! with operators' endpoints and metrics in `admin` and `metrics`) and the
//! server loop that bounds its clients (`listen`; error answers in `reply`),
//! a local dev cluster (`dev`), replica verification (`verify`), and the
//! operator's CLI (`client`: health, status, sql, admin).
//!
//! Dependency rule: the top of the workspace; it wires the crates below
//! together and holds no database logic of its own.

mod admin;
mod cli;
mod client;
mod constants;
mod dev;
mod grpc;
mod http;
mod listen;
mod metrics;
mod node;
mod reply;
mod state;
mod verify;

use clap::Parser;

/// mimalloc instead of glibc's malloc: a TPC-C profile of a node spent
/// about a third of its CPU in glibc malloc/free (row and value
/// allocations of many small transactions on few cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Errors are printed as one line with their causes (`{:#}`), without the
/// backtrace `anyhow` would add when `RUST_BACKTRACE` is set: a refusal to
/// start is a message to an operator, not a crash.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ordo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORDO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs.init(),
        cli::LogFormat::Json => logs.json().init(),
    }
    // Failpoints named in `FAILPOINTS` (none by default), e.g.
    // `FAILPOINTS=forward-reply-lost=10%return` (see `grpc::forward`).
    let _failpoints = fail::FailScenario::setup();
    match cli.command {
        cli::Command::Start(args) => node::run(*args),
        cli::Command::Dev(args) => dev::run(args),
        cli::Command::Verify(args) => verify::run(args),
        cli::Command::Health(args) => client::health(args),
        cli::Command::Status(args) => client::status(args),
        cli::Command::Sql(args) => client::sql(args),
        cli::Command::Admin(args) => client::admin(args.command),
    }
}
