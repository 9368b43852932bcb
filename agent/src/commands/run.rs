//! `run` and `run --once`.

use std::path::Path;
use std::process::ExitCode;

use tokio::sync::watch;
use tracing::info;

use super::{load, EXIT_NOT_IN_STEP};
use crate::config::Side;
use crate::sync::Agent;

pub(super) async fn run(path: &Path, once: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    if let Some(listen) = &config.metrics_listen {
        tracing::warn!(%listen, "metrics.listen is accepted but not served by this version");
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
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("stop requested; finishing the pass in flight");
        let _ = stop.send(true);
    });
    agent.run(stopped).await?;
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
