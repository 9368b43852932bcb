//! The state, tested on the in-memory store and on sled in a temporary
//! directory.

use super::*;
use chrono::Utc;
use tandem_connectors::{Row, Value};

fn key(i: i64) -> Key {
    Key(vec![Value::Int(i)])
}

#[test]
fn log_keeps_order_and_removes_by_identity() {
    let state = State::in_memory();
    let entry = |i| NewEntry {
        side: Side::Source,
        pair: "p".into(),
        key: key(i),
        row: None,
        captured_at: Utc::now(),
    };
    state
        .append_log(vec![entry(1), entry(2), entry(3)])
        .unwrap();
    let entries = state.log_entries(10).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        [key(1), key(2), key(3)]
    );
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let mut batch = StateBatch::default();
    batch.remove_log([entries[1].seq]);
    state.commit(batch, true).unwrap();
    assert_eq!(state.log_len().unwrap(), 2);
    assert!(state.log_position().unwrap() > entries[2].seq);
}

#[test]
fn links_are_found_from_both_sides_and_only_exactly() {
    let state = State::in_memory();
    let mut link = Link::new(key(1), key(100));
    let mut batch = StateBatch::default();
    batch.put_link("p", &link);
    state.commit(batch, false).unwrap();
    assert_eq!(
        state
            .link("p", Side::Target, &key(100))
            .unwrap()
            .unwrap()
            .source_key,
        key(1)
    );
    assert!(state.link("q", Side::Source, &key(1)).unwrap().is_none());
    // Re-created under a new target key: the old target key finds nothing.
    link.target_key = key(200);
    let mut batch = StateBatch::default();
    batch.put_link("p", &link);
    state.commit(batch, false).unwrap();
    assert!(state.link("p", Side::Target, &key(100)).unwrap().is_none());
    assert_eq!(state.links("p").unwrap().len(), 1);
    // A tombstone is found until purged.
    link.deleted = true;
    let mut batch = StateBatch::default();
    batch.put_link("p", &link);
    state.commit(batch, false).unwrap();
    assert!(
        state
            .link("p", Side::Target, &key(200))
            .unwrap()
            .unwrap()
            .deleted
    );
    assert_eq!(state.purge_tombstones().unwrap(), 1);
    assert!(state.link("p", Side::Source, &key(1)).unwrap().is_none());
    assert!(state.link("p", Side::Target, &key(200)).unwrap().is_none());
}

