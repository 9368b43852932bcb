//! Writing to the API: create, update and delete requests.
//!
//! An API has no transactions, so each request takes effect when it
//! returns; savepoints and rollbacks have nothing to undo. What the agent
//! needs from a transaction it still gets: a new record's key pair is
//! journalled as soon as the API answers (durably, before the agent goes
//! on), and the modification time the API stamped on each write is
//! remembered so that polling does not send the write back.
//!
//! A create is never sent twice blindly. Before it goes out it is
//! journalled as an intent; one whose outcome is unclear (the answer was
//! lost, or holds no id that can be read) stays so, and is looked for
//! before anything is sent again: by a GET of the id the agent gave it
//! (`own_ids`), by its token (`create_token`) or by a query on its own
//! values (`find_created`). An intent that cannot be
//! looked for holds its record as a dead letter naming it, until an
//! operator lets it go (`dead-letters retry`).
//!
//! A write whose answer holds the record as written (every field) is not
//! read back: one request a write where the API allows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use tracing::info;

use super::client::Repeat;
use super::journal::{Entry, IdMapRowData, Intent, Outcome};
use super::{fill, key_id, record_path, types, Endpoint, ObjectSpec};
use crate::connector::{CopyOf, IdMapRow, Transaction};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::TableSchema;
use crate::value::{Key, Row, Value};

/// One "transaction": requests sent as they come.
pub struct HttpTransaction {
    endpoint: Arc<Endpoint>,
    /// Records read or written here, as last seen: an update sends only
    /// the fields that differ from these.
    current: HashMap<(String, String), Row>,
}

/// The id of a record a create made, and the record when its answer held
/// it whole.
struct Created {
    id: String,
    record: Option<serde_json::Value>,
}

impl HttpTransaction {
    /// A transaction on `endpoint`.
    pub fn new(endpoint: Arc<Endpoint>) -> HttpTransaction {
        HttpTransaction {
            endpoint,
            current: HashMap::new(),
        }
    }

    fn object(&self, table: &TableSchema) -> Result<ObjectSpec> {
        self.endpoint.object(&table.name).cloned()
    }

    /// Takes a record as written: remembers the time the API gave the
    /// write (echo suppression) and keeps the row for `fetch_for_update`.
    /// `answered` is the write's answer when it held the record whole;
    /// otherwise the record is read back.
    async fn written(
        &mut self,
        object: &ObjectSpec,
        id: &str,
        answered: Option<&serde_json::Value>,
    ) -> Result<Row> {
        let row = match answered {
            Some(record) => types::record_to_row(object, record)?,
            None => self.endpoint.get_record(object, id).await?.ok_or_else(|| {
                ConnectorError::new(
                    ErrorKind::Transient,
                    format!(
                        "{} {id} was written but cannot be read back yet",
                        object.name
                    ),
                )
            })?,
        };
        let at = match row.get(&object.modified) {
            Some(Value::TimestampTz(at)) => Some(*at),
            _ => None,
        };
        if let Some(at) = at {
            self.endpoint.with_journal(|journal| {
                journal.append(
                    vec![Entry::Own {
                        object: object.name.clone(),
                        id: id.to_owned(),
                        at: Some(at),
                    }],
                    false,
                )
            })?;
        }
        self.current
            .insert((object.name.clone(), id.to_owned()), row.clone());
        Ok(row)
    }

    /// Sends a create with `token` written into it (when the object has a
    /// `create_token` field). `Ok(None)`: the API created the record but
    /// its answer holds no id that can be read.
    async fn send_create(
        &self,
        object: &ObjectSpec,
        row: &Row,
        token: &str,
    ) -> Result<Option<Created>> {
        let mut body = types::row_to_body(object, row, true)?;
        if object.own_ids.is_some() {
            let mut path = object.request_record.clone();
            path.extend(object.id_path.iter().cloned());
            types::set(
                &mut body,
                &path,
                serde_json::Value::String(token.to_owned()),
            );
        }
        if let Some(field) = &object.create_token {
            let mut path = object.request_record.clone();
            path.push(field.clone());
            types::set(
                &mut body,
                &path,
                serde_json::Value::String(token.to_owned()),
            );
        }
        let answer = self
            .endpoint
            .client
            .send(
                Method::POST,
                &object.path,
                &[],
                Some(&body),
                Repeat::Unsafe,
                &[],
            )
            .await?;
        let Some(record) = types::get(&answer.body, &object.record) else {
            return Ok(None);
        };
        Ok(types::id_of(record, &object.id_path).map(|id| Created {
            id,
            record: types::is_whole(object, record).then(|| record.clone()),
        }))
    }

