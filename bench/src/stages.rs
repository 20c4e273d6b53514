//! Where OrdoDB's time goes, stage by stage: the `_seconds` histograms of
//! every node's `GET /metrics` (SQL requests, Raft propose/append/commit/
//! apply, lock waits, execution, sequencer seals, WAL fsyncs), scraped
//! before and after a run and summed over the nodes, as a table of counts
//! and mean latencies.

use std::collections::BTreeMap;

/// Every histogram's (sum of seconds, count), summed over the nodes, by
/// name and labels (`ordo_raft_commit_seconds{kind="vshard"}`).
#[derive(Clone, Debug, Default)]
pub struct Stages(BTreeMap<String, (f64, f64)>);

impl Stages {
    /// Scrapes `GET /metrics` of every node (`host:port` HTTP addresses).
    pub async fn scrape(client: &reqwest::Client, nodes: &[String]) -> anyhow::Result<Stages> {
        let mut all = Stages::default();
        for node in nodes {
            let text = client.get(format!("http://{node}/metrics")).send().await?.error_for_status()?.text().await?;
            all.add_text(&text);
        }
        Ok(all)
    }

    fn add_text(&mut self, text: &str) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').map_or((series, ""), |(n, l)| (n, l));
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}") };
            if let Some(base) = name.strip_suffix("_seconds_sum") {
                self.0.entry(format!("{base}{labels}")).or_default().0 += value;
            } else if let Some(base) = name.strip_suffix("_seconds_count") {
                self.0.entry(format!("{base}{labels}")).or_default().1 += value;
            }
        }
    }

    /// The stages that ran between `before` and `self`, busiest first:
    /// count, mean milliseconds and total seconds.
    pub fn since(&self, before: &Stages) -> String {
        let mut rows: Vec<(String, f64, f64)> = self
            .0
            .iter()
            .filter_map(|(k, &(sum, count))| {
                let (sum0, count0) = before.0.get(k).copied().unwrap_or_default();
                let (sum, count) = (sum - sum0, count - count0);
                (count > 0.0).then(|| (k.clone(), sum, count))
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut s = String::from("| stage (every node) | count | mean ms | total s |\n|---|---:|---:|---:|\n");
        for (k, sum, count) in rows {
            s.push_str(&format!("| {k} | {count:.0} | {:.2} | {sum:.1} |\n", sum * 1000.0 / count));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_summed_over_nodes_and_differenced() {
        let node = |sum: f64, count: u32| {
            format!(
                "# TYPE ordo_raft_commit_seconds histogram\n\
                 ordo_raft_commit_seconds_sum{{kind=\"vshard\"}} {sum}\n\
                 ordo_raft_commit_seconds_count{{kind=\"vshard\"}} {count}\n\
                 ordo_raft_commit_seconds_bucket{{le=\"0.001\",kind=\"vshard\"}} 1\n\
                 ordo_sql_requests_total 5\n"
            )
        };
        let mut before = Stages::default();
        before.add_text(&node(1.0, 10));
        let mut after = Stages::default();
        after.add_text(&node(2.0, 20));
        after.add_text(&node(1.5, 20));
        let table = after.since(&before);
        // (2.0 + 1.5 - 1.0) s over (20 + 20 - 10) commits: 83.33 ms each.
        assert!(table.contains("| ordo_raft_commit{kind=\"vshard\"} | 30 | 83.33 | 2.5 |"), "{table}");
        assert!(!table.contains("requests"), "{table}");
    }
}
