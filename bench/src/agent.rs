//! The real `tandem-agent` binary, driven as a user drives it: a TOML config,
//! `install-triggers`, `run --once` and `run`, as child processes; and their
//! peak resident memory, read from `/proc/<pid>/status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::db::{Db, Engine};

/// One integration: a config file and its state directory.
pub struct Agent {
    binary: PathBuf,
    dir: PathBuf,
    config: PathBuf,
}

/// How often peak memory is read while a child runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

impl Agent {
    /// Writes `dir/tandem.toml` syncing `tables` (same name on both sides)
    /// between `source` and `target`; MariaDB endpoints are polled every
    /// `poll`.
    pub fn new(
        binary: &Path,
        dir: &Path,
        source: &Db,
        target: &Db,
        tables: &[&str],
        poll: Duration,
    ) -> Result<Agent> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let endpoint = |db: &Db| {
            let mut s = format!("kind = \"{}\"\nurl = \"{}\"\n", db.engine.kind(), db.url);
            if db.engine == Engine::Mysql {
                s.push_str(&format!("poll_interval = \"{}ms\"\n", poll.as_millis()));
            }
            s
        };
        let mut toml = format!(
            "state_dir = \"state\"\n\n[source]\n{}\n[target]\n{}\n",
            endpoint(source),
            endpoint(target)
        );
        for table in tables {
            toml.push_str(&format!(
                "[[tables]]\nsource = \"{table}\"\ntarget = \"{table}\"\n\n"
            ));
        }
        Agent::with_config(binary, dir, &toml)
    }

    /// An agent whose config, `dir/tandem.toml`, is `toml`.
    pub fn with_config(binary: &Path, dir: &Path, toml: &str) -> Result<Agent> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let config = dir.join("tandem.toml");
        std::fs::write(&config, toml).with_context(|| format!("write {}", config.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The agent refuses a world-readable config that could hold a password.
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Agent {
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            config,
        })
    }

    fn command(&self, args: &[&str], log: &str) -> Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(log))?;
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("TANDEM_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok(command)
    }

    fn failed(&self, what: &str, log: &str) -> anyhow::Error {
        let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::anyhow!(
            "tandem-agent {what} failed ({}); last lines of its log:\n{}",
            self.config.display(),
            tail.join("\n")
        )
    }

    /// `install-triggers` on both sides.
    pub async fn install(&self) -> Result<()> {
        let status = self
            .command(&["install-triggers"], "install.log")?
            .status()
            .await?;
        if !status.success() {
            return Err(self.failed("install-triggers", "install.log"));
        }
        Ok(())
    }

    /// `run --once` to the end: how long it took and its peak memory (kB).
    pub async fn once(&self) -> Result<(Duration, u64)> {
        let started = Instant::now();
        let mut child = self.command(&["run", "--once"], "once.log")?.spawn()?;
        let peak = watch_memory(&child);
        let status = child.wait().await?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(self.failed("run --once", "once.log"));
        }
        Ok((elapsed, peak.load(Ordering::Relaxed)))
    }

    /// `run`, continuously, until [`Running::stop`].
    pub fn start(&self) -> Result<Running> {
        let child = self.command(&["run"], "run.log")?.spawn()?;
        let peak = watch_memory(&child);
        Ok(Running { child, peak })
    }
}

/// A `tandem-agent run` child process.
pub struct Running {
    child: Child,
    peak: Arc<AtomicU64>,
}

impl Running {
    /// Peak resident memory so far, kB.
    pub fn peak_kb(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("tandem-agent run exited early ({status}); see its run.log");
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit; returns the peak memory (kB).
    pub async fn stop(mut self) -> Result<u64> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("tandem-agent run did not stop within 60 s of SIGTERM");
            }
        }
        Ok(self.peak.load(Ordering::Relaxed))
    }
}

/// Reads `VmHWM` (the kernel's own high-water mark of resident memory) of
/// `child` until it exits.
fn watch_memory(child: &Child) -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(0));
    if let Some(pid) = child.id() {
        let peak = peak.clone();
        tokio::spawn(async move {
            let path = format!("/proc/{pid}/status");
            while let Ok(status) = tokio::fs::read_to_string(&path).await {
                if let Some(kb) = vm_hwm_kb(&status) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
    }
    peak
}

/// `VmHWM` in kB from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status =
            "Name:\ttandem-agent\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(vm_hwm_kb(status), Some(12345));
        assert_eq!(vm_hwm_kb("Name:\tx\n"), None);
    }

    #[test]
    fn reads_its_own_process() {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        assert!(vm_hwm_kb(&status).is_some_and(|kb| kb > 0));
    }
}
