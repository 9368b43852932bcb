//! `status`: what the running (or last) agent reports, plus what waits in
//! the change tables right now.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;

use super::load;
use crate::config::Side;
use crate::sync::catalog::resolve;
use crate::sync::report::Snapshot;

/// How long `status` waits for a database before it reports "unknown".
const STATUS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn status(path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let snapshot = Snapshot::read(&config.state_dir)?;
    // Captured but not tailed, per side and table (None: side unreachable).
    let mut captured: [Option<BTreeMap<String, u64>>; 2] = [None, None];
    for side in Side::BOTH {
        let counted = tokio::time::timeout(STATUS_CONNECT_TIMEOUT, async {
            let connector = tandem_connectors::connect(config.endpoint(side)).await?;
            let listed = connector.list_tables().await?;
            let tables: Vec<_> = config
                .tables
                .iter()
                .map(|p| {
                    let wanted = connector.table_name(p.table(side));
                    resolve(&wanted, &listed, config.names).unwrap_or(wanted)
                })
                .collect();
            connector.count_changes(&tables).await
        })
        .await;
        if let Ok(Ok(counts)) = counted {
            captured[side.index()] = Some(counts.into_iter().collect());
        }
    }
    let mut rows = Vec::new();
    for pair in &config.tables {
        let known = snapshot
            .as_ref()
            .and_then(|s| s.pairs.iter().find(|p| p.name == pair.name));
        let waiting = |side: Side| -> Option<u64> {
            let counts = captured[side.index()].as_ref()?;
            let table = known.map(|k| {
                if side == Side::Source {
                    k.source.clone()
                } else {
                    k.target.clone()
                }
            });
            Some(table.and_then(|t| counts.get(&t).copied()).unwrap_or(0))
        };
        rows.push(json!({
            "pair": pair.name,
            // As configured (a target not written: the name looked for).
            "source": pair.table(Side::Source),
            "target": pair.table(Side::Target),
            "captured_not_tailed": { "source": waiting(Side::Source), "target": waiting(Side::Target) },
            "logged_not_applied": known.map(|k| k.logged_not_applied),
            "applied": known.map(|k| json!({
                "source_to_target": k.applied[0],
                "target_to_source": k.applied[1],
            })),
            "conflicts": known.map(|k| k.conflicts),
            "dead_letters": known.map(|k| k.dead_letters),
            "last_sync": known.and_then(|k| k.last_sync),
            "lag_ms": known.and_then(|k| k.lag_ms),
            "paused": known.and_then(|k| k.paused.clone()),
        }));
    }
    let report = json!({
        "config": config.path.display().to_string(),
        "snapshot_written_at": snapshot.as_ref().map(|s| s.written_at),
        "first_sync_done": snapshot.as_ref().map(|s| s.first_sync_done),
        "retrying": snapshot.as_ref().and_then(|s| s.retrying.clone()),
        "pairs": rows,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &snapshot {
        Some(s) => println!(
            "as of {} (first sync {})",
            s.written_at.format("%Y-%m-%d %H:%M:%S UTC"),
            if s.first_sync_done {
                "done"
            } else {
                "not finished"
            }
        ),
        None => println!("the agent has not run yet with this state directory"),
    }
    println!(
        "{:<20} {:>10} {:>10} {:>8} {:>22} {:>22} {:>9} {:>6} {:>8}  last sync",
        "pair",
        "captured:s",
        "captured:t",
        "logged",
        "applied s->t (i/u/d)",
        "applied t->s (i/u/d)",
        "conflicts",
        "dead",
        "lag ms"
    );
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for row in report["pairs"].as_array().expect("array") {
        let applied = |dir: &str| {
            let a = &row["applied"][dir];
            if a.is_null() {
                "-".to_owned()
            } else {
                format!("{}/{}/{}", a["inserted"], a["updated"], a["deleted"])
            }
        };
        println!(
            "{:<20} {:>10} {:>10} {:>8} {:>22} {:>22} {:>9} {:>6} {:>8}  {}",
            show(&row["pair"]),
            show(&row["captured_not_tailed"]["source"]),
            show(&row["captured_not_tailed"]["target"]),
            show(&row["logged_not_applied"]),
            applied("source_to_target"),
            applied("target_to_source"),
            show(&row["conflicts"]),
            show(&row["dead_letters"]),
            show(&row["lag_ms"]),
            show(&row["last_sync"]),
        );
    }
    for row in report["pairs"].as_array().expect("array") {
        if let Some(reason) = row["paused"].as_str() {
            println!("PAUSED {reason}");
        }
    }
    if let Some(retrying) = report["retrying"].as_str() {
        println!("RETRYING {retrying}");
    }
    Ok(ExitCode::SUCCESS)
}
