//! The report: every figure next to the limit measured in the same run and
//! the target, as markdown and JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::api::ApiWrites;
use crate::capture::Capture;
use crate::flow::Flow;
use crate::keys::{Keys, KEYS};
use crate::Settings;

/// A target: the figure must be at least or at most `required`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The rule, as the issue states it.
    pub rule: String,
    /// The value the figure is compared with.
    pub required: f64,
    /// figure / required.
    pub ratio: f64,
    /// Whether the target is met.
    pub pass: bool,
}

impl Verdict {
    fn at_least(rule: impl Into<String>, figure: f64, required: f64) -> Verdict {
        let ratio = figure / required;
        Verdict {
            rule: rule.into(),
            required,
            ratio,
            pass: ratio >= 1.0,
        }
    }

    fn at_most(rule: impl Into<String>, figure: f64, required: f64) -> Verdict {
        let ratio = figure / required;
        Verdict {
            rule: rule.into(),
            required,
            ratio,
            pass: ratio <= 1.0,
        }
    }
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// What was measured.
    pub what: String,
    /// The figure.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The limit measured in the same run, when there is one.
    pub limit: Option<Limit>,
    /// The target, when there is one.
    pub target: Option<Verdict>,
}

/// A physical limit measured next to a figure.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    /// What it is.
    pub what: String,
    /// Its value, in the figure's unit.
    pub value: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it ran (UTC).
    pub date: String,
    /// The machine.
    pub machine: Vec<(String, String)>,
    /// The settings of the run.
    pub settings: Settings,
    /// First sync throughput.
    pub first_sync: Vec<Line>,
    /// Sustained incremental throughput.
    pub incremental: Vec<Line>,
    /// Commit-to-visible latency.
    pub latency: Vec<Line>,
    /// Write cost of capture.
    pub capture_cost: Vec<Line>,
    /// Peak resident memory of the agent.
    pub memory: Vec<Line>,
    /// Records found by a composite key (MariaDB).
    pub composite_keys: Vec<Line>,
    /// Writes to a cloud API (PocketBase), when measured.
    pub api_writes: Vec<Line>,
    /// Raw measurements.
    pub raw: Raw,
}

/// Everything measured, unrounded.
#[derive(Debug, Clone, Serialize)]
pub struct Raw {
    /// Per direction.
    pub flows: Vec<Flow>,
    /// Per engine.
    pub capture: Vec<Capture>,
    /// The composite-key lookups, when measured.
    pub keys: Option<Keys>,
    /// The writes to a cloud API.
    pub api: Option<ApiWrites>,
}

/// The section keys of [`Report`], in order, with their headings.
pub const SECTIONS: [(&str, &str); 7] = [
    ("first_sync", "First sync throughput"),
    ("incremental", "Sustained incremental throughput"),
    ("latency", "Commit-to-visible latency"),
    ("capture_cost", "Write cost of capture"),
    ("memory", "Peak resident memory of the agent"),
    ("composite_keys", "Records found by a composite key"),
    ("api_writes", "Writes to a cloud API"),
];

