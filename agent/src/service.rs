//! Talking to systemd (`Type=notify`): readiness, status, stopping, and the
//! watchdog. Every call is a no-op when the agent does not run under
//! systemd (no `NOTIFY_SOCKET`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::debug;

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        debug!(error = %e, "systemd notification failed");
    }
}

/// Tells systemd the agent is up (connected, capture checked).
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Sets the status line `systemctl status` shows.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Tells systemd the agent is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// When the agent last made progress (a batch applied, a pass finished),
/// in seconds since the epoch.
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    /// Records progress now.
    pub fn beat(&self) {
        self.0
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }

    fn age(&self) -> Duration {
        let last = self.0.load(Ordering::Relaxed);
        Duration::from_secs((chrono::Utc::now().timestamp() - last).max(0) as u64)
    }
}

/// Pings the systemd watchdog every half period for as long as the agent
/// keeps making progress: a pass stuck for longer than the period (a hung
/// connection, a deadlock) stops the pings and systemd restarts the agent.
/// Returns at once when no watchdog is configured.
pub async fn watchdog(heartbeat: Heartbeat, mut stop: watch::Receiver<bool>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    heartbeat.beat();
    let mut tick = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if heartbeat.age() < period {
            notify(&[NotifyState::Watchdog]);
        }
    }
}
