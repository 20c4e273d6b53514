//! A throwaway PostgreSQL 15 for comparisons and tests, started by the
//! script the harness ships (`scripts/postgres.sh`, compiled in) and
//! stopped when dropped.

use std::path::{Path, PathBuf};

const POSTGRES_SCRIPT: &str = include_str!("../../../scripts/postgres.sh");

pub struct LocalPostgres {
    script: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// The server's settings as the script printed them.
    pub settings: String,
}

impl LocalPostgres {
    /// Starts (installing the Debian package if missing) with its data in
    /// `dir/pg`, listening on 127.0.0.1:`port`.
    pub fn start(dir: &Path, port: u16) -> anyhow::Result<LocalPostgres> {
        std::fs::create_dir_all(dir)?;
        let script = dir.join("postgres.sh");
        std::fs::write(&script, POSTGRES_SCRIPT)?;
        let data = dir.join("pg");
        let out =
            std::process::Command::new("bash").arg(&script).arg("start").arg(&data).arg(port.to_string()).output()?;
        anyhow::ensure!(out.status.success(), "starting PostgreSQL failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(LocalPostgres { script, data, port, settings: String::from_utf8_lossy(&out.stdout).into_owned() })
    }

    /// The postmaster's process id (every backend descends from it).
    pub fn pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid"))?;
        let first = text.lines().next().unwrap_or_default();
        first.trim().parse().map_err(|e| anyhow::anyhow!("postmaster.pid starts with {first:?}: {e}"))
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg(&self.script).arg("stop").arg(&self.data).status();
    }
}