/// Builds the report from the measurements.
pub fn build(
    settings: Settings,
    machine: Vec<(String, String)>,
    flows: Vec<Flow>,
    capture: Vec<Capture>,
    keys: Option<Keys>,
    api: Option<ApiWrites>,
) -> Report {
    let mut first_sync = Vec::new();
    let mut incremental = Vec::new();
    let mut latency = Vec::new();
    let mut memory = Vec::new();
    for f in &flows {
        let dir = format!("{} -> {}", f.from, f.to);
        let rate = f.rows as f64 / f.first_sync_secs;
        let bulk = f.rows as f64 / f.bulk_load_secs;
        first_sync.push(Line {
            what: format!("{dir}, {} rows", f.rows),
            value: rate,
            unit: "rows/s".into(),
            limit: Some(Limit {
                what: format!("{} bulk load of the same rows", f.to),
                value: bulk,
            }),
            target: Some(Verdict::at_least(
                ">= 50% of the bulk load",
                rate,
                0.5 * bulk,
            )),
        });
        let applied = f.changes as f64 / f.drain_secs;
        incremental.push(Line {
            what: format!("{dir}, backlog of {} changes", f.changes),
            value: applied,
            unit: "changes/s".into(),
            limit: Some(Limit {
                what: format!("the writer's rate of producing them on {}", f.from),
                value: f.changes as f64 / f.write_secs,
            }),
            target: Some(Verdict::at_least(">= 10,000 changes/s", applied, 10_000.0)),
        });
        for l in &f.latency {
            let at = format!(
                "{dir} at {}/s (achieved {:.0}/s, {} of {} seen)",
                l.rate, l.achieved_rate, l.seen, l.written
            );
            let (p50, p99) = if f.poll_ms == 0 {
                (
                    Some(Verdict::at_most(
                        "<= 50 ms (PostgreSQL source)",
                        l.p50_ms,
                        50.0,
                    )),
                    Some(Verdict::at_most(
                        "<= 250 ms (PostgreSQL source)",
                        l.p99_ms,
                        250.0,
                    )),
                )
            } else {
                let limit = f.poll_ms as f64 + 100.0;
                (
                    None,
                    Some(Verdict::at_most(
                        format!("<= poll interval + 100 ms = {limit} ms"),
                        l.p99_ms,
                        limit,
                    )),
                )
            };
            for (name, value, target) in [
                ("p50", l.p50_ms, p50),
                ("p95", l.p95_ms, None),
                ("p99", l.p99_ms, p99),
            ] {
                latency.push(Line {
                    what: format!("{name}, {at}"),
                    value,
                    unit: "ms".into(),
                    limit: None,
                    target,
                });
            }
        }
        for (what, kb) in [
            (
                format!("{dir}, first sync of {} rows", f.rows),
                f.first_sync_peak_kb,
            ),
            (
                format!("{dir}, draining {} changes", f.changes),
                f.drain_peak_kb,
            ),
        ] {
            let mb = kb as f64 / 1024.0;
            memory.push(Line {
                what,
                value: mb,
                unit: "MB".into(),
                limit: None,
                target: Some(Verdict::at_most("<= 200 MB", mb, 200.0)),
            });
        }
    }
    let capture_cost = capture
        .iter()
        .map(|c| Line {
            what: format!("{} with Tandem's triggers; {}", c.engine, c.workload),
            value: c.captured(),
            unit: "TPS".into(),
            limit: Some(Limit {
                what: "the same without triggers".into(),
                value: c.plain(),
            }),
            target: Some(Verdict::at_least(
                ">= 90% of the TPS without triggers",
                c.captured(),
                0.9 * c.plain(),
            )),
        })
        .collect();
    let composite_keys = keys
        .iter()
        .flat_map(|keys| keys.lookups.iter().map(move |l| (keys, l)))
        .map(|(keys, l)| Line {
            what: format!(
                "MariaDB: {} {KEYS} records of a {}-row link table by their (a, b) keys",
                l.operation, keys.rows
            ),
            value: l.composite_ms,
            unit: "ms".into(),
            limit: Some(Limit {
                what: "the same by a single-column key".into(),
                value: l.single_ms,
            }),
            target: Some(Verdict::at_most(
                format!("<= 25 ms per {KEYS} keys"),
                l.composite_ms,
                25.0,
            )),
        })
        .collect();
    // One request a record is the ceiling; an update also reads the
    // record first (the conflict check), so two is its ceiling.
    let api_writes = api
        .iter()
        .flat_map(|a| {
            [
                ("created", a.created_per_second, 1.0),
                ("updated", a.updated_per_second, 0.5),
            ]
            .map(|(what, per_second, ceiling)| Line {
                what: format!(
                    "PocketBase: {} records {what} at {} requests/s allowed",
                    a.records,
                    number(a.budget)
                ),
                value: per_second / a.budget,
                unit: "records per request allowed".into(),
                limit: Some(Limit {
                    what: if ceiling == 1.0 {
                        "one request a record".into()
                    } else {
                        "two requests a record (read, write)".into()
                    },
                    value: ceiling,
                }),
                target: Some(Verdict::at_least(
                    ">= 90% of the ceiling",
                    per_second / a.budget,
                    0.9 * ceiling,
                )),
            })
        })
        .collect();
    Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        machine,
        settings,
        first_sync,
        incremental,
        latency,
        capture_cost,
        memory,
        composite_keys,
        api_writes,
        raw: Raw {
            flows,
            capture,
            keys,
            api,
        },
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    if v >= 100.0 {
        let digits = format!("{:.0}", v);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{v:.1}")
    }
}

impl Report {
    fn section(&self, key: &str) -> &[Line] {
        match key {
            "first_sync" => &self.first_sync,
            "incremental" => &self.incremental,
            "latency" => &self.latency,
            "capture_cost" => &self.capture_cost,
            "memory" => &self.memory,
            "composite_keys" => &self.composite_keys,
            "api_writes" => &self.api_writes,
            _ => &[],
        }
    }

    /// The markdown form.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Tandem benchmark, {}\n", self.date);
        for (k, v) in &self.machine {
            let _ = writeln!(out, "- {k}: {v}");
        }
        let _ = writeln!(out, "- command: `{}`\n", self.settings.command);
        let (mut passed, mut total) = (0, 0);
        for (key, heading) in SECTIONS {
            let _ = writeln!(out, "## {heading}\n");
            let _ = writeln!(
                out,
                "| measured | figure | limit in the same run | target | ratio | verdict |"
            );
            let _ = writeln!(out, "| --- | ---: | --- | --- | ---: | --- |");
            for line in self.section(key) {
                let limit = line.limit.as_ref().map_or("–".to_owned(), |l| {
                    format!(
                        "{} {} ({}); figure = {:.0}% of it",
                        number(l.value),
                        line.unit,
                        l.what,
                        100.0 * line.value / l.value
                    )
                });
                let (rule, ratio, verdict) = match &line.target {
                    Some(t) => {
                        total += 1;
                        if t.pass {
                            passed += 1;
                        }
                        (
                            t.rule.clone(),
                            format!("{:.2}", t.ratio),
                            if t.pass { "pass" } else { "**miss**" },
                        )
                    }
                    None => ("–".into(), "–".into(), "–"),
                };
                let _ = writeln!(
                    out,
                    "| {} | {} {} | {limit} | {rule} | {ratio} | {verdict} |",
                    line.what,
                    number(line.value),
                    line.unit
                );
            }
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{passed} of {total} targets met. Ratio = figure / required value (at least 1 passes an \"at least\" target, at most 1 an \"at most\" one)."
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_compare_in_the_right_direction() {
        assert!(Verdict::at_least("x", 12.0, 10.0).pass);
        assert!(!Verdict::at_least("x", 9.0, 10.0).pass);
        assert!(Verdict::at_most("x", 9.0, 10.0).pass);
        assert!(!Verdict::at_most("x", 12.0, 10.0).pass);
        assert_eq!(Verdict::at_most("x", 5.0, 10.0).ratio, 0.5);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(number(1234567.4), "1,234,567");
        assert_eq!(number(123.0), "123");
        assert_eq!(number(12.34), "12.3");
    }
}
