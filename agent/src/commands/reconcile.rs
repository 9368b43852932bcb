//! `reconcile [--repair]` and `rebuild-state`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::load;
use crate::config::Config;
use crate::store::StoreError;
use crate::sync::{Agent, SyncError};

/// Exit status of `reconcile` when the sides differ (like `diff`).
const EXIT_DIFFERENT: u8 = 1;
/// Exit status of `reconcile` when it could not compare.
const EXIT_ERROR: u8 = 2;

/// How long a comparison beside a running service waits before it looks
/// again at what differed: the time a change takes to travel, several
/// polls, within bounds.
fn settle_time(config: &Config) -> Duration {
    let poll = config
        .endpoints
        .iter()
        .map(|e| e.poll_interval)
        .max()
        .unwrap_or_default();
    (poll * 4).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

pub(super) async fn reconcile(path: &Path, repair: bool) -> anyhow::Result<ExitCode> {
    let compared = async {
        let config = load(path)?;
        if repair {
            let agent = Agent::start(config).await.map_err(|e| match e {
                SyncError::Store(StoreError::Locked(dir)) => anyhow::anyhow!(
                    "the service runs with state directory {dir}: reconcile --repair writes \
                     through it; stop the service first (reconcile without --repair works \
                     beside it)"
                ),
                e => e.into(),
            })?;
            let findings = agent.reconcile().await?;
            return anyhow::Ok((agent, findings));
        }
        let (agent, observing) = Agent::start_or_observe(config.clone()).await?;
        let mut findings = agent.reconcile().await?;
        if observing && !findings.is_empty() {
            // The service may have been applying some of them: what still
            // differs a little later, seen with the links of then, is.
            let wait = settle_time(&config);
            eprintln!(
                "the service is running: links read from the mapping tables; differences \
                 checked again after {}s",
                wait.as_secs()
            );
            tokio::time::sleep(wait).await;
            let (again, _) = Agent::start_or_observe(config).await?;
            let confirmed = again.reconcile().await?;
            findings.retain(|f| confirmed.contains(f));
        }
        anyhow::Ok((agent, findings))
    }
    .await;
    let (agent, findings) = match compared {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    for finding in &findings {
        println!("{finding}");
    }
    if findings.is_empty() {
        println!("in step");
        return Ok(ExitCode::SUCCESS);
    }
    if !repair {
        return Ok(ExitCode::from(EXIT_DIFFERENT));
    }
    if let Err(e) = agent.repair(&findings).await {
        eprintln!("error: repairing: {e:#}");
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    match agent.reconcile().await {
        Ok(left) if left.is_empty() => {
            println!("repaired {} record(s); in step", findings.len());
            Ok(ExitCode::SUCCESS)
        }
        Ok(left) => {
            for finding in &left {
                println!("still: {finding}");
            }
            Ok(ExitCode::from(EXIT_DIFFERENT))
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

pub(super) async fn rebuild_state(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let store = config.state_dir.join("store");
    // Moved aside under a running service, the store would be split in
    // two: the service goes on writing into the old one.
    if store.exists() {
        if let Err(StoreError::Locked(dir)) = crate::state::State::open(&config.state_dir) {
            anyhow::bail!(
                "the service runs with state directory {dir}: stop it before rebuild-state \
                 (the state is left as it is)"
            );
        }
    }
    let kept = if store.exists() {
        let aside = config.state_dir.join(format!(
            "store.replaced-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        std::fs::rename(&store, &aside)
            .map_err(|e| anyhow::anyhow!("cannot move {} aside: {e}", store.display()))?;
        Some(aside)
    } else {
        None
    };
    let _ = std::fs::remove_file(config.state_dir.join("status.json"));
    let agent = Agent::start(config).await?;
    let mut links = 0;
    for pair in &agent.integration.plan.pairs {
        links += agent.state.links(&pair.name)?.len();
    }
    println!("rebuilt the ID map: {links} link(s) from the mapping tables");
    if let Some(aside) = kept {
        println!("the previous state is kept in {}", aside.display());
    }
    println!("the next run copies what no link covers and syncs the changes captured since");
    Ok(ExitCode::SUCCESS)
}
