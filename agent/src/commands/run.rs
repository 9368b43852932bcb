//! `run` and `run --once`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tracing::{error, info};

use super::{load, EXIT_NOT_IN_STEP};
use crate::config::Side;
use crate::observe;
use crate::sync::events::{Backlog, Events};
use crate::sync::{Agent, SyncError};

pub(super) async fn run(path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    // The endpoint is bound before anything else, so that a wrong or busy
    // address fails at once; `--once` is a command, not a service: no
    // endpoint.
    let (stop, stopped) = watch::channel(false);
    let mut endpoint = None;
    if let (Some(listen), false) = (&config.metrics_listen, once) {
        let bound = observe::http::bind(listen).await.with_context(|| {
            format!(
                "{}: [metrics] listen = {listen:?}: cannot listen there",
                config.path.display()
            )
        })?;
        let metrics = observe::metrics::install();
        endpoint = Some(tokio::spawn(bound.serve(
            metrics,
            observe::health(),
            stopped.clone(),
        )));
    }
    let agent = if once {
        Agent::start(config).await?
    } else {
        start_when_reachable(config).await?
    };
    if once {
        let report = agent.run_once().await?;
        let names: Vec<_> = agent
            .integration
            .plan
            .pairs
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    p.table(Side::Source).name.to_string(),
                    p.table(Side::Target).name.to_string(),
                )
            })
            .collect();
        print!("{}", report.tally.render(&names));
        let paused = agent.run_state.paused.lock().expect("pauses lock").clone();
        if !paused.is_empty() {
            for reason in paused.values() {
                eprintln!("error: paused: {reason}");
            }
            return Ok(ExitCode::from(EXIT_NOT_IN_STEP));
        }
        if report.in_step() {
            println!("in step");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: not in step: {} change(s) wait for a referenced record, {} dead letter(s) \
             (see `tandem-agent dead-letters list`)",
            report.waiting, report.dead_letters
        );
        return Ok(ExitCode::from(EXIT_NOT_IN_STEP));
    }
    let signals = listen_for_signals();
    let result = run_until_stopped(path, agent, stop, signals).await;
    if let Some(endpoint) = endpoint {
        if result.is_ok() {
            // Stopped by the signal: the endpoint stops with it.
            let _ = endpoint.await;
        } else {
            endpoint.abort();
        }
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the agent, waiting with backoff while a server cannot be reached:
/// a service started before its databases (a boot, a maintenance window)
/// waits for them instead of failing.
async fn start_when_reachable(config: crate::config::Config) -> anyhow::Result<Agent> {
    use crate::sync::runner::{jittered, MAX_BACKOFF, MIN_BACKOFF};
    let mut backoff = MIN_BACKOFF;
    loop {
        match Agent::start(config.clone()).await {
            Ok(agent) => return Ok(agent),
            // A server down, or a session it closed while the tables were
            // being described: as it would be once running, retried.
            Err(e) if e.is_retryable() => {
                let wait = jittered(backoff);
                tracing::warn!(error = %e, retry_in = ?wait, "cannot start yet; will retry");
                crate::service::waiting(&format!("waiting: {e}"), wait);
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What the operator asked for.
enum Signal {
    /// SIGTERM or SIGINT: finish the pass in flight and exit.
    Stop,
    /// SIGHUP: read the config file again.
    Reload,
}

fn listen_for_signals() -> mpsc::Receiver<Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = mpsc::channel(4);
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = term.recv() => Signal::Stop,
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                _ = hup.recv() => Signal::Reload,
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Runs the agent until SIGTERM/SIGINT. On SIGHUP the config is read again:
/// when it is valid and the agent starts with it, the pass in flight
/// finishes and syncing goes on with the new config; otherwise the error is
/// logged and the old config keeps running.
async fn run_until_stopped(
    path: &Path,
    mut agent: Agent,
    stop: watch::Sender<bool>,
    mut signals: mpsc::Receiver<Signal>,
) -> anyhow::Result<()> {
    loop {
        let (cycle, cycle_stopped) = watch::channel(false);
        let reload = {
            let events = ServiceEvents::new(&agent, cycle_stopped.clone());
            let run = agent.run(cycle_stopped, &events);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    result = &mut run => {
                        result?;
                        return Ok(());
                    }
                    event = signals.recv() => match event {
                        Some(Signal::Stop) | None => {
                            info!("stop requested; finishing the pass in flight");
                            let _ = stop.send(true);
                            let _ = cycle.send(true);
                            (&mut run).await?;
                            return Ok(());
                        }
                        Some(Signal::Reload) => match load(path) {
                            Ok(config) => {
                                info!("reloading the configuration; finishing the pass in flight");
                                let _ = cycle.send(true);
                                (&mut run).await?;
                                break config;
                            }
                            Err(e) => error!(error = %format!("{e:#}"), "configuration not reloaded; the running one stays"),
                        },
                    }
                }
            }
        };
        let previous = agent.integration.config.clone();
        // The state directory is opened by one agent at a time.
        drop(agent);
        agent = match Agent::start(reload).await {
            Ok(agent) => {
                info!("configuration reloaded");
                agent
            }
            Err(e) => {
                error!(error = %e, "the reloaded configuration does not start; going on with the previous one");
                Agent::start(previous).await?
            }
        };
    }
}

/// Where the running service's reports go: systemd (readiness, status
/// line, watchdog), the health endpoints and the metrics.
struct ServiceEvents {
    heartbeat: crate::service::Heartbeat,
    stop: watch::Receiver<bool>,
}

impl ServiceEvents {
    /// For `agent`'s run until `stop` turns true.
    fn new(agent: &Agent, stop: watch::Receiver<bool>) -> ServiceEvents {
        ServiceEvents {
            heartbeat: agent.heartbeat.clone(),
            stop,
        }
    }
}

impl Events for ServiceEvents {
    fn started(&self, first_sync_done: bool) {
        tokio::spawn(crate::service::watchdog(
            self.heartbeat.clone(),
            self.stop.clone(),
        ));
        crate::service::ready(if first_sync_done {
            "syncing"
        } else {
            "first sync"
        });
        observe::health().started(first_sync_done);
    }

    fn pass_succeeded(&self, first_sync_done: bool, recovered: bool) {
        if recovered {
            crate::service::status("syncing");
        }
        observe::health().pass_succeeded(first_sync_done);
    }

    fn pass_failed(&self, error: &SyncError) {
        crate::service::status(&format!("retrying: {error}"));
        observe::metrics::error(error);
        observe::metrics::reconnect();
        observe::health().pass_failed(&error.to_string());
    }

    fn stopped(&self, error: Option<&SyncError>) {
        match error {
            Some(error) => observe::metrics::error(error),
            None => crate::service::stopping(),
        }
        observe::health().stopped();
    }

    fn wants_backlog(&self) -> bool {
        observe::metrics::enabled()
    }

    fn backlog(&self, backlog: &Backlog) {
        observe::metrics::backlog(backlog);
    }
}
