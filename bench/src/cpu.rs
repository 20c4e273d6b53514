//! CPU a system under test uses: the user + system time of some root
//! processes (the `ordo` nodes, PostgreSQL's postmaster) and of all their
//! descendants. Live processes are read from `/proc`; those that exited
//! count through their parent's reaped-children totals (`cutime`,
//! `cstime`), so a PostgreSQL backend that ends mid-window is not lost.
//! Sampled at both ends of a measured window, the difference is the
//! core-seconds the system spent on that window's work.

use std::collections::{BTreeMap, BTreeSet};

/// Measures the CPU of `roots` and their descendants.
#[derive(Clone, Debug)]
pub struct CpuMeter {
    roots: Vec<i32>,
}

/// CPU used during a measured window, in core-seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// The system under test (every process of it).
    pub server_s: f64,
    /// This benchmark process (the clients).
    pub client_s: f64,
}

impl CpuUse {
    pub fn add(&mut self, o: &CpuUse) {
        self.server_s += o.server_s;
        self.client_s += o.client_s;
    }
}

/// One process's own CPU and its reaped children's, in clock ticks.
struct Times {
    ppid: i32,
    own: u64,
    reaped: u64,
}

impl CpuMeter {
    pub fn new(roots: impl IntoIterator<Item = u32>) -> CpuMeter {
        CpuMeter { roots: roots.into_iter().filter_map(|p| i32::try_from(p).ok()).collect() }
    }

    /// Core-seconds the roots and their descendants have used so far.
    pub fn server_s(&self) -> anyhow::Result<f64> {
        let mut all: BTreeMap<i32, Times> = BTreeMap::new();
        for p in procfs::process::all_processes()? {
            // Processes come and go while we read: skip the ones gone.
            let Ok(stat) = p.and_then(|p| p.stat()) else { continue };
            let reaped = u64::try_from(stat.cutime.saturating_add(stat.cstime)).unwrap_or(0);
            all.insert(stat.pid, Times { ppid: stat.ppid, own: stat.utime.saturating_add(stat.stime), reaped });
        }
        let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (&pid, t) in &all {
            children.entry(t.ppid).or_default().push(pid);
        }
        let mut members: BTreeSet<i32> = BTreeSet::new();
        let mut todo: Vec<i32> = self.roots.iter().copied().filter(|p| all.contains_key(p)).collect();
        while let Some(pid) = todo.pop() {
            if members.insert(pid) {
                todo.extend(children.get(&pid).into_iter().flatten());
            }
        }
        let ticks: u64 = members.iter().map(|p| all[p].own.saturating_add(all[p].reaped)).sum();
        Ok(ticks as f64 / procfs::ticks_per_second().max(1) as f64)
    }
}

/// Core-seconds this process (the benchmark's clients) has used so far.
pub fn client_s() -> anyhow::Result<f64> {
    let stat = procfs::process::Process::myself()?.stat()?;
    Ok(stat.utime.saturating_add(stat.stime) as f64 / procfs::ticks_per_second().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A child that burns CPU and exits still counts, through the parent
    /// that reaped it; a meter of processes that are gone reads zero.
    #[test]
    fn descendants_count_after_they_exit() {
        // The subshell burns CPU and exits; the shell reaps it, then
        // becomes `sleep` (exec keeps the pid and the reaped totals).
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "(i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done); exec sleep 60"])
            .spawn()
            .unwrap();
        let comm = format!("/proc/{}/comm", shell.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(&comm).unwrap().trim() != "sleep" {
            assert!(Instant::now() < deadline, "the busy subshell never finished");
            std::thread::sleep(Duration::from_millis(20));
        }
        let used = CpuMeter::new([shell.id()]).server_s().unwrap();
        assert!(used >= 0.05, "only {used} core-seconds seen of a finished busy child");
        shell.kill().unwrap();
        shell.wait().unwrap();
        assert_eq!(CpuMeter::new([shell.id()]).server_s().unwrap(), 0.0);
    }
}
