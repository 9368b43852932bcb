//! Comparing both sides record by record: every linked pair, the records
//! whose copy is gone (orphans), and the records no link knows (unlinked).
//! It is the way back from a divergence caused outside the agent.

use std::collections::HashSet;

use chrono::Utc;
use tandem_connectors::{Key, Row, Value};

use super::report::Tally;
use super::{Agent, SyncResult};
use crate::config::Side;
use crate::mapping::plan::Mapped;
use crate::mapping::split;
use crate::state::NewEntry;

/// Records compared per round trip.
const BATCH: usize = 500;

/// One record that is not in step.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Both copies exist but differ in these columns (of the target).
    Differs {
        /// The pair.
        pair: String,
        /// The source key.
        source_key: Key,
        /// The target key.
        target_key: Key,
        /// Columns of the target that differ.
        columns: Vec<String>,
    },
    /// A link whose record is missing on `missing`.
    Orphan {
        /// The pair.
        pair: String,
        /// The side where the record is gone.
        missing: Side,
        /// The key of the record that is still there.
        key: Key,
    },
    /// A record no link knows.
    Unlinked {
        /// The pair.
        pair: String,
        /// Where it is.
        side: Side,
        /// Its key.
        key: Key,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Differs {
                pair,
                source_key,
                target_key,
                columns,
            } => write!(
                f,
                "{pair}: source {source_key} and target {target_key} differ in {}",
                columns.join(", ")
            ),
            Finding::Orphan { pair, missing, key } => {
                write!(
                    f,
                    "{pair}: {} {key} has lost its copy on the {missing}",
                    missing.other()
                )
            }
            Finding::Unlinked { pair, side, key } => write!(
                f,
                "{pair}: {side} {key} has no copy on the {}",
                side.other()
            ),
        }
    }
}

/// Equal as stored: numbers by value (a decimal's scale is the column's),
/// booleans as 0/1 where the engine has no boolean.
fn same(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Decimal(d) => d.parse::<f64>().ok(),
        Value::Float(f) => Some(*f),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    match (a, b) {
        (Value::Decimal(x), Value::Decimal(y)) => {
            let exact = |d: &str| {
                if d.contains('.') {
                    d.trim_end_matches('0').trim_end_matches('.').to_owned()
                } else {
                    d.to_owned()
                }
            };
            exact(x) == exact(y)
        }
        _ if a == b => true,
        _ => matches!((number(a), number(b)), (Some(x), Some(y)) if x == y),
    }
}

impl Agent {
    /// Compares both sides of every pair.
    pub async fn reconcile(&self) -> SyncResult<Vec<Finding>> {
        self.apply_state.refresh_lookups(&self.integration).await?;
        let mut findings = Vec::new();
        for (index, pair) in self.integration.plan.enumerate() {
            let links: Vec<_> = self
                .state
                .links(&pair.name)?
                .into_iter()
                .filter(|l| !l.deleted)
                .collect();
            let mut linked: [HashSet<String>; 2] = Default::default();
            for chunk in links.chunks(BATCH) {
                let mut rows: [std::collections::HashMap<String, Row>; 2] = Default::default();
                for side in Side::BOTH {
                    let table = pair.table(side);
                    let keys: Vec<Key> = chunk.iter().map(|l| l.key(side).clone()).collect();
                    let connector = self.integration.endpoint(side);
                    let mut found = connector
                        .fetch_rows(table, &keys)
                        .await
                        .map_err(self.integration.error(side))?;
                    split::join_rows(pair, side, connector.as_ref(), &mut found)
                        .await
                        .map_err(self.integration.error(side))?;
                    for row in found {
                        if let Some(key) = table.key_of(&row) {
                            rows[side.index()].insert(key.encode(), row);
                        }
                    }
                }
                for link in chunk {
                    let (s, t) = (link.source_key.encode(), link.target_key.encode());
                    linked[0].insert(s.clone());
                    linked[1].insert(t.clone());
                    match (rows[0].get(&s), rows[1].get(&t)) {
                        (Some(source), Some(target)) => {
                            let mapped = {
                                let lookups =
                                    self.apply_state.lookups.read().expect("lookup cache lock");
                                self.integration.plan.map_row(
                                    index,
                                    Side::Source,
                                    source,
                                    &self.state,
                                    &lookups,
                                )
                            };
                            let expected = match mapped {
                                Ok(Mapped::Complete(expected) | Mapped::Partial(expected)) => {
                                    expected
                                }
                                // It refers to a record that has no copy:
                                // whatever the target's reference holds,
                                // it cannot point at that record's copy.
                                Ok(Mapped::Waiting { columns, .. }) => {
                                    findings.push(Finding::Differs {
                                        pair: pair.name.clone(),
                                        source_key: link.source_key.clone(),
                                        target_key: link.target_key.clone(),
                                        columns,
                                    });
                                    continue;
                                }
                                _ => continue,
                            };
                            let columns: Vec<String> = expected
                                .iter()
                                .filter(|(c, v)| target.get(*c).is_some_and(|t| !same(v, t)))
                                .map(|(c, _)| c.clone())
                                .collect();
                            if !columns.is_empty() {
                                findings.push(Finding::Differs {
                                    pair: pair.name.clone(),
                                    source_key: link.source_key.clone(),
                                    target_key: link.target_key.clone(),
                                    columns,
                                });
                            }
                        }
                        (Some(_), None) => findings.push(Finding::Orphan {
                            pair: pair.name.clone(),
                            missing: Side::Target,
                            key: link.source_key.clone(),
                        }),
                        (None, Some(_)) => findings.push(Finding::Orphan {
                            pair: pair.name.clone(),
                            missing: Side::Source,
                            key: link.target_key.clone(),
                        }),
                        (None, None) => {}
                    }
                }
            }
            for side in Side::BOTH {
                let table = pair.table(side);
                let connector = self.integration.endpoint(side);
                let mut after = None;
                loop {
                    let rows = connector
                        .scan(table, after.as_ref(), BATCH)
                        .await
                        .map_err(self.integration.error(side))?;
                    let done = rows.len() < BATCH;
                    for row in rows {
                        let Some(key) = table.key_of(&row) else {
                            continue;
                        };
                        after = Some(key.clone());
                        if !linked[side.index()].contains(&key.encode()) {
                            findings.push(Finding::Unlinked {
                                pair: pair.name.clone(),
                                side,
                                key,
                            });
                        }
                    }
                    if done {
                        break;
                    }
                }
            }
        }
        Ok(findings)
    }

