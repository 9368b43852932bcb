//! Crash points: places where the agent can be made to die on purpose, so
//! that tests can stop it exactly in a window a random kill rarely hits
//! (after a database commit, before the state records it).
//!
//! `TANDEM_CRASH_AT=NAME:N` aborts the process the `N`th time the point
//! `NAME` is reached. Aborting runs no destructor and flushes nothing, as
//! SIGKILL or a power cut would. Unset (always, in production), a point
//! costs one read of a value computed once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a crash point.
pub const CRASH_AT: &str = "TANDEM_CRASH_AT";

struct Armed {
    name: String,
    at: u64,
    reached: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(CRASH_AT).ok()?;
            let (name, at) = spec.rsplit_once(':').unwrap_or((spec.as_str(), "1"));
            Some(Armed {
                name: name.to_owned(),
                at: at.parse().ok()?,
                reached: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Aborts the process here if `TANDEM_CRASH_AT` names this point and this
/// is the armed visit.
pub fn point(name: &str) {
    if let Some(armed) = armed() {
        if armed.name == name && armed.reached.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
            eprintln!("crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}
