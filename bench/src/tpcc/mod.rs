//! The TPC-C harness: the nine tables, the five transactions in the
//! standard mix, and the specification's consistency checks, driven
//! through one small trait ([`db::TpccDb`]) against OrdoDB (one HTTP
//! request per transaction, [`ordo`]) and PostgreSQL (interactive or
//! PL/pgSQL functions, [`pg`]).
//!
//! - [`random`]: NURand, last names, random strings, the deck;
//! - [`input`]: the transactions' inputs; [`schema`], [`load`]: the
//!   initial database; [`run`]: the measured run; [`check`]: clause 3.3.2;
//! - [`report`]: tables, JSON and the SVG chart.

pub mod check;
pub mod db;
pub mod input;
pub mod load;
pub mod ordo;
pub mod pg;
pub mod pg_server;
pub mod random;
pub mod report;
pub mod run;
pub mod schema;

use std::sync::Arc;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use db::TpccDb;

pub const DISTRICTS_PER_WAREHOUSE: i64 = 10;
pub const CUSTOMERS_PER_DISTRICT: i64 = 3000;
pub const ITEMS: i64 = 100_000;
/// Orders from this id on are undelivered at load (clause 4.3.3.1).
pub const NEW_ORDERS_FROM: i64 = 2101;

/// Drops and creates the tables, then loads `warehouses` warehouses with
/// `parallel` loaders, showing progress.
pub async fn prepare(db: Arc<dyn TpccDb>, warehouses: i64, parallel: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=10_000).contains(&warehouses), "warehouses must be 1..=10000");
    let dialect = db.dialect();
    let mut s = db.session(0).await?;
    for t in schema::TABLES.iter().rev() {
        s.execute(&format!("DROP TABLE IF EXISTS {t}")).await?;
    }
    for sql in schema::create_tables(dialect) {
        s.execute(&sql).await?;
    }
    let jobs = load::jobs(dialect, warehouses);
    let bar = ProgressBar::new(jobs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} jobs, {msg} ({elapsed})")?.progress_chars("=> "),
    );
    bar.set_prefix(format!("loading {}", db.name()));
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut loads = futures::stream::iter(jobs.into_iter().enumerate())
        .map(|(i, job)| {
            let db = db.clone();
            let rows = rows.clone();
            async move {
                let inserts = tokio::task::spawn_blocking(move || load::statements(job)).await?;
                let mut s = db.session(i).await?;
                for ins in inserts {
                    s.execute(&ins.sql).await.map_err(|e| anyhow::anyhow!("loading {}: {e}", ins.table))?;
                    rows.fetch_add(ins.rows, std::sync::atomic::Ordering::Relaxed);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(parallel.max(1));
    while let Some(r) = loads.next().await {
        r?;
        bar.inc(1);
        bar.set_message(format!("{} rows", rows.load(std::sync::atomic::Ordering::Relaxed)));
    }
    bar.finish();
    for sql in schema::create_indexes(dialect) {
        s.execute(&sql).await?;
    }
    db.after_load().await?;
    eprintln!(
        "loaded {} rows into {} in {:.0?}",
        rows.load(std::sync::atomic::Ordering::Relaxed),
        db.name(),
        bar.elapsed()
    );
    Ok(())
}