    /// Brings the findings back in step, the source winning: a differing or
    /// orphaned record is sent again from the side that still has it (a
    /// source record's loss deletes its target copy), an unlinked record is
    /// copied. Then one pass applies it all.
    pub async fn repair(&self, findings: &[Finding]) -> SyncResult<Tally> {
        let mut entries = Vec::new();
        for finding in findings {
            let (pair, side, key) = match finding {
                Finding::Differs {
                    pair, source_key, ..
                } => (pair, Side::Source, source_key.clone()),
                Finding::Orphan {
                    pair,
                    missing: Side::Target,
                    key,
                } => (pair, Side::Source, key.clone()),
                // The source lost the record: its deletion travels.
                Finding::Orphan {
                    pair,
                    missing: Side::Source,
                    key,
                } => {
                    let link = self.state.link(pair, Side::Target, key)?;
                    if let Some(link) = link {
                        entries.push(NewEntry {
                            side: Side::Source,
                            pair: pair.clone(),
                            key: link.source_key,
                            row: None,
                            captured_at: Utc::now(),
                        });
                    }
                    continue;
                }
                Finding::Unlinked { pair, side, key } => (pair, *side, key.clone()),
            };
            let Some(plan) = self.integration.plan.pairs.iter().find(|p| &p.name == pair) else {
                continue;
            };
            let connector = self.integration.endpoint(side);
            let mut rows = connector
                .fetch_rows(plan.table(side), std::slice::from_ref(&key))
                .await
                .map_err(self.integration.error(side))?;
            split::join_rows(plan, side, connector.as_ref(), &mut rows)
                .await
                .map_err(self.integration.error(side))?;
            entries.push(NewEntry {
                side,
                pair: pair.clone(),
                key,
                row: rows.into_iter().next(),
                captured_at: Utc::now(),
            });
        }
        // A differing or orphaned record must be written even though its
        // values are what was last synced from the source: forget that
        // fingerprint.
        let mut batch = crate::state::StateBatch::default();
        for finding in findings {
            let source_key = match finding {
                Finding::Differs {
                    pair, source_key, ..
                } => Some((pair, source_key)),
                Finding::Orphan {
                    pair,
                    missing: Side::Target,
                    key,
                } => Some((pair, key)),
                _ => None,
            };
            if let Some((pair, source_key)) = source_key {
                if let Some(mut link) = self.state.link(pair, Side::Source, source_key)? {
                    link.synced = [None, None];
                    link.pending = [None, None];
                    batch.put_link(pair, &link);
                }
            }
        }
        self.state.append_log_with(entries, batch)?;
        let mut tally = Tally::default();
        self.applier().drain(&mut tally).await?;
        Ok(tally)
    }
}
