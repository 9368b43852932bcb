//! Capture by modification time.
//!
//! Each poll asks for the records modified at or after the watermark minus
//! an overlap (a record saved in the same second as the last poll, or
//! committed a moment late, is not missed), oldest first, a page at a time,
//! paging by the modification time itself: a record changed while the
//! pages are read moves to the end and is read there, so none is skipped.
//! Records already consumed are recognised by (id, modification time);
//! records carrying exactly the time the API gave the agent's own write are
//! echoes and are not sent back. The watermark moves only when the tail
//! consumes the changes, after they are in the change log.
//!
//! Deletes come from the deleted-records request where the object has one,
//! otherwise from comparing the id set with the ids known to exist, every
//! `reconcile_interval`. A known id missing from the listing is taken for
//! deleted only once a GET of it answers one of the object's `not_found`
//! statuses; a listing that cannot be complete (fewer records than the
//! API's total, or a known record missing from it that still exists) makes
//! the comparison conclude nothing, with a warning naming what to set.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use super::apply::claim_created;
use super::journal::Entry;
use super::types;
use super::{fill, records_in, Endpoint, ObjectSpec, PendingChange};
use crate::connector::{CapturedChange, ChangeOp};
use crate::error::{ConnectorError, ErrorKind, Result};
use crate::schema::TableName;
use crate::value::Row;

/// Largest page asked for when more records than a page share one time.
const MAX_PAGE: usize = 10_000;

/// Changes of `tables` not consumed yet, polling for new ones when none
/// are waiting.
pub async fn read_changes(
    endpoint: &Endpoint,
    tables: &[TableName],
    limit: usize,
) -> Result<Vec<CapturedChange>> {
    if pending_count(endpoint) == 0 {
        for table in tables {
            let Some(object) = endpoint.options.object(&table.name) else {
                continue;
            };
            let room = limit.saturating_sub(pending_count(endpoint));
            if room == 0 {
                break;
            }
            poll(endpoint, object, room).await?;
            find_deletes(endpoint, object).await?;
        }
        if pending_count(endpoint) == 0 {
            // Only echoes were found: the watermark moves past them now,
            // as no tail will consume them.
            consume(endpoint, &[])?;
        }
    }
    let pending = endpoint.pending.lock().expect("pending lock");
    Ok(pending
        .changes
        .iter()
        .take(limit)
        .map(|(seq, change)| CapturedChange {
            seq: *seq,
            table: change.object.clone(),
            op: change.op,
            key: serde_json::json!([change.id]),
            captured_at: change.modified,
        })
        .collect())
}

fn pending_count(endpoint: &Endpoint) -> usize {
    endpoint.pending.lock().expect("pending lock").changes.len()
}