    /// Creates the record `row` as the copy `copy` names (or, without one,
    /// a record of its own), never twice: see the module docs.
    async fn create(
        &mut self,
        object: &ObjectSpec,
        row: &Row,
        copy: Option<&CopyOf>,
    ) -> Result<Key> {
        let link = IdMapRowData::from(&match copy {
            Some(copy) => copy.link(""),
            // A record of its own (a split's extra table): named by its
            // values, as it has no other.
            None => IdMapRow {
                pair: String::new(),
                source_key: serde_json::to_string(row).unwrap_or_default(),
                target_key: String::new(),
            },
        });
        let intent = match unsettled(&self.endpoint, object, &link)? {
            Some(intent) => {
                // Sent before without a clear outcome: looked for first.
                if let Some(id) = find_created(&self.endpoint, object, &intent).await? {
                    info!(object = %object.name, "a create sent before was found; it is not sent again");
                    return self
                        .created(object, &intent, Created { id, record: None })
                        .await;
                }
                match intent.outcome {
                    Outcome::Lost | Outcome::Sending if object.can_find_creates() => {
                        // Looked for and not there: it did not happen.
                        intent
                    }
                    // Not found, and the operator said it may go again.
                    Outcome::Released => intent,
                    outcome => return Err(held(object, &intent, outcome)),
                }
            }
            None => {
                // Made already, its answer unread, and recognised since
                // (a link the agent may not have adopted yet): not again.
                if let Some(key) = made_already(&self.endpoint, &link)? {
                    return Ok(key);
                }
                let intent = Intent {
                    // With ids of its own, the token is the new id.
                    token: object
                        .own_ids
                        .as_ref()
                        .map_or_else(|| uuid::Uuid::new_v4().to_string(), |own| own.generate()),
                    object: object.name.clone(),
                    link,
                    new_is_target: copy.is_none_or(|c| c.copy_is_target),
                    outcome: Outcome::Sending,
                    finder: finder(object, row),
                    sent: types::sent_values(object, row),
                };
                self.endpoint.with_journal(|journal| {
                    journal.append(vec![Entry::Intent(intent.clone())], true)
                })?;
                intent
            }
        };
        match self.send_create(object, row, &intent.token).await {
            Ok(Some(created)) => self.created(object, &intent, created).await,
            Ok(None) => {
                let intent = remember(&self.endpoint, intent, Outcome::IdUnknown)?;
                if let Some(id) = find_created(&self.endpoint, object, &intent).await? {
                    return self
                        .created(object, &intent, Created { id, record: None })
                        .await;
                }
                Err(held(object, &intent, Outcome::IdUnknown))
            }
            // It never left: nothing happened.
            Err(e) if e.is_unsent() => {
                settle(&self.endpoint, &intent.token)?;
                Err(e)
            }
            // Refused: the API did nothing this time; a resend may be
            // refused because the first try did happen (an id taken).
            Err(e) if !e.is_retryable() => {
                if intent.outcome != Outcome::Sending {
                    if let Some(id) = find_created(&self.endpoint, object, &intent).await? {
                        return self
                            .created(object, &intent, Created { id, record: None })
                            .await;
                    }
                }
                settle(&self.endpoint, &intent.token)?;
                Err(e)
            }
            Err(e) => {
                let intent = remember(&self.endpoint, intent, Outcome::Lost)?;
                if let Some(id) = find_created(&self.endpoint, object, &intent).await? {
                    info!(object = %object.name, "a create whose answer was lost was found");
                    return self
                        .created(object, &intent, Created { id, record: None })
                        .await;
                }
                if object.can_find_creates() {
                    // Not there: it may be sent again, after the error is
                    // retried, with the same token.
                    return Err(e.context(format!("creating a {} record", object.name)));
                }
                Err(held(object, &intent, Outcome::Lost))
            }
        }
    }