#[test]
fn links_round_trip_in_binary_and_earlier_json_still_reads() {
    let mut link = Link::new(
        Key(vec![Value::Int(7), Value::Text("é\u{0}x".into())]),
        key(-3),
    );
    let plain = encode_link(&link);
    assert_eq!(decode_link(b"k", &plain).unwrap(), link);
    link.synced = [Some(Fingerprint([1; 16])), None];
    link.pending = [None, Some(Fingerprint([2; 16]))];
    link.written_at = [u64::MAX, 42];
    link.deleted = true;
    let full = encode_link(&link);
    assert_eq!(decode_link(b"k", &full).unwrap(), link);
    assert!(full.len() < serde_json::to_vec(&link).unwrap().len() / 2);
    // A state directory written by an earlier release holds JSON.
    let json = serde_json::to_vec(&link).unwrap();
    assert_eq!(decode_link(b"k", &json).unwrap(), link);
    // Damage is reported, not read as something else.
    for cut in [1, 5, full.len() - 1] {
        let err = decode_link(b"k", &full[..cut]).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}

#[test]
fn links_are_complete_only_between_the_writes_that_say_so() {
    let state = State::in_memory();
    assert!(
        !state.links_complete().unwrap(),
        "a new state knows no links"
    );
    let mut batch = StateBatch::default();
    batch.mark_links_complete();
    state.commit(batch, true).unwrap();
    assert!(state.links_complete().unwrap());
    state.expect_unrecorded_links().unwrap();
    assert!(!state.links_complete().unwrap());
    state.expect_unrecorded_links().unwrap();
    assert!(!state.links_complete().unwrap());
}

#[test]
fn a_link_that_came_back_to_life_survives_the_purge() {
    let state = State::in_memory();
    let mut link = Link::new(key(1), key(100));
    link.deleted = true;
    let mut batch = StateBatch::default();
    batch.put_link("p", &link);
    state.commit(batch, false).unwrap();
    // Copied again: the tombstone index still names it.
    let mut revived = Link::new(key(1), key(100));
    revived.synced[0] = Some(Fingerprint([7; 16]));
    let mut batch = StateBatch::default();
    batch.update_link("p", &link, &revived);
    state.commit(batch, false).unwrap();
    assert_eq!(state.purge_tombstones().unwrap(), 0);
    assert_eq!(
        state.link("p", Side::Target, &key(100)).unwrap(),
        Some(revived.clone())
    );
    // An update that keeps the keys rewrites the record only, and both
    // lookups see it.
    let mut updated = revived.clone();
    updated.synced[1] = Some(Fingerprint([9; 16]));
    let mut batch = StateBatch::default();
    batch.update_link("p", &revived, &updated);
    state.commit(batch, false).unwrap();
    assert_eq!(
        state.link("p", Side::Source, &key(1)).unwrap(),
        Some(updated.clone())
    );
    assert_eq!(
        state.link("p", Side::Target, &key(100)).unwrap(),
        Some(updated)
    );
}

#[test]
fn unknown_fingerprints_count_as_unchanged() {
    let row: Row = [("a".to_owned(), Value::Int(1))].into();
    let other: Row = [("a".to_owned(), Value::Int(2))].into();
    let mut link = Link::new(key(1), key(2));
    assert!(link.unchanged(Side::Target, &Fingerprint::of(&row)));
    assert!(!link.matches(Side::Target, &Fingerprint::of(&row)));
    link.synced[1] = Some(Fingerprint::of(&row));
    assert!(!link.unchanged(Side::Target, &Fingerprint::of(&other)));
    link.pending[1] = Some(Fingerprint::of(&other));
    assert!(link.unchanged(Side::Target, &Fingerprint::of(&other)));
}

/// `result` is the refusal of a record of format `FORMAT_VERSION + 1`,
/// named, in one line that says what to do.
fn assert_newer<T: std::fmt::Debug>(result: StoreResult<T>, record: &str, dir: &Path) {
    let err = result.expect_err(record);
    let newer = FORMAT_VERSION + 1;
    assert!(
        matches!(&err, StoreError::NewerFormat { record: r, found, known, .. }
            if *r == record && *found == newer && *known == FORMAT_VERSION),
        "{err:?}"
    );
    let message = err.to_string();
    for needle in [
        &format!(
            "state directory {}: {record} is in format {newer}",
            dir.display()
        ),
        "written by a newer tandem-agent",
        &format!("this build reads formats up to {FORMAT_VERSION}"),
        "upgrade tandem-agent",
        "`tandem-agent rebuild-state`",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    assert!(!message.contains('\n'), "{message}");
    // Only an operator can do what it says: never retried.
    assert!(!crate::sync::SyncError::from(err).is_retryable());
}

#[test]
fn records_of_a_newer_format_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let newer = FORMAT_VERSION + 1;
    {
        let state = State::open(dir.path()).unwrap();
        let mut link = Link::new(key(1), key(2));
        link.v = newer;
        let mut batch = StateBatch::default();
        batch.put_link("p", &link);
        batch.put_dead_letter(&DeadLetter {
            v: newer,
            side: Side::Source,
            pair: "p".into(),
            key: key(3),
            row: None,
            reason: "refused".into(),
            failed_at: Utc::now(),
            changes: 1,
        });
        batch.put_checkpoint(
            "p/source",
            &CopyCheckpoint {
                v: newer,
                after: None,
                done: false,
            },
        );
        batch.put_stats(
            "p",
            &PairStats {
                v: newer,
                ..PairStats::default()
            },
        );
        batch.put_in_flight(&InFlight {
            v: newer,
            pair: "p".into(),
            dest: Side::Target,
            link: Link::new(key(4), key(5)),
            replaces: None,
        });
        batch.put_pending_updates(
            7,
            &PendingUpdates {
                v: newer,
                pair: "p".into(),
                dest: Side::Target,
                updates: Vec::new(),
            },
        );
        // A change-log entry as a newer release would append it.
        let entry = LogEntry {
            v: newer,
            seq: 1,
            side: Side::Source,
            pair: "p".into(),
            key: key(6),
            row: None,
            captured_at: Utc::now(),
        };
        batch.batch.put(log_key(1), encode(&entry));
        state.commit(batch, true).unwrap();
    }

    // WHEN this build reads them from the store on disk
    let state = State::open(dir.path()).unwrap();
    let at = dir.path();
    assert_newer(state.link("p", Side::Source, &key(1)), "a link", at);
    assert_newer(state.link("p", Side::Target, &key(2)), "a link", at);
    assert_newer(state.links("p"), "a link", at);
    assert_newer(
        state.dead_letter(Side::Source, "p", &key(3)),
        "a dead letter",
        at,
    );
    assert_newer(state.dead_letters(), "a dead letter", at);
    assert_newer(state.checkpoint("p/source"), "a first-sync checkpoint", at);
    assert_newer(state.stats("p"), "a pair's figures", at);
    assert_newer(state.in_flight(), "an in-flight copy", at);
    assert_newer(state.pending_updates(), "a record of pending updates", at);
    assert_newer(state.log_entries(10), "a change-log entry", at);
    assert_newer(state.log_counts(), "a change-log entry", at);
}

#[test]
fn a_newer_record_of_another_shape_is_refused_as_newer_not_as_damage() {
    let state = State::in_memory();
    let newer = FORMAT_VERSION + 1;
    let mut batch = Batch::default();
    // Fields renamed, another added: the version still says what it is.
    batch.put(
        dead_letter_key(Side::Source, "p", &key(1)),
        format!(r#"{{"v":{newer},"origin":"source","values":{{}}}}"#).into_bytes(),
    );
    // A binary link whose layout after the version changed.
    batch.put(
        pair_key(LINK_BY_SOURCE, "p", &key(2).encode()),
        vec![LINK_BINARY, newer, 0xff],
    );
    state.kv.apply(batch).unwrap();
    let dir = Path::new("(in memory)");
    assert_newer(state.dead_letters(), "a dead letter", dir);
    assert_newer(state.links("p"), "a link", dir);
}

#[test]
fn a_format_no_release_writes_is_damage() {
    let state = State::in_memory();
    let mut link = Link::new(key(1), key(2));
    link.v = 0;
    let mut batch = StateBatch::default();
    batch.put_link("p", &link);
    state.commit(batch, false).unwrap();
    let err = state.links("p").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnknownFormat {
                found: 0,
                oldest: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("a link is in format 0, which no tandem-agent writes"),
        "{message}"
    );
    assert!(message.contains("rebuild-state"), "{message}");
}

#[test]
fn a_store_marked_by_a_newer_release_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let state = State::open(dir.path()).unwrap();
        assert_eq!(
            state.kv.get(STORE_FORMAT).unwrap(),
            Some(vec![FORMAT_VERSION]),
            "a new store is marked with this build's format"
        );
        let mut batch = Batch::default();
        batch.put(STORE_FORMAT.to_vec(), vec![FORMAT_VERSION + 1]);
        state.kv.apply(batch).unwrap();
        state.kv.flush().unwrap();
    }
    let err = State::open(dir.path()).err().expect("a newer store opens");
    assert_newer(Err::<(), _>(err), "the store", dir.path());
    // Refused, it is left as it was.
    let kv = SledKv::open(dir.path()).unwrap();
    assert_eq!(
        kv.get(STORE_FORMAT).unwrap(),
        Some(vec![FORMAT_VERSION + 1])
    );
}

