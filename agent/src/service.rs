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

/// What a start attempt may take on top of the wait before it (connecting
/// to two servers, each with its own timeout).
const START_ATTEMPT: Duration = Duration::from_secs(60);

/// While the agent cannot start yet (a server down at boot): the status
/// line, and more time from systemd before it calls the start failed
/// (`TimeoutStartSec`, 90 s by default) — until the next attempt has had
/// its chance. Without it systemd would kill an agent patiently waiting for
/// its database and start it again.
pub fn waiting(status: &str, next_try: Duration) {
    let usec = u32::try_from((next_try + START_ATTEMPT).as_micros()).unwrap_or(u32::MAX);
    notify(&[
        NotifyState::Status(status),
        NotifyState::ExtendTimeoutUsec(usec),
    ]);
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
