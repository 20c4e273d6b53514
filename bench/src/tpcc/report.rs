//! What a run prints and writes: the per-target summary, the side-by-side
//! table with ratios, a JSON result file and an SVG chart.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use super::random::TxnKind;
use super::run::RunResult;

/// The summary of one target's run, as markdown.
pub fn summary(r: &RunResult) -> String {
    let mut s = format!(
        "### {}: W={} workers={} measured {:.0} s{}\n\ntpmC {:.0}",
        r.target,
        r.config.warehouses,
        r.config.workers,
        r.measured_s,
        if r.config.wait { " (keying and think times on)" } else { ", no waits" },
        r.tpmc()
    );
    if r.config.wait {
        s.push_str(&format!(", efficiency {:.1}%", r.efficiency() * 100.0));
    }
    if let (Some(cpu), Some((server, client))) = (r.cpu, r.core_ms_per_txn()) {
        s.push_str(&format!(
            "\nCPU in the measured window: the server {:.1} core-s ({:.2} cores busy), {server:.2} core-ms per \
             transaction; the clients (this process) {:.1} core-s, {client:.2} core-ms per transaction",
            cpu.server_s,
            cpu.server_s / r.measured_s.max(f64::MIN_POSITIVE),
            cpu.client_s,
        ));
    }
    s.push_str(
        "\n\n| transaction | finished | per s | p50 ms | p90 ms | p99 ms | max ms | rolled back | retries | errors |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (k, st) in &r.kinds {
        let n = st.committed + st.rolled_back;
        let errors = if st.errors.is_empty() {
            "0".to_string()
        } else {
            st.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect::<Vec<_>>().join(", ")
        };
        s.push_str(&format!(
            "| {} | {n} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {errors} |\n",
            k.name(),
            n as f64 / r.measured_s.max(f64::MIN_POSITIVE),
            st.ms(0.5),
            st.ms(0.9),
            st.ms(0.99),
            st.latency_us.max() as f64 / 1000.0,
            st.rolled_back,
            st.retries,
        ));
    }
    s
}

/// OrdoDB against the faster PostgreSQL form, side by side.
pub fn side_by_side(results: &[RunResult]) -> String {
    let baseline = results.iter().filter(|r| r.target.starts_with("pg")).max_by(|a, b| a.tpmc().total_cmp(&b.tpmc()));
    let mut s = String::from(
        "| target | tpmC | ratio to best PostgreSQL | New-Order p50 ms | p99 ms | Payment p50 ms | p99 ms | errors \
         | server core-ms per txn | cores busy |\n",
    );
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in results {
        let ratio = baseline
            .map(|b| format!("{:.2}", r.tpmc() / b.tpmc().max(f64::MIN_POSITIVE)))
            .unwrap_or_else(|| "-".into());
        let no = &r.kinds[&TxnKind::NewOrder];
        let pay = &r.kinds[&TxnKind::Payment];
        let (core_ms, busy) = match (r.cpu, r.core_ms_per_txn()) {
            (Some(cpu), Some((server, _))) => {
                (format!("{server:.2}"), format!("{:.2}", cpu.server_s / r.measured_s.max(f64::MIN_POSITIVE)))
            }
            _ => ("-".into(), "-".into()),
        };
        s.push_str(&format!(
            "| {} | {:.0} | {ratio} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {core_ms} | {busy} |\n",
            r.target,
            r.tpmc(),
            no.ms(0.5),
            no.ms(0.99),
            pay.ms(0.5),
            pay.ms(0.99),
            r.errors()
        ));
    }
    if let Some(b) = baseline {
        s.push_str(&format!("\nratios against {} (the faster PostgreSQL form in this run)\n", b.target));
    }
    s
}

pub fn json(results: &[RunResult]) -> Value {
    let runs: Vec<Value> = results
        .iter()
        .map(|r| {
            let kinds: serde_json::Map<String, Value> = r
                .kinds
                .iter()
                .map(|(k, st)| {
                    (
                        k.name().to_string(),
                        json!({
                            "committed": st.committed,
                            "rolled_back": st.rolled_back,
                            "retries": st.retries,
                            "errors": st.errors,
                            "latency_ms": {"p50": st.ms(0.5), "p90": st.ms(0.9), "p99": st.ms(0.99), "max": st.latency_us.max() as f64 / 1000.0},
                        }),
                    )
                })
                .collect();
            json!({
                "target": r.target,
                "warehouses": r.config.warehouses,
                "workers": r.config.workers,
                "wait": r.config.wait,
                "measured_s": r.measured_s,
                "tpmc": r.tpmc(),
                "efficiency": if r.config.wait { Some(r.efficiency()) } else { None },
                "transactions": kinds,
                "cpu": r.cpu.map(|c| json!({"server_core_s": c.server_s, "client_core_s": c.client_s})),
                "server_core_ms_per_txn": r.core_ms_per_txn().map(|c| c.0),
                "timeline_per_s": r.timeline,
            })
        })
        .collect();
    json!({ "runs": runs })
}

/// Throughput over time (New-Orders per second, every target) above
/// p50/p99 latency per transaction type (every target).
pub fn svg(results: &[RunResult], path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let seconds = results.iter().map(|r| r.timeline.len()).max().unwrap_or(1).max(1);
    let peak = results.iter().flat_map(|r| r.timeline.iter().map(|t| t[0])).max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&top)
        .caption("New-Order transactions per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0usize..seconds, 0u64..peak + peak / 10 + 1)?;
    chart.configure_mesh().x_desc("second of the measured window").draw()?;
    for (i, r) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(r.timeline.iter().enumerate().map(|(s, t)| (s, t[0])), color.stroke_width(2)))?
            .label(r.target.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    let worst = results.iter().flat_map(|r| r.kinds.values().map(|k| k.ms(0.99))).fold(1.0, f64::max);
    let kinds = TxnKind::ALL.len();
    let mut chart = ChartBuilder::on(&bottom)
        .caption("latency per transaction type: p50 (dot) and p99 (bar top), ms", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..kinds as f64, 0f64..worst * 1.1)?;
    // Kind names go above their groups: axis labels are placed by
    // plotters' own spacing, which skipped some of them.
    chart.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
    chart.draw_series(
        TxnKind::ALL
            .iter()
            .enumerate()
            .map(|(ki, k)| Text::new(k.name().to_string(), (ki as f64 + 0.1, worst * 1.07), ("sans-serif", 15))),
    )?;
    let width = 0.8 / results.len().max(1) as f64;
    for (i, r) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for (ki, k) in TxnKind::ALL.iter().enumerate() {
            let st = &r.kinds[k];
            let x0 = ki as f64 + 0.1 + i as f64 * width;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, st.ms(0.99))],
                color.mix(0.5).filled(),
            )))?;
            chart.draw_series(std::iter::once(Circle::new((x0 + width * 0.45, st.ms(0.5)), 3, color.filled())))?;
        }
    }
    root.present()?;
    Ok(())
}