/// The query for one page of records modified at or after `since`.
pub(super) fn page_query(
    object: &ObjectSpec,
    since: DateTime<Utc>,
    page: usize,
    offset: usize,
) -> Vec<(String, String)> {
    let mut query = fill(
        &object.since,
        "since",
        &types::format_since(since, &object.time_format),
    );
    query.extend(object.order.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(limit) = &object.limit_param {
        query.push((limit.clone(), page.to_string()));
    }
    if offset > 0 {
        if let Some(param) = &object.offset_param {
            query.push((param.clone(), offset.to_string()));
        }
    }
    if let Some(param) = &object.page_param {
        // Pages of a constant size: the offset is a whole number of them.
        query.push((param.clone(), (offset / page + 1).to_string()));
    }
    query
}

/// What a walk through a listing saw.
#[derive(Debug, Default)]
struct Walked {
    /// Whether `each` stopped it.
    stopped: bool,
    /// How many records the first page said the query matches, where the
    /// API says.
    total: Option<u64>,
}

/// Reads the records modified at or after `since`, oldest first, calling
/// `each` with every record and its time until it returns `false` or the
/// records run out. Pages by modification time (see the module docs).
async fn walk(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    mut since: DateTime<Utc>,
    mut each: impl FnMut(&serde_json::Value, String, DateTime<Utc>) -> Result<bool>,
) -> Result<Walked> {
    let mut page = object.page_size;
    let mut offset = 0;
    let mut walked = Walked::default();
    // The size of the API's own page, where no page size is sent.
    let mut first_len = None;
    // Records of the last page at its newest time: the next page starts
    // there and shows them again.
    let mut at_edge: BTreeSet<(String, DateTime<Utc>)> = BTreeSet::new();
    loop {
        let answer = endpoint
            .list_page(object, page_query(object, since, page, offset))
            .await?;
        let records = answer.records;
        if walked.total.is_none() && offset == 0 {
            walked.total = answer.total;
        }
        let mut newest = since;
        let mut edge = BTreeSet::new();
        let mut fresh = 0;
        for record in &records {
            let id = types::id_of(record, &object.id_path).ok_or_else(|| {
                ConnectorError::data(format!(
                    "{}: a listed record has no id at {:?}",
                    object.name,
                    object.id_path.join(".")
                ))
            })?;
            let modified = types::modified_of(object, record).ok_or_else(|| {
                ConnectorError::data(format!(
                    "{} {id}: field {:?} holds no modification time",
                    object.name, object.modified
                ))
            })?;
            if modified > newest {
                newest = modified;
                edge.clear();
            }
            edge.insert((id.clone(), modified));
            if at_edge.contains(&(id.clone(), modified)) {
                continue;
            }
            fresh += 1;
            if types::is_tombstone(object, record) {
                continue;
            }
            if !each(record, id, modified)? {
                walked.stopped = true;
                return Ok(walked);
            }
        }
        let more = match object.limit_param {
            Some(_) => records.len() >= page,
            // No page size was sent, so the API's own may have cut the
            // page: one that brought a newer time is followed by the next
            // from there, where the listing is ordered by time.
            None => !object.order.is_empty() && newest > since,
        };
        let own_size = *first_len.get_or_insert(records.len());
        if object.limit_param.is_none() && fresh == 0 && own_size > 1 && records.len() >= own_size {
            warn!(
                object = %object.name,
                records = records.len(),
                at = %types::format_time(since),
                "a whole page of the API's own size shares one modification time: records past it cannot be read without limit_param (and offset_param or page_param)"
            );
        }
        if !more {
            return Ok(walked);
        }
        if newest > since {
            since = newest;
            offset = 0;
            page = object.page_size;
            at_edge = edge;
            continue;
        }
        // A whole page at one time: look further into it.
        at_edge.extend(edge);
        if object.offset_param.is_some() || object.page_param.is_some() {
            if fresh == 0 {
                return Err(ConnectorError::data(format!(
                    "{}: the next page ({}) showed the same records again: the API ignores {:?}; check offset_param or page_param",
                    object.name,
                    offset + records.len(),
                    object
                        .offset_param
                        .as_deref()
                        .or(object.page_param.as_deref())
                        .unwrap_or_default()
                )));
            }
            offset += records.len();
        } else if page < MAX_PAGE {
            page = (page * 2).min(MAX_PAGE);
        } else {
            return Err(ConnectorError::data(format!(
                "{}: more than {MAX_PAGE} records share the modification time {} and the object has no offset_param or page_param to page through them",
                object.name,
                types::format_time(since)
            )));
        }
    }
}

/// Polls `object` for up to `room` new changes.
async fn poll(endpoint: &Endpoint, object: &ObjectSpec, room: usize) -> Result<()> {
    let (watermark, seen, own, known) = endpoint.with_journal(|journal| {
        let state = journal.state.object(&object.name);
        Ok((
            state.watermark,
            state.seen.clone(),
            state.own.clone(),
            state.known.clone(),
        ))
    })?;
    let since = watermark
        .map(|w| w - object.overlap)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut found: Vec<(PendingChange, Row)> = Vec::new();
    let mut echoes = Vec::new();
    let mut taken: BTreeSet<(String, DateTime<Utc>)> = BTreeSet::new();
    let mut unknown: Vec<(String, serde_json::Value)> = Vec::new();
    walk(endpoint, object, since, |record, id, modified| {
        let stamp = (id.clone(), modified);
        if seen.contains(&stamp) || !taken.insert(stamp.clone()) {
            return Ok(true);
        }
        if own.get(&id) == Some(&modified) {
            echoes.push(stamp);
            return Ok(true);
        }
        let row = types::record_to_row(object, record)?;
        if !known.contains(&id) {
            unknown.push((id.clone(), record.clone()));
        }
        found.push((
            PendingChange {
                object: object.name.clone(),
                op: if known.contains(&id) {
                    ChangeOp::Update
                } else {
                    ChangeOp::Insert
                },
                id,
                modified,
                from_deleted_list: false,
            },
            row,
        ));
        Ok(found.len() < room)
    })
    .await?;
    // A new record one of the agent's own creates made is its copy, not
    // news: passed over like an echo.
    let claimed = claim_created(endpoint, object, &unknown)?;
    found.retain(|(change, _)| {
        if claimed.contains(&change.id) {
            echoes.push((change.id.clone(), change.modified));
            return false;
        }
        true
    });
    if !found.is_empty() || !echoes.is_empty() {
        debug!(object = %object.name, changes = found.len(), echoes = echoes.len(), "polled");
    }
    let mut pending = endpoint.pending.lock().expect("pending lock");
    pending
        .echoes
        .entry(object.name.clone())
        .or_default()
        .extend(echoes);
    for (change, row) in found {
        pending
            .rows
            .insert((change.object.clone(), change.id.clone()), row);
        let seq = endpoint.next_seq.fetch_add(1, Ordering::Relaxed);
        pending.changes.insert(seq, change);
    }
    Ok(())
}

/// Every record of `object`, in id order (for a first sync); their ids are
/// remembered as known.
pub async fn read_all(endpoint: &Endpoint, object: &ObjectSpec) -> Result<Vec<(String, Row)>> {
    let known = endpoint.with_journal(|j| Ok(j.state.object(&object.name).known.clone()))?;
    let mut rows: HashMap<String, Row> = HashMap::new();
    let mut unknown: Vec<(String, serde_json::Value)> = Vec::new();
    walk(
        endpoint,
        object,
        DateTime::<Utc>::UNIX_EPOCH,
        |record, id, _| {
            if !known.contains(&id) {
                unknown.push((id.clone(), record.clone()));
            }
            rows.insert(id, types::record_to_row(object, record)?);
            Ok(true)
        },
    )
    .await?;
    let claimed = claim_created(endpoint, object, &unknown)?;
    rows.retain(|id, _| !claimed.contains(id));
    let mut rows: Vec<(String, Row)> = rows.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let ids = rows.iter().map(|(id, _)| id.clone()).collect();
    endpoint.with_journal(|journal| {
        journal.append(
            vec![Entry::Known {
                object: object.name.clone(),
                ids,
                present: true,
            }],
            true,
        )
    })?;
    Ok(rows)
}

/// Finds deleted records: by the deleted-records request, or by comparing
/// the id set when the interval has passed.
async fn find_deletes(endpoint: &Endpoint, object: &ObjectSpec) -> Result<()> {
    let now = Utc::now();
    let deleted = match &object.deleted {
        Some(spec) => deleted_list(endpoint, object, spec).await?,
        None => {
            let due = endpoint.with_journal(|journal| {
                let state = journal.state.object(&object.name);
                Ok(state.reconciled_at.is_none_or(|at| {
                    (now - at).to_std().unwrap_or_default() >= endpoint.options.reconcile_interval
                }))
            })?;
            if !due {
                return Ok(());
            }
            let gone = compare_ids(endpoint, object).await?;
            endpoint.with_journal(|journal| {
                journal.append(
                    vec![Entry::Reconciled {
                        object: object.name.clone(),
                        at: now,
                    }],
                    true,
                )
            })?;
            gone.into_iter().map(|id| (id, now, false)).collect()
        }
    };
    let known = endpoint.with_journal(|j| Ok(j.state.object(&object.name).known.clone()))?;
    let mut pending = endpoint.pending.lock().expect("pending lock");
    let mut passed_over = None;
    for (id, at, from_deleted_list) in deleted {
        // The deleted-records list also names records the agent deleted
        // itself or never knew: only known ones are news.
        if !known.contains(&id)
            || pending
                .changes
                .values()
                .any(|c| c.object == object.name && c.id == id && c.op == ChangeOp::Delete)
        {
            if from_deleted_list {
                passed_over = passed_over.max(Some(at));
            }
            continue;
        }
        pending.rows.remove(&(object.name.clone(), id.clone()));
        let seq = endpoint.next_seq.fetch_add(1, Ordering::Relaxed);
        pending.changes.insert(
            seq,
            PendingChange {
                object: object.name.clone(),
                id,
                modified: at,
                op: ChangeOp::Delete,
                from_deleted_list,
            },
        );
    }
    // Deletes of the list that are no news move its watermark too, once
    // none from it waits: a page of them must not come back for ever.
    let waiting = pending
        .changes
        .values()
        .any(|c| c.object == object.name && c.from_deleted_list);
    drop(pending);
    if let (Some(at), false) = (passed_over, waiting) {
        endpoint.with_journal(|journal| {
            let state = journal.state.object(&object.name);
            if state.deleted_watermark.is_some_and(|w| w >= at) {
                return Ok(());
            }
            journal.append(
                vec![Entry::DeletedWatermark {
                    object: object.name.clone(),
                    at,
                }],
                false,
            )
        })?;
    }
    Ok(())
}

/// The records the deleted-records request names since its watermark:
/// (id, when, from the list).
async fn deleted_list(
    endpoint: &Endpoint,
    object: &ObjectSpec,
    spec: &super::config::DeletedSpec,
) -> Result<Vec<(String, DateTime<Utc>, bool)>> {
    let since = endpoint
        .with_journal(|j| Ok(j.state.object(&object.name).deleted_watermark))?
        .map(|w| w - object.overlap)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let query = fill(
        &spec.since,
        "since",
        &types::format_since(since, &object.time_format),
    );
    let answer = endpoint
        .client
        .send(
            reqwest::Method::GET,
            &spec.path,
            &query,
            None,
            super::client::Repeat::Safe,
            &[],
        )
        .await?;
    let mut deleted = Vec::new();
    for record in records_in(&answer.body, &spec.records, &object.name)? {
        if spec.flag.is_some() && !types::is_tombstone(object, &record) {
            continue;
        }
        let (Some(id), Some(at)) = (
            types::id_of(&record, &spec.id),
            types::get(&record, &spec.deleted_at).and_then(types::parse_time),
        ) else {
            continue;
        };
        deleted.push((id, at, true));
    }
    Ok(deleted)
}

/// The known ids gone from the API: those missing from a listing of every
/// record, each confirmed by a GET that answers `not_found`. A listing
/// that cannot be complete concludes nothing (and says what to set).
async fn compare_ids(endpoint: &Endpoint, object: &ObjectSpec) -> Result<Vec<String>> {
    // Ids known before the listing starts; one created meanwhile is not
    // yet known and cannot be taken for deleted.
    let known = endpoint.with_journal(|j| Ok(j.state.object(&object.name).known.clone()))?;
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let walked = walk(endpoint, object, DateTime::<Utc>::UNIX_EPOCH, |_, id, _| {
        listed.insert(id);
        Ok(true)
    })
    .await?;
    let advice = if object.limit_param.is_none() {
        "set limit_param (the API's page-size parameter) and offset_param or page_param"
    } else if object.offset_param.is_none() && object.page_param.is_none() {
        "set offset_param or page_param, and check limit_param"
    } else {
        "check limit_param, offset_param or page_param, and records"
    };
    if let Some(total) = walked.total {
        if (listed.len() as u64) < total {
            warn!(
                object = %object.name,
                listed = listed.len(),
                total,
                "the listing is incomplete (the API says there are more records): no record is taken for deleted; {advice}"
            );
            return Ok(Vec::new());
        }
    }
    let mut gone = Vec::new();
    for id in known.iter().filter(|id| !listed.contains(*id)) {
        let exists = match endpoint.exists(object, id).await {
            Ok(exists) => exists,
            // An answer that says neither "here" nor "gone": nothing is
            // concluded, and capture goes on.
            Err(e) if matches!(e.kind(), ErrorKind::Data | ErrorKind::Permission) => {
                warn!(
                    object = %object.name,
                    id = %id,
                    error = %e,
                    "a record missing from the listing could not be confirmed gone; no record is taken for deleted (where the API answers a missing record with another status, list it in not_found)"
                );
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        if exists {
            warn!(
                object = %object.name,
                listed = listed.len(),
                id = %id,
                "a record missing from the listing still exists: the listing is incomplete, and no record is taken for deleted; {advice}"
            );
            return Ok(Vec::new());
        }
        gone.push(id.clone());
    }
    if !gone.is_empty() {
        info!(object = %object.name, deleted = gone.len(), "records gone from the API since the last comparison");
    }
    Ok(gone)
}

/// The tail has the changes `seqs` in its log: they are consumed, and the
/// watermarks move past them.
pub fn consume(endpoint: &Endpoint, seqs: &[i64]) -> Result<()> {
    let (consumed, echoes) = {
        let mut pending = endpoint.pending.lock().expect("pending lock");
        let consumed: Vec<PendingChange> = seqs
            .iter()
            .filter_map(|seq| pending.changes.remove(seq))
            .collect();
        for change in &consumed {
            pending
                .rows
                .remove(&(change.object.clone(), change.id.clone()));
        }
        (consumed, std::mem::take(&mut pending.echoes))
    };
    if consumed.is_empty() && echoes.values().all(Vec::is_empty) {
        return Ok(());
    }
    let objects: BTreeSet<&String> = consumed
        .iter()
        .map(|c| &c.object)
        .chain(echoes.keys())
        .collect();
    endpoint.with_journal(|journal| {
        let mut entries = Vec::new();
        for name in objects {
            let Some(object) = endpoint.options.object(name) else {
                continue;
            };
            let state = journal.state.object(name);
            let mut stamps: Vec<(String, DateTime<Utc>)> = consumed
                .iter()
                .filter(|c| &c.object == name && c.op != ChangeOp::Delete)
                .map(|c| (c.id.clone(), c.modified))
                .collect();
            stamps.extend(echoes.get(name).into_iter().flatten().cloned());
            let newest = stamps.iter().map(|(_, at)| *at).max();
            if let Some(newest) = newest {
                let watermark = state.watermark.map_or(newest, |w| w.max(newest));
                let keep_from = watermark - object.overlap;
                let seen: Vec<(String, DateTime<Utc>)> = state
                    .seen
                    .iter()
                    .cloned()
                    .chain(stamps.iter().cloned())
                    .filter(|(_, at)| *at >= keep_from)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                entries.push(Entry::Watermark {
                    object: name.clone(),
                    at: watermark,
                    seen,
                });
            }
            let upserted: Vec<String> = consumed
                .iter()
                .filter(|c| &c.object == name && c.op != ChangeOp::Delete)
                .map(|c| c.id.clone())
                .collect();
            if !upserted.is_empty() {
                entries.push(Entry::Known {
                    object: name.clone(),
                    ids: upserted,
                    present: true,
                });
            }
            let deleted: Vec<&PendingChange> = consumed
                .iter()
                .filter(|c| &c.object == name && c.op == ChangeOp::Delete)
                .collect();
            if !deleted.is_empty() {
                entries.push(Entry::Known {
                    object: name.clone(),
                    ids: deleted.iter().map(|c| c.id.clone()).collect(),
                    present: false,
                });
            }
            if let Some(at) = deleted
                .iter()
                .filter(|c| c.from_deleted_list)
                .map(|c| c.modified)
                .max()
            {
                let at = state.deleted_watermark.map_or(at, |w| w.max(at));
                entries.push(Entry::DeletedWatermark {
                    object: name.clone(),
                    at,
                });
            }
        }
        journal.append(entries, true)
    })
}
