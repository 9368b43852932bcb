//! Writing to the API: create, update and delete requests.
//!
//! An API has no transactions, so each request takes effect when it
//! returns; savepoints and rollbacks have nothing to undo. What the agent
//! needs from a transaction it still gets: a new record's key pair is
//! journalled as soon as the API answers (durably, before the agent goes
//! on), and the modification time the API stamped on each write is
//! remembered so that polling does not send the write back.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use tracing::{info, warn};

use super::client::Repeat;
use super::journal::{Entry, IdMapRowData, Intent};
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

    /// Reads back a record just written, remembers the time the API gave
    /// the write (echo suppression) and keeps the row for
    /// `fetch_for_update`.
    async fn written(&mut self, object: &ObjectSpec, id: &str) -> Result<Row> {
        let row = self.endpoint.get_record(object, id).await?.ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::Transient,
                format!(
                    "{} {id} was written but cannot be read back yet",
                    object.name
                ),
            )
        })?;
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

    /// Sends a create; returns the new id. With a token, a create whose
    /// answer was lost is looked for before the error is returned.
    async fn create(
        &mut self,
        object: &ObjectSpec,
        row: &Row,
        token: Option<&str>,
    ) -> Result<String> {
        let mut body = types::row_to_body(object, row, true)?;
        if let (Some(field), Some(token)) = (&object.create_token, token) {
            types::set(
                &mut body,
                std::slice::from_ref(field),
                serde_json::Value::String(token.to_owned()),
            );
        }
        let sent = self
            .endpoint
            .client
            .send(Method::POST, &object.path, &[], Some(&body), Repeat::Unsafe)
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) if e.is_retryable() => {
                if let Some(token) = token {
                    if let Some(id) = find_by_token(&self.endpoint, object, token).await? {
                        info!(object = %object.name, "a create whose answer was lost was found by its token");
                        return Ok(id);
                    }
                }
                return Err(e.context(format!(
                    "creating a {} record (it was not created, or cannot be told apart without create_token)",
                    object.name
                )));
            }
            Err(e) => return Err(e),
        };
        types::id_of(&answer.body, &object.id).ok_or_else(|| {
            ConnectorError::new(
                ErrorKind::Internal,
                format!(
                    "{}: the create answer holds no id in field {:?}",
                    object.name, object.id
                ),
            )
        })
    }
}

/// The record carrying `token`, when there is one.
async fn find_by_token(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    token: &str,
) -> Result<Option<String>> {
    let records = endpoint
        .list(object, fill(&object.find_token, "token", token))
        .await?;
    Ok(records.first().and_then(|r| types::id_of(r, &object.id)))
}

/// Settles the creates in flight when the agent last stopped: one the API
/// has (found by its token) gets its key pair journalled; one it has not
/// is forgotten (its change is still in the change log).
pub async fn settle_intents(endpoint: &Endpoint) -> Result<()> {
    let intents: Vec<Intent> =
        endpoint.with_journal(|j| Ok(j.state.intents.values().cloned().collect()))?;
    for intent in intents {
        let Some(object) = endpoint.options.object(&intent.object) else {
            continue;
        };
        let mut entries = Vec::new();
        match find_by_token(endpoint, object, &intent.token).await? {
            Some(id) => {
                let key = Key(vec![Value::Text(id.clone())]).encode();
                let mut link = intent.link.clone();
                if intent.new_is_target {
                    link.target_key = key;
                } else {
                    link.source_key = key;
                }
                info!(object = %object.name, "a create in flight at the last stop was found by its token");
                entries.push(Entry::Known {
                    object: object.name.clone(),
                    ids: vec![id],
                    present: true,
                });
                entries.push(Entry::Link(link));
            }
            None => {
                warn!(object = %object.name, "a create in flight at the last stop did not happen; it is sent again")
            }
        }
        entries.push(Entry::IntentDone {
            token: intent.token,
        });
        endpoint.with_journal(|j| j.append(entries, true))?;
    }
    Ok(())
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
        let id = self.create(&object, row, None).await?;
        self.written(&object, &id).await?;
        Ok(Key(vec![Value::Text(id)]))
    }

    async fn insert_copy(&mut self, table: &TableSchema, row: &Row, copy: &CopyOf) -> Result<Key> {
        let object = self.object(table)?;
        let token = match &object.create_token {
            Some(_) => {
                let token = uuid::Uuid::new_v4().to_string();
                let empty = IdMapRowData::from(&copy.link(""));
                self.endpoint.with_journal(|journal| {
                    journal.append(
                        vec![Entry::Intent(Intent {
                            token: token.clone(),
                            object: object.name.clone(),
                            link: empty,
                            new_is_target: copy.copy_is_target,
                        })],
                        true,
                    )
                })?;
                Some(token)
            }
            None => None,
        };
        let created = self.create(&object, row, token.as_deref()).await;
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                if let Some(token) = token {
                    // Looked for and not found: it did not happen.
                    self.endpoint.with_journal(|journal| {
                        journal.append(vec![Entry::IntentDone { token }], true)
                    })?;
                }
                return Err(e);
            }
        };
        let key = Key(vec![Value::Text(id.clone())]);
        let mut entries = vec![
            Entry::Link(IdMapRowData::from(&copy.link(&key.encode()))),
            Entry::Known {
                object: object.name.clone(),
                ids: vec![id.clone()],
                present: true,
            },
        ];
        if let Some(token) = token {
            entries.push(Entry::IntentDone { token });
        }
        // Durable before anything else happens: the record exists now.
        self.endpoint
            .with_journal(|journal| journal.append(entries, true))?;
        self.written(&object, &id).await?;
        Ok(key)
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
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.written(&object, &id).await?;
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
        Ok(answer.status != StatusCode::NOT_FOUND)
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
