//! `run` and `run --once`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::watch;
use tracing::info;

use super::{load, EXIT_NOT_IN_STEP};
use crate::config::Side;
use crate::observe;
use crate::sync::Agent;

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
    let agent = Agent::start(config).await?;
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
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("stop requested; finishing the pass in flight");
        let _ = stop.send(true);
    });
    let result = agent.run(stopped).await;
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