    /// Journals what a create made (durably, before anything else) and
    /// takes the record as written.
    async fn created(
        &mut self,
        object: &ObjectSpec,
        intent: &Intent,
        created: Created,
    ) -> Result<Key> {
        let key = Key(vec![Value::Text(created.id.clone())]);
        let entries = created_entries(object, intent, &created.id, false);
        self.endpoint
            .with_journal(|journal| journal.append(entries, true))?;
        self.written(object, &created.id, created.record.as_ref())
            .await?;
        Ok(key)
    }
}

/// The intent of an earlier create of the same record, still unsettled.
fn unsettled(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    link: &IdMapRowData,
) -> Result<Option<Intent>> {
    endpoint.with_journal(|journal| {
        Ok(journal
            .state
            .intents
            .values()
            .find(|i| i.object == object.name && i.link == *link)
            .cloned())
    })
}

/// The key of the record a create of `link` made, where the journal holds
/// its key pair (found by the endpoint and not yet adopted by the agent).
fn made_already(endpoint: &Endpoint, link: &IdMapRowData) -> Result<Option<Key>> {
    if link.pair.is_empty() {
        return Ok(None);
    }
    endpoint.with_journal(|journal| {
        let made = journal.state.found.iter().find_map(|l| {
            let (origin, made) = if link.target_key.is_empty() {
                ((&l.source_key, &link.source_key), &l.target_key)
            } else {
                ((&l.target_key, &link.target_key), &l.source_key)
            };
            (l.pair == link.pair && origin.0 == origin.1 && !made.is_empty()).then(|| made.clone())
        });
        made.map(|text| Key::decode(&text)).transpose()
    })
}

/// The `find_created` query for `row`: its values in place of `{field}`;
/// empty when the object has none or a value is missing.
fn finder(object: &ObjectSpec, row: &Row) -> BTreeMap<String, String> {
    let mut query = BTreeMap::new();
    for (key, template) in &object.find_created {
        let mut filled = template.clone();
        for name in super::config::placeholders(template) {
            let text = match row.get(name) {
                None | Some(Value::Null) => return BTreeMap::new(),
                Some(Value::Text(text)) => text.clone(),
                Some(other) => other.to_string(),
            };
            // JSON-escaped, as for the other templates.
            let escaped = serde_json::to_string(&text).expect("strings serialize");
            filled = filled.replace(&format!("{{{name}}}"), &escaped[1..escaped.len() - 1]);
        }
        query.insert(key.clone(), filled);
    }
    query
}

/// Journals a new outcome of `intent`.
fn remember(endpoint: &Endpoint, mut intent: Intent, outcome: Outcome) -> Result<Intent> {
    intent.outcome = outcome;
    endpoint.with_journal(|journal| journal.append(vec![Entry::Intent(intent.clone())], true))?;
    Ok(intent)
}

/// Journals that `token`'s create is settled.
fn settle(endpoint: &Endpoint, token: &str) -> Result<()> {
    endpoint.with_journal(|journal| {
        journal.append(
            vec![Entry::IntentDone {
                token: token.to_owned(),
            }],
            true,
        )
    })
}

/// The error that holds a record whose create cannot be settled: a dead
/// letter that names it and says what to do.
fn held(object: &ObjectSpec, intent: &Intent, outcome: Outcome) -> ConnectorError {
    let record = if intent.new_is_target {
        &intent.link.source_key
    } else {
        &intent.link.target_key
    };
    let what = match outcome {
        Outcome::IdUnknown => format!(
            "the API created a {} record for {record} but its answer holds no id at {:?} (check record and id in the config)",
            object.name,
            [object.record.join("."), object.id_path.join(".")]
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(".")
        ),
        Outcome::Lost | Outcome::Sending | Outcome::Released => format!(
            "a create of a {} record for {record} may have reached the API (its answer was lost)",
            object.name
        ),
    };
    let advice = if object.can_find_creates() {
        "it was looked for and not found"
    } else {
        "set own_ids, create_token or find_created so that it can be found"
    };
    ConnectorError::data(format!(
        "{what}; it is not sent again blindly: {advice}, or look for it in the API (delete it if it is there) and run `tandem-agent dead-letters retry`"
    ))
}

