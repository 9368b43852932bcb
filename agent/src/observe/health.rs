//! Liveness and readiness, as the run loop last saw them.
//!
//! Live: the process is up and its loop has not stopped. Ready: the last
//! pass reached both sides and the first sync is done.

use std::sync::{Mutex, OnceLock};

/// What the run loop reports about itself.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The loop has started.
    running: bool,
    /// The loop has ended (the agent is stopping).
    stopped: bool,
    /// The first sync has finished for every pair and direction.
    first_sync_done: bool,
    /// How the last pass ended: `None` before the first one; the error,
    /// on one line, when it failed.
    last_pass: Option<Result<(), String>>,
}

/// The process's health, which the run loop updates and `/health` and
/// `/ready` read.
pub fn health() -> &'static Health {
    static HEALTH: OnceLock<Health> = OnceLock::new();
    HEALTH.get_or_init(Health::default)
}

impl Health {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot leave `Inner` inconsistent
        // (every update is one assignment): use it anyway.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut inner)
    }

    /// The run loop starts.
    pub fn started(&self, first_sync_done: bool) {
        self.with(|i| {
            i.running = true;
            i.stopped = false;
            i.first_sync_done = first_sync_done;
        });
    }

    /// A pass ended without error: both sides answered.
    pub fn pass_succeeded(&self, first_sync_done: bool) {
        self.with(|i| {
            i.first_sync_done = first_sync_done;
            i.last_pass = Some(Ok(()));
        });
    }

    /// A pass failed (a side unreachable, typically) and will be retried.
    pub fn pass_failed(&self, error: &str) {
        let line = error.replace(['\r', '\n'], " ");
        self.with(|i| i.last_pass = Some(Err(line)));
    }

    /// The run loop has ended.
    pub fn stopped(&self) {
        self.with(|i| {
            i.running = false;
            i.stopped = true;
        });
    }

    /// `Ok` while the process is up and its loop has not ended; else why.
    pub fn liveness(&self) -> Result<(), String> {
        self.with(|i| {
            if i.stopped {
                Err("stopping".to_owned())
            } else {
                Ok(())
            }
        })
    }

    /// `Ok` when the last pass reached both sides and the first sync is
    /// done; else the reason, on one line.
    pub fn readiness(&self) -> Result<(), String> {
        self.with(|i| {
            if i.stopped {
                return Err("stopping".to_owned());
            }
            if !i.running {
                return Err("starting: connecting and recovering state".to_owned());
            }
            match &i.last_pass {
                Some(Err(e)) => Err(format!("last pass failed, retrying: {e}")),
                _ if !i.first_sync_done => Err("first sync in progress".to_owned()),
                None => Err("no pass finished yet".to_owned()),
                Some(Ok(())) => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_a_good_pass_with_the_first_sync_done() {
        let health = Health::default();
        assert!(health.liveness().is_ok());
        assert_eq!(
            health.readiness(),
            Err("starting: connecting and recovering state".to_owned())
        );
        health.started(false);
        assert_eq!(health.readiness(), Err("first sync in progress".to_owned()));
        health.pass_succeeded(false);
        assert_eq!(health.readiness(), Err("first sync in progress".to_owned()));
        health.pass_succeeded(true);
        assert_eq!(health.readiness(), Ok(()));
        health.pass_failed("target (mysql): cannot connect\nrefused");
        assert_eq!(
            health.readiness(),
            Err("last pass failed, retrying: target (mysql): cannot connect refused".to_owned())
        );
        health.pass_succeeded(true);
        assert_eq!(health.readiness(), Ok(()));
        health.stopped();
        assert_eq!(health.readiness(), Err("stopping".to_owned()));
        assert_eq!(health.liveness(), Err("stopping".to_owned()));
    }

    #[test]
    fn started_with_the_first_sync_done_waits_for_a_pass() {
        let health = Health::default();
        health.started(true);
        assert_eq!(health.readiness(), Err("no pass finished yet".to_owned()));
    }
}
