//! The process: CPU time, resident memory, open files and threads, read
//! from `/proc/self` when scraped.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::advance_seconds;

#[derive(Clone, Debug, Default)]
pub struct ProcessMetrics {
    cpu: Counter<f64, AtomicU64>,
    resident: Gauge,
    open_fds: Gauge,
    threads: Gauge,
}

impl ProcessMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("process");
        r.register_with_unit("cpu", "User and system CPU time of the process", Unit::Seconds, self.cpu.clone());
        r.register_with_unit("resident_memory", "Resident memory of the process", Unit::Bytes, self.resident.clone());
        r.register("open_fds", "Open file descriptors", self.open_fds.clone());
        r.register("threads", "Threads of the process", self.threads.clone());
    }

    /// Reads `/proc/self`; on a system without it the values stay as they were.
    pub fn refresh(&self) {
        let Ok(me) = procfs::process::Process::myself() else { return };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second().max(1) as f64;
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            advance_seconds(&self.cpu, cpu);
            let rss = stat.rss.saturating_mul(procfs::page_size());
            self.resident.set(i64::try_from(rss).unwrap_or(i64::MAX));
            self.threads.set(stat.num_threads);
        }
        if let Ok(n) = me.fd_count() {
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
