//! The applier's ladder and ordering, on the fault-injecting rig: a record
//! refused, a commit refused, a commit lost.

use tandem_connectors::faults::{Call, Fault};
use tandem_connectors::Value;

use crate::config::Side;
use crate::sync::rig::Rig;

fn names(rows: &[(String, Option<String>)]) -> Vec<&str> {
    rows.iter().map(|(name, _)| name.as_str()).collect()
}

#[tokio::test]
async fn a_refused_record_is_set_aside_and_the_rest_of_its_batch_lands() {
    let rig = Rig::new(&["Ann", "Bob", "Carol", "Dan", "Eve"], 50).await;
    // The target refuses Carol's row wherever it appears, batch or alone.
    rig.faults[Side::Target.index()].refuse_rows_with(Value::Text("Carol".into()));

    let report = rig.agent.run_once().await.expect("the pass goes on");

    assert_eq!(
        names(&rig.customers(Side::Target)),
        ["Ann", "Bob", "Dan", "Eve"],
        "the four others land, in spite of sharing a batch with Carol"
    );
    let letters = rig.agent.state.dead_letters().unwrap();
    assert_eq!(letters.len(), 1, "Carol is dead-lettered once");
    assert!(
        letters[0].reason.contains("injected fault"),
        "the reason is the target's: {}",
        letters[0].reason
    );
    assert_eq!(report.dead_letters, 1);
    assert!(!report.in_step());
    assert_eq!(
        rig.agent.state.log_len().unwrap(),
        0,
        "nothing left waiting"
    );
}

#[tokio::test]
async fn a_commit_refused_for_a_data_reason_has_each_record_tried_alone() {
    let rig = Rig::new(&["Ann", "Bob", "Cy"], 50).await;
    rig.agent.run_once().await.expect("first sync");
    rig.exec(
        Side::Source,
        "UPDATE customers SET email = lower(name) || '@new.example.com'",
    );
    let target = &rig.faults[Side::Target.index()];
    let commits = target.calls(Call::Commit);
    // A deferred check refuses the chunk's commit, once.
    target.fail_nth(Call::Commit, 1, Fault::Data);

    let report = rig.agent.run_once().await.expect("the pass goes on");

    assert!(
        report.in_step(),
        "nothing dead-lettered: each record alone passes"
    );
    assert!(
        target.calls(Call::Commit) - commits >= 4,
        "the refused commit, then one commit per record"
    );
    assert_eq!(rig.customers(Side::Target), rig.customers(Side::Source));
    assert!(rig.customers(Side::Target)[0]
        .1
        .as_deref()
        .is_some_and(|e| e.ends_with("@new.example.com")));
}

#[tokio::test]
async fn a_commit_lost_with_its_connection_keeps_every_change_and_applies_it_once() {
    let rig = Rig::new(&["Ann", "Bob", "Cy"], 50).await;
    rig.agent.run_once().await.expect("first sync");
    rig.exec(
        Side::Source,
        "INSERT INTO customers (name) VALUES ('Dee'), ('Eli');
         UPDATE customers SET email = 'ann@new.example.com' WHERE name = 'Ann'",
    );
    let target = &rig.faults[Side::Target.index()];
    target.fail_nth(Call::Commit, 1, Fault::Connection);

    let failed = rig.agent.run_once().await;

    assert!(
        failed.as_ref().is_err_and(|e| e.is_retryable()),
        "a lost connection is an error worth a retry"
    );
    assert_eq!(names(&rig.customers(Side::Target)), ["Ann", "Bob", "Cy"]);
    assert_eq!(
        rig.agent.state.log_len().unwrap(),
        3,
        "the three changes stay in the change log"
    );

    let report = rig.agent.run_once().await.expect("the retry");

    assert!(report.in_step());
    assert_eq!(
        rig.customers(Side::Target),
        rig.customers(Side::Source),
        "each change applied once: no copy twice, the update in place"
    );
    assert_eq!(rig.agent.state.links("customers").unwrap().len(), 5);
    assert_eq!(rig.agent.state.log_len().unwrap(), 0);
}

#[tokio::test]
async fn deletes_climb_the_same_ladder() {
    let rig = Rig::new(&["Ann", "Bob", "Cy", "Dee"], 50).await;
    rig.agent.run_once().await.expect("first sync");
    rig.exec(Side::Source, "DELETE FROM customers WHERE name <> 'Ann'");
    let target = &rig.faults[Side::Target.index()];
    let commits = target.calls(Call::Commit);
    target.fail_nth(Call::Commit, 1, Fault::Data);

    let report = rig.agent.run_once().await.expect("the pass goes on");

    assert!(report.in_step());
    assert_eq!(names(&rig.customers(Side::Target)), ["Ann"]);
    assert!(
        target.calls(Call::Commit) - commits >= 4,
        "the refused commit, then one per record"
    );
}
