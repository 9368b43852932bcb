//! When to sync: start-up checks, passes, the continuous loop and `--once`.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::Events;
use super::report::{LetterList, ListedLetter, PairStatus, Snapshot, Tally, LISTED_LETTERS};
use super::{Agent, Integration, SyncError, SyncResult};
use crate::config::{Config, Side};
use crate::state::State;
use crate::store::StoreError;

/// Shortest wait after a failed pass.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait after repeated failures: short enough that syncing
/// resumes soon after a restarted server is back.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// The shortest time between two comparisons of the tables with the plan.
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for changes between passes when nothing wakes the agent.
pub const IDLE_WAIT: Duration = Duration::from_secs(5);
/// Passes `--once` makes at most before it gives up on converging.
pub const ONCE_MAX_PASSES: usize = 50;

/// What the runner keeps between passes.
#[derive(Default)]
pub struct RunState {
    /// Table pairs stopped by the last pass, by pair index, with why and
    /// the fix; the other pairs go on.
    pub paused: std::sync::Mutex<super::drift::Pauses>,
    /// The error the agent is retrying after, while it is.
    pub retrying: std::sync::Mutex<Option<String>>,
    /// When the tables were last compared with the plan.
    pub drift_checked: std::sync::Mutex<Option<Instant>>,
}

/// How `run --once` ended.
#[derive(Debug, Clone)]
pub struct OnceReport {
    /// What was applied.
    pub tally: Tally,
    /// Change-log entries left (records waiting for a referenced record).
    pub waiting: usize,
    /// Dead letters.
    pub dead_letters: usize,
}

impl OnceReport {
    /// Whether both sides are in step.
    pub fn in_step(&self) -> bool {
        self.waiting == 0 && self.dead_letters == 0
    }
}

impl Agent {
    /// Connects, checks what `check` checks (the mapping, the installed
    /// capture objects, privileges, keys) and refuses to start on any
    /// problem it finds, every one named; then opens the state and
    /// recovers links from the mapping tables.
    pub async fn start(config: Config) -> SyncResult<Agent> {
        let integration = Agent::validated(config).await?;
        let state = State::open(&integration.config.state_dir)?;
        let agent = Agent::new(integration, state);
        agent.resolve_in_flight().await?;
        agent.adopt_mapping_tables().await?;
        Ok(agent)
    }