#[test]
fn a_store_of_an_earlier_release_still_reads_and_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let link = Link::new(key(1), key(2));
    {
        // What a release before the marker left: a link in JSON and
        // figures without a version.
        let kv = SledKv::open(dir.path()).unwrap();
        let mut batch = Batch::default();
        batch.put(
            pair_key(LINK_BY_SOURCE, "p", &key(1).encode()),
            serde_json::to_vec(&link).unwrap(),
        );
        batch.put(
            pair_key(STATS, "p", ""),
            br#"{"applied":[{"inserted":3,"updated":0,"deleted":0},{"inserted":0,"updated":0,"deleted":0}],"conflicts":0,"last_sync":null,"last_lag_ms":null}"#.to_vec(),
        );
        kv.apply(batch).unwrap();
        kv.flush().unwrap();
    }
    let state = State::open(dir.path()).unwrap();
    assert_eq!(state.links("p").unwrap(), [link]);
    let stats = state.stats("p").unwrap();
    assert_eq!((stats.v, stats.applied[0].inserted), (0, 3));
    assert_eq!(
        state.kv.get(STORE_FORMAT).unwrap(),
        Some(vec![FORMAT_VERSION])
    );
    // Figures first recorded by this build carry its format.
    assert_eq!(state.stats("q").unwrap().v, FORMAT_VERSION);
}
