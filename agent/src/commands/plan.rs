//! `plan`: the effective mapping of every pair and direction, as `run`
//! would sync it: each column written and where its value comes from, the
//! key, filters and splits, and the mapping's problems (the ones `check`
//! reports). It reads the catalogs only: it works while the service runs.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value as Json};

use super::load;
use crate::config::Side;
use crate::mapping::plan::{DirectionMap, KeyMode, PairPlan, Plan, PlanProblem, ValueSource};
use crate::sync::Integration;

pub(super) async fn plan(path: &Path, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let integration = Integration::connect(config).await?;
    let problems = integration.mapping_problems();
    let report = describe(&integration, &problems);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if problems.iter().any(|p| p.fatal) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The plan as JSON (the shape `plan --json` prints).
fn describe(integration: &Integration, problems: &[PlanProblem]) -> Json {
    let plan = &integration.plan;
    let pairs: Vec<Json> = plan
        .pairs
        .iter()
        .map(|pair| {
            let directions: Vec<Json> = Side::BOTH
                .iter()
                .map(|origin| direction(plan, pair, *origin, integration))
                .collect();
            let splits: Vec<Json> = pair
                .splits
                .iter()
                .map(|split| {
                    json!({
                        "side": split.side,
                        "table": split.table.name.to_string(),
                        "key": split.key,
                        "reference": split.reference,
                        "columns": split.columns.iter().map(|c| json!({
                            "column": c.to,
                            "from": source(pair, &c.source),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "name": pair.name,
                "source": pair.table(Side::Source).name.to_string(),
                "target": pair.table(Side::Target).name.to_string(),
                "match": { "source": pair.match_on[0], "target": pair.match_on[1] },
                "directions": directions,
                "splits": splits,
            })
        })
        .collect();
    json!({
        "config": integration.config.path.display().to_string(),
        "names": integration.config.names,
        "pairs": pairs,
        "problems": problems.iter().map(|p| json!({
            "severity": if p.fatal { "error" } else { "warning" },
            "message": p.message,
        })).collect::<Vec<_>>(),
    })
}

/// Where a value comes from, as JSON.
fn source(pair: &PairPlan, source: &ValueSource) -> Json {
    match source {
        ValueSource::Column(column) => {
            // A split table's value, joined back ("table.column").
            let joined = pair.splits.iter().find_map(|s| {
                column
                    .strip_prefix(&s.table.name.name)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .map(|c| (s.table.name.to_string(), c))
            });
            match joined {
                Some((table, column)) => {
                    json!({ "kind": "joined", "table": table, "column": column })
                }
                None => json!({ "kind": "column", "column": column }),
            }
        }
        ValueSource::Expression(e) => json!({ "kind": "expression", "expression": e.source() }),
        ValueSource::Constant(value) => json!({ "kind": "constant", "value": value.to_string() }),
        ValueSource::Lookup {
            side,
            table,
            match_column,
            value_column,
            from,
        } => json!({
            "kind": "lookup", "side": side, "table": table,
            "match": match_column, "value": value_column, "column": from,
        }),
    }
}

/// One direction: every column of the side written to, in catalog order,
/// with where its value comes from ("nothing" when it gets none).
fn direction(plan: &Plan, pair: &PairPlan, origin: Side, integration: &Integration) -> Json {
    let dest = origin.other();
    let map: &DirectionMap = &pair.directions[origin.index()];
    let table = pair.table(dest);
    let excluded = &integration
        .config
        .tables
        .iter()
        .find(|c| c.name == pair.name)
        .map(|c| c.directions[origin.index()].exclude.clone())
        .unwrap_or_default();
    let generated_key =
        |c: &str| table.key_is_generated() && table.primary_key.iter().any(|k| k == c);
    let mut columns = Vec::new();
    for column in &table.columns {
        let name = column.name.as_str();
        let from = if let Some(written) = map.columns.iter().find(|c| c.to == name) {
            let mut from = source(pair, &written.source);
            if let Some(pair) = &written.untranslated {
                from["translate"] = json!(false);
                from["references"] = json!(pair);
            }
            from
        } else if let Some(relation) = map
            .relations
            .iter()
            .find(|r| r.to.iter().any(|t| t == name))
        {
            let i = relation.to.iter().position(|t| t == name).expect("found");
            json!({
                "kind": "relation",
                "pair": plan.pairs[relation.pair].name,
                "column": relation.from[i],
                "deferred": relation.deferrable,
            })
        } else if column.always_generated || generated_key(name) {
            json!({ "kind": "generated" })
        } else if pair
            .splits
            .iter()
            .any(|s| s.side == dest && s.reference == name)
        {
            json!({ "kind": "split" })
        } else {
            json!({
                "kind": "nothing",
                "excluded": excluded.iter().any(|e| integration.config.names.same(e, name)),
            })
        };
        columns.push(json!({ "column": name, "type": column.native_type, "from": from }));
    }
    let key = match map.key_mode {
        KeyMode::Generated => "generated",
        KeyMode::References => "references",
        KeyMode::Copied => "copied",
    };
    json!({
        "from": origin,
        "to": dest,
        "key": { "mode": key, "columns": table.primary_key },
        "columns": columns,
        "filter": map.filter.as_ref().map(|f| f.source()),
        "on_filter_exit": format!("{:?}", map.on_filter_exit).to_lowercase(),
        "required": map.required.iter().map(|(c, v)| json!({ "column": c, "value": v.to_string() })).collect::<Vec<_>>(),
    })
}

/// The plan for a terminal: a block per pair, a line per column.
fn render(report: &Json) -> String {
    let mut out = String::new();
    let text = |v: &Json| v.as_str().unwrap_or_default().to_owned();
    for pair in report["pairs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "pair {}: source {} <-> target {}\n",
            text(&pair["name"]),
            text(&pair["source"]),
            text(&pair["target"])
        ));
        let matched = &pair["match"];
        if matched["source"].as_array().is_some_and(|m| !m.is_empty()) {
            out.push_str(&format!(
                "  match: source ({}) = target ({})\n",
                list(&matched["source"]),
                list(&matched["target"])
            ));
        }
        for direction in pair["directions"].as_array().into_iter().flatten() {
            let (from, to) = (text(&direction["from"]), text(&direction["to"]));
            let key = match direction["key"]["mode"].as_str() {
                Some("generated") => format!("generated by the {to}"),
                Some("references") => "the translated references".to_owned(),
                _ => format!("copied from the {from}"),
            };
            out.push_str(&format!(
                "  {from} -> {to} (key {}: {key})\n",
                list(&direction["key"]["columns"])
            ));
            let width = direction["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| text(&c["column"]).chars().count())
                .max()
                .unwrap_or(0);
            for column in direction["columns"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    {:<width$} <- {}\n",
                    text(&column["column"]),
                    shown(&column["from"]),
                ));
            }
            if let Some(filter) = direction["filter"].as_str() {
                out.push_str(&format!(
                    "    only rows where {filter} (a copy whose row stops matching: {})\n",
                    text(&direction["on_filter_exit"])
                ));
            }
            for required in direction["required"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    only rows where {} = {}\n",
                    text(&required["column"]),
                    text(&required["value"])
                ));
            }
        }
        for split in pair["splits"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  split: {} table {} (key {}), referenced by {}\n",
                text(&split["side"]),
                text(&split["table"]),
                list(&split["key"]),
                text(&split["reference"])
            ));
            for column in split["columns"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "    {} <- {}\n",
                    text(&column["column"]),
                    shown(&column["from"])
                ));
            }
        }
    }
    let problems = report["problems"].as_array().cloned().unwrap_or_default();
    if !problems.is_empty() {
        out.push_str("problems:\n");
        for problem in problems {
            out.push_str(&format!(
                "  {}: {}\n",
                text(&problem["severity"]),
                text(&problem["message"])
            ));
        }
    }
    out
}