    /// Like [`Agent::start`], but beside a running service (whose state
    /// directory is in use) an agent that only looks: its links are read
    /// from the mapping tables into memory, and it never opens the state
    /// directory. Returns whether it only looks.
    pub async fn start_or_observe(config: Config) -> SyncResult<(Agent, bool)> {
        let integration = Agent::validated(config).await?;
        match State::open(&integration.config.state_dir) {
            Ok(state) => {
                let agent = Agent::new(integration, state);
                agent.resolve_in_flight().await?;
                agent.adopt_mapping_tables().await?;
                Ok((agent, false))
            }
            Err(StoreError::Locked(_)) => {
                let agent = Agent::new(integration, State::in_memory());
                agent.adopt_mapping_tables().await?;
                Ok((agent, true))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The integration, connected, when nothing `check` checks stops it:
    /// otherwise every problem, in the order `check` shows them.
    async fn validated(config: Config) -> SyncResult<Integration> {
        let integration = Integration::connect(config).await?;
        let problems = integration.validate().await?;
        super::refuse(&integration.config, &problems)?;
        Ok(integration)
    }

    /// One pass: tail both sides, then apply everything that can be.
    /// Returns the number of change rows captured.
    /// A pair whose tables changed under the agent, or was truncated, is
    /// paused for the pass (see [`super::drift`]).
    pub async fn pass(&self, tally: &mut Tally) -> SyncResult<usize> {
        Ok(self.pass_on(tally, [true, true]).await?.iter().sum())
    }

    /// One pass that tails the sides `tail` names (source, target) and
    /// applies everything that can be; returns the change rows captured on
    /// each side.
    pub async fn pass_on(&self, tally: &mut Tally, tail: [bool; 2]) -> SyncResult<[usize; 2]> {
        // Under load passes follow each other at once; the tables are
        // described at most once a DRIFT_CHECK_INTERVAL (an error reading
        // rows in between has the tables compared at once, see `run`).
        let due = self
            .run_state
            .drift_checked
            .lock()
            .expect("drift check lock")
            .is_none_or(|at| at.elapsed() >= DRIFT_CHECK_INTERVAL);
        let mut paused = if due {
            let found = self.check_drift().await?;
            *self
                .run_state
                .drift_checked
                .lock()
                .expect("drift check lock") = Some(Instant::now());
            found
        } else {
            self.run_state.paused.lock().expect("pauses lock").clone()
        };
        let mut captured = [0; 2];
        for side in Side::BOTH {
            if tail[side.index()] {
                // Links the endpoint found by itself come first: a change of
                // such a copy is then an update of it, not a new record.
                self.adopt_found_links(side).await?;
                captured[side.index()] = self.tailer().tail(side, &mut paused).await?;
            }
        }
        crate::crash::point("tailed");
        self.report_pauses(paused);
        self.applier().drain(tally).await?;
        Ok(captured)
    }

    /// The first sync if it is not done, then passes until one finds
    /// nothing captured.
    pub async fn run_once(&self) -> SyncResult<OnceReport> {
        let mut tally = Tally::default();
        self.first_sync(&mut tally, &|| false).await?;
        for _ in 0..ONCE_MAX_PASSES {
            if self.pass(&mut tally).await? == 0 {
                break;
            }
        }
        self.write_snapshot(true);
        Ok(OnceReport {
            tally,
            waiting: self.state.log_len()?,
            dead_letters: self.state.dead_letters()?.len(),
        })
    }

    /// Syncs until `shutdown` turns true. A pass in flight finishes first.
    /// Failures worth a retry are retried with backoff; others end the run.
    /// What happens is reported to `events`.
    pub async fn run(
        &self,
        mut shutdown: watch::Receiver<bool>,
        events: &dyn Events,
    ) -> SyncResult<()> {
        let mut backoff = MIN_BACKOFF;
        let mut first_sync_done = self.first_sync_done()?;
        let mut tally = Tally::default();
        // After a failure the last commit may or may not have happened:
        // links of copies it created are re-read from the mapping tables
        // before anything is applied again.
        let mut recover = false;
        self.write_snapshot(first_sync_done);
        events.started(first_sync_done);
        info!("running");
        // Each side is tailed at its own pace: when it woke the agent
        // (NOTIFY, or its poll interval passed), or when its last tail
        // found changes; an API is not polled at a database's interval.
        let poll = Side::BOTH.map(|side| self.integration.config.endpoint(side).poll_interval);
        let mut tailed_at: [Option<Instant>; 2] = [None, None];
        let mut woken = [true; 2];
        while !*shutdown.borrow() {
            let due = Side::BOTH.map(|side| {
                let i = side.index();
                woken[i] || tailed_at[i].is_none_or(|at| at.elapsed() >= poll[i])
            });
            let result = async {
                if recover {
                    self.resolve_in_flight().await?;
                    self.adopt_mapping_tables().await?;
                }
                if !first_sync_done {
                    let stopping = shutdown.clone();
                    if !self
                        .first_sync(&mut tally, &move || *stopping.borrow())
                        .await?
                    {
                        return Ok([0; 2]);
                    }
                    first_sync_done = true;
                    self.write_snapshot(true);
                    info!("first sync complete");
                }
                self.pass_on(&mut tally, due).await
            }
            .await;
            // A pass that found changes is followed by another at once:
            // under load, a change waits for the pass in flight, not for a
            // poll interval on top of it.
            let captured = match &result {
                Ok(captured) => *captured,
                Err(_) => [0; 2],
            };
            for side in Side::BOTH {
                let i = side.index();
                if due[i] && result.is_ok() {
                    tailed_at[i] = Some(Instant::now());
                }
                woken[i] = captured[i] > 0;
            }
            let busy = captured.iter().any(|c| *c > 0);
            let result = result.map(|captured| captured.iter().sum::<usize>());
            match result {
                Ok(_) => {
                    self.heartbeat.beat();
                    if recover {
                        if let Some(outage) = self
                            .run_state
                            .retrying
                            .lock()
                            .expect("retrying lock")
                            .take()
                        {
                            info!(outage = %outage, "recovered; syncing again");
                        }
                    }
                    backoff = MIN_BACKOFF;
                    self.write_snapshot(first_sync_done);
                    events.pass_succeeded(first_sync_done, recover);
                    recover = false;
                    if events.wants_backlog() {
                        events.backlog(&self.backlog().await);
                    }
                }
                Err(e) if e.is_retryable() || self.drift_explains(&e).await => {
                    // Waiting for a server is progress too: the agent is
                    // doing what it should.
                    self.heartbeat.beat();
                    recover = true;
                    events.pass_failed(&e);
                    if let SyncError::Store(_) = e {
                        // What the failed write left in memory is dropped;
                        // its change rows are still in the change tables.
                        if let Err(reopen) = self.state.reopen() {
                            warn!(error = %reopen, "cannot reopen the state store yet");
                        }
                    }
                    let wait = jittered(backoff);
                    warn!(error = %e, retry_in = ?wait, "pass failed; will retry");
                    {
                        // The outage began at the first failure; the latest
                        // error says what it is now.
                        let mut retrying = self.run_state.retrying.lock().expect("retrying lock");
                        let since = retrying
                            .as_ref()
                            .and_then(|r| r.split_once(": ").map(|(s, _)| s.to_owned()))
                            .unwrap_or_else(|| {
                                format!("since {}", Utc::now().format("%Y-%m-%d %H:%M:%S UTC"))
                            });
                        *retrying = Some(format!("{since}: {e}"));
                    }
                    self.write_snapshot(first_sync_done);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => {
                    events.stopped(Some(&e));
                    return Err(e);
                }
            }
            if busy {
                continue;
            }
            let source = self.integration.endpoint(Side::Source).clone();
            let target = self.integration.endpoint(Side::Target).clone();
            // Until each side is due again (or wakes us).
            let until_due = Side::BOTH.map(|side| {
                let i = side.index();
                let waited = tailed_at[i].map_or(poll[i], |at| at.elapsed());
                poll[i].saturating_sub(waited).min(IDLE_WAIT)
            });
            tokio::select! {
                _ = source.wait_for_changes(until_due[0]) => woken[0] = true,
                _ = target.wait_for_changes(until_due[1]) => woken[1] = true,
                _ = shutdown.changed() => {}
            }
        }
        self.write_snapshot(first_sync_done);
        events.stopped(None);
        info!("stopped");
        Ok(())
    }

    /// Leaves the figures for `tandem-agent status`; a failure to write them
    /// is logged, never fatal.
    pub fn write_snapshot(&self, first_sync_done: bool) {
        let build = || -> SyncResult<(Snapshot, LetterList)> {
            let counts = self.state.log_counts()?;
            let letters = self.state.dead_letters()?;
            let mut pairs = Vec::new();
            let paused = self.run_state.paused.lock().expect("pauses lock").clone();
            for (index, pair) in self.integration.plan.enumerate() {
                let mut stats = self.state.stats(&pair.name)?;
                if !counts.contains_key(&pair.name)
                    && first_sync_done
                    && !paused.contains_key(&index)
                {
                    stats.last_sync = Some(Utc::now());
                    let mut batch = crate::state::StateBatch::default();
                    batch.put_stats(&pair.name, &stats);
                    self.state.commit(batch, false)?;
                }
                pairs.push(PairStatus {
                    name: pair.name.clone(),
                    source: pair.table(Side::Source).name.to_string(),
                    target: pair.table(Side::Target).name.to_string(),
                    logged_not_applied: counts.get(&pair.name).copied().unwrap_or(0),
                    applied: stats.applied,
                    conflicts: stats.conflicts,
                    dead_letters: letters.iter().filter(|l| l.pair == pair.name).count() as u64,
                    last_sync: stats.last_sync,
                    lag_ms: stats.last_lag_ms,
                    paused: paused.get(&index).cloned(),
                });
            }
            let listed = LetterList {
                written_at: Utc::now(),
                total: letters.len(),
                letters: letters
                    .iter()
                    .take(LISTED_LETTERS)
                    .map(ListedLetter::from)
                    .collect(),
            };
            Ok((
                Snapshot {
                    written_at: Utc::now(),
                    first_sync_done,
                    pairs,
                    retrying: self
                        .run_state
                        .retrying
                        .lock()
                        .expect("retrying lock")
                        .clone(),
                },
                listed,
            ))
        };
        match build() {
            Ok((snapshot, letters)) => {
                let dir = &self.integration.config.state_dir;
                if let Err(e) = snapshot.write(dir) {
                    warn!(error = %e, "could not write status.json");
                }
                if let Err(e) = letters.write(dir) {
                    warn!(error = %e, "could not write dead-letters.json");
                }
            }
            Err(e) => warn!(error = %e, "could not build the status snapshot"),
        }
    }

    /// Whether a failed pass is explained by a table that changed under the
    /// agent: the affected pairs are paused (and reported) and the others
    /// go on at the next pass, instead of the agent stopping.
    async fn drift_explains(&self, error: &SyncError) -> bool {
        if !matches!(error, SyncError::Endpoint { .. }) {
            return false;
        }
        match self.check_drift().await {
            Ok(found) if !found.is_empty() => {
                self.report_pauses(found);
                true
            }
            _ => false,
        }
    }
}

/// `wait` shortened by up to a half at random, so that agents restarted
/// together do not all reconnect at the same moment.
pub fn jittered(wait: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A randomly keyed hasher is random enough here, without a crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(wait.as_nanos() as u64);
    let fraction = (hasher.finish() % 1000) as f64 / 2000.0;
    wait.mul_f64(1.0 - fraction)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tandem_connectors::faults::{Call, Fault};
    use tokio::sync::watch;

    use crate::config::Side;
    use crate::sync::events::Events;
    use crate::sync::rig::Rig;
    use crate::sync::SyncError;

    /// Every report, as a line.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn said(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }
        fn lines(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Events for Recorder {
        fn started(&self, first_sync_done: bool) {
            self.said(format!("started first_sync_done={first_sync_done}"));
        }
        fn pass_succeeded(&self, first_sync_done: bool, recovered: bool) {
            self.said(format!(
                "pass first_sync_done={first_sync_done} recovered={recovered}"
            ));
        }
        fn pass_failed(&self, error: &SyncError) {
            self.said(format!("failed retryable={}", error.is_retryable()));
        }
        fn stopped(&self, error: Option<&SyncError>) {
            self.said(format!("stopped error={}", error.is_some()));
        }
    }

    #[tokio::test]
    async fn the_run_reports_its_start_passes_a_failure_the_recovery_and_its_stop() {
        let rig = Rig::new(&["Ann"], 50).await;
        let source = &rig.faults[Side::Source.index()];
        // The second read of the source's change table loses its
        // connection: one failed pass, then the recovery.
        source.fail_nth(Call::ReadChanges, 2, Fault::Connection);
        let recorder = Recorder::default();
        let (stop, stopped) = watch::channel(false);
        let run = rig.agent.run(stopped, &recorder);
        let stopper = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !recorder
                .lines()
                .iter()
                .any(|l| l.contains("recovered=true"))
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{:?}",
                    recorder.lines()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.send(true).unwrap();
        };
        let (result, ()) = tokio::join!(run, stopper);
        result.expect("stopped on request");

        let lines = recorder.lines();
        assert_eq!(lines[0], "started first_sync_done=false");
        let failed = lines
            .iter()
            .position(|l| l == "failed retryable=true")
            .expect("the failed pass is reported");
        assert_eq!(
            lines[failed + 1],
            "pass first_sync_done=true recovered=true",
            "the pass after it says it recovered: {lines:?}"
        );
        assert_eq!(lines.last().unwrap(), "stopped error=false");
        assert_eq!(rig.customers(Side::Target), rig.customers(Side::Source));
    }
}