/// The record a create in flight made, looked for by its token or its
/// values; `None` when the object can look for neither or none is found.
async fn find_created(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    intent: &Intent,
) -> Result<Option<String>> {
    if object.own_ids.is_some() {
        let found = endpoint.exists(object, &intent.token).await?;
        return Ok(found.then(|| intent.token.clone()));
    }
    let query = if object.create_token.is_some() {
        fill(&object.find_token, "token", &intent.token)
    } else if !intent.finder.is_empty() {
        intent.finder.clone().into_iter().collect()
    } else {
        return Ok(None);
    };
    let records = endpoint.list(object, query).await?;
    // A record the agent knows is another's copy, not this create's.
    let known = endpoint.with_journal(|j| Ok(j.state.object(&object.name).known.clone()))?;
    let ids: Vec<String> = records
        .iter()
        .filter_map(|r| types::id_of(r, &object.id_path))
        .filter(|id| !known.contains(id))
        .collect();
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        several => Err(ConnectorError::data(format!(
            "{}: {} records match the query that finds a create ({}); none is taken for it: make find_created match one record",
            object.name,
            several.len(),
            several.join(", ")
        ))),
    }
}

/// Settles the creates in flight when the agent last stopped: one the API
/// has (found) gets its key pair journalled; one it has not, where it
/// could have been found, is forgotten (its change is still in the change
/// log); the others stay, and hold their records until they are found or
/// an operator lets them go.
pub async fn settle_intents(endpoint: &Endpoint) -> Result<()> {
    let intents: Vec<Intent> =
        endpoint.with_journal(|j| Ok(j.state.intents.values().cloned().collect()))?;
    for intent in intents {
        let Some(object) = endpoint.options.object(&intent.object) else {
            continue;
        };
        let entries = match find_created(endpoint, object, &intent).await? {
            Some(id) => {
                info!(object = %object.name, "a create in flight at the last stop was found");
                created_entries(object, &intent, &id, true)
            }
            // Not there (yet: a server may finish a create after its
            // answer was lost): kept, so that a resend goes with the
            // same token or id, and is looked for first.
            None => continue,
        };
        endpoint.with_journal(|j| j.append(entries, true))?;
    }
    Ok(())
}

/// Of the listed records the agent does not know (`unknown`: id and
/// record), those that unsettled creates of `object` made, recognised by
/// holding every value a create sent: each is linked as its create's
/// record (journalled) instead of being taken for someone else's new
/// record and copied back. Returns their ids.
pub(super) fn claim_created(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    unknown: &[(String, serde_json::Value)],
) -> Result<BTreeSet<String>> {
    let mut claimed = BTreeSet::new();
    if unknown.is_empty() {
        return Ok(claimed);
    }
    let intents: Vec<Intent> = endpoint.with_journal(|j| {
        Ok(j.state
            .intents
            .values()
            .filter(|i| i.object == object.name)
            .cloned()
            .collect())
    })?;
    for intent in intents {
        let Some((id, record)) = unknown.iter().find(|(id, record)| {
            !claimed.contains(id) && types::holds_sent(object, record, &intent.sent)
        }) else {
            continue;
        };
        info!(object = %object.name, id = %id, "a listed record is one the agent created (its answer could not be read); it is linked, not copied back");
        let mut entries = created_entries(object, &intent, id, true);
        // Its version as listed is the agent's write: an echo.
        if let Some(at) = types::modified_of(object, record) {
            entries.push(Entry::Own {
                object: object.name.clone(),
                id: id.clone(),
                at: Some(at),
            });
        }
        endpoint.with_journal(|j| j.append(entries, true))?;
        claimed.insert(id.clone());
    }
    Ok(claimed)
}

/// The journal entries of a create that made record `id`: its key pair
/// (a link the agent has, or one `found` for it to adopt), the id known,
/// the intent done.
fn created_entries(object: &ObjectSpec, intent: &Intent, id: &str, found: bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    if !intent.link.pair.is_empty() {
        let key = Key(vec![Value::Text(id.to_owned())]).encode();
        let mut link = intent.link.clone();
        if intent.new_is_target {
            link.target_key = key;
        } else {
            link.source_key = key;
        }
        entries.push(if found {
            Entry::Found(link)
        } else {
            Entry::Link(link)
        });
    }
    entries.push(Entry::Known {
        object: object.name.clone(),
        ids: vec![id.to_owned()],
        present: true,
    });
    entries.push(Entry::IntentDone {
        token: intent.token.clone(),
    });
    entries
}