fn list(values: &Json) -> String {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where a value comes from, in words.
fn shown(from: &Json) -> String {
    let text = |key: &str| from[key].as_str().unwrap_or_default().to_owned();
    match from["kind"].as_str().unwrap_or_default() {
        "column" if from["translate"] == json!(false) => format!(
            "column {} (a reference to pair {}, copied untranslated)",
            text("column"),
            text("references")
        ),
        "column" => format!("column {}", text("column")),
        "joined" => format!(
            "{}.{} (joined back from the split)",
            text("table"),
            text("column")
        ),
        "relation" => format!(
            "{} through pair {}{}",
            text("column"),
            text("pair"),
            if from["deferred"] == json!(true) {
                " (set once the referenced record is linked)"
            } else {
                ""
            }
        ),
        "expression" => format!("expression {}", text("expression")),
        "constant" => format!("constant {}", text("value")),
        "lookup" => format!(
            "lookup in {} table {}: {} where {} = {}",
            text("side"),
            text("table"),
            text("value"),
            text("match"),
            text("column")
        ),
        "generated" => "generated by the database".to_owned(),
        "split" => "the split's record".to_owned(),
        _ if from["excluded"] == json!(true) => "nothing (excluded)".to_owned(),
        _ => "nothing".to_owned(),
    }
}