/// Lets go the unsettled creates of `pair`'s records with these keys on
/// the side they come from (an operator's `dead-letters retry`): each is
/// looked for once more, and sent again when it is not found.
pub fn release_creates(endpoint: &Endpoint, pair: &str, keys: &[String]) -> Result<usize> {
    endpoint.with_journal(|journal| {
        let intents: Vec<Intent> = journal
            .state
            .intents
            .values()
            .filter(|i| {
                let origin = if i.new_is_target {
                    &i.link.source_key
                } else {
                    &i.link.target_key
                };
                i.link.pair == pair && keys.contains(origin)
            })
            .cloned()
            .collect();
        let released = intents.len();
        journal.append(
            intents
                .into_iter()
                .map(|mut intent| {
                    intent.outcome = Outcome::Released;
                    Entry::Intent(intent)
                })
                .collect(),
            true,
        )?;
        Ok(released)
    })
}

#[async_trait]
impl Transaction for HttpTransaction {
    async fn fetch_for_update(&mut self, table: &TableSchema, key: &Key) -> Result<Option<Row>> {
        let object = self.object(table)?;
        let id = key_id(key)?;
        let slot = (object.name.clone(), id.clone());
        if let Some(row) = self.current.get(&slot) {
            return Ok(Some(row.clone()));
        }
        // An API has no locks: the copy can change between this read and
        // the write (documented).
        let row = self.endpoint.get_record(&object, &id).await?;
        if let Some(row) = &row {
            self.current.insert(slot, row.clone());
        }
        Ok(row)
    }

    async fn insert(&mut self, table: &TableSchema, row: &Row) -> Result<Key> {
        let object = self.object(table)?;
        self.create(&object, row, None).await
    }

    async fn insert_copy(&mut self, table: &TableSchema, row: &Row, copy: &CopyOf) -> Result<Key> {
        let object = self.object(table)?;
        self.create(&object, row, Some(copy)).await
    }

    async fn update(&mut self, table: &TableSchema, key: &Key, row: &Row) -> Result<bool> {
        let object = self.object(table)?;
        let id = key_id(key)?;
        // Only what differs from the copy as last read: fewer fields for
        // the API to refuse or to overwrite, and a field it never had is
        // not "cleared" (Parse refuses that).
        let changed: Row = match self.current.get(&(object.name.clone(), id.clone())) {
            Some(current) => row
                .iter()
                .filter(|(name, value)| current.get(*name).unwrap_or(&Value::Null) != *value)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => row.clone(),
        };
        if changed.is_empty() {
            return Ok(true);
        }
        let body = types::row_to_body(&object, &changed, false)?;
        let answer = self
            .endpoint
            .client
            .send(
                object.update_method.clone(),
                &record_path(&object, &id),
                &[],
                Some(&body),
                Repeat::Safe,
                &object.not_found,
            )
            .await?;
        if object.is_not_found(answer.status) {
            return Ok(false);
        }
        let whole = types::get(&answer.body, &object.record)
            .filter(|record| types::is_whole(&object, record))
            .cloned();
        self.written(&object, &id, whole.as_ref()).await?;
        Ok(true)
    }

    async fn delete(&mut self, table: &TableSchema, key: &Key) -> Result<bool> {
        let object = self.object(table)?;
        let id = key_id(key)?;
        let answer = self
            .endpoint
            .client
            .send(
                Method::DELETE,
                &record_path(&object, &id),
                &[],
                None,
                Repeat::Safe,
                &object.not_found,
            )
            .await?;
        self.current.remove(&(object.name.clone(), id.clone()));
        self.endpoint.with_journal(|journal| {
            journal.append(
                vec![Entry::Own {
                    object: object.name.clone(),
                    id,
                    at: None,
                }],
                false,
            )
        })?;
        Ok(!object.is_not_found(answer.status))
    }

    async fn record_link(&mut self, link: &IdMapRow) -> Result<()> {
        self.endpoint.with_journal(|journal| {
            journal.append(vec![Entry::Link(IdMapRowData::from(link))], true)
        })
    }

    async fn forget_link(&mut self, pair: &str, source_key: &str, target_key: &str) -> Result<()> {
        self.endpoint.with_journal(|journal| {
            journal.append(
                vec![Entry::Unlink(IdMapRowData {
                    pair: pair.to_owned(),
                    source_key: source_key.to_owned(),
                    target_key: target_key.to_owned(),
                })],
                false,
            )
        })
    }

    async fn savepoint(&mut self) -> Result<()> {
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        Ok(())
    }

    async fn release_savepoint(&mut self) -> Result<()> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
