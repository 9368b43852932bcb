//! Records the other side refuses: every kind of refusal a database makes,
//! in both directions. The refused record goes to the dead-letter list with
//! the database's reason, everything else keeps flowing, the record's later
//! changes wait behind it, and once the cause is fixed `dead-letters retry`
//! brings its latest values across.

mod harness;

use harness::{Agent, Db, Engine, ENGINE_PAIRS};

/// One way a record can be refused: a column `v` the target constrains
/// where the source does not.
struct Case {
    name: &'static str,
    /// `v` on the source.
    source_v: fn(Engine) -> &'static str,
    /// `v` on the target, with the constraint (the last column, so that a
    /// table constraint may follow it).
    target_v: fn(Engine) -> &'static str,
    /// SQL literals: one the target refuses, one it takes.
    bad: &'static str,
    good: &'static str,
    /// Words of the reason the dead-letter list must give.
    reason: &'static [&'static str],
    /// What the operator runs on the target to remove the cause.
    fix: fn(Engine, &str) -> String,
}

fn text(engine: Engine) -> &'static str {
    match engine {
        Engine::Mysql => "VARCHAR(50)",
        _ => "TEXT",
    }
}

fn retype(engine: Engine, table: &str, ty: &str) -> String {
    match engine {
        Engine::Mysql => format!("ALTER TABLE {table} MODIFY v {ty}"),
        _ => format!("ALTER TABLE {table} ALTER COLUMN v TYPE {ty}"),
    }
}

const CASES: &[Case] = &[
    Case {
        name: "unique",
        source_v: text,
        target_v: |e| match e {
            Engine::Mysql => "VARCHAR(50) UNIQUE",
            _ => "TEXT UNIQUE",
        },
        // `taken` is on the target before the first sync, which copies it.
        bad: "'taken'",
        good: "'free'",
        reason: &["duplicate", "taken"],
        fix: |e, t| match e {
            Engine::Mysql => format!("ALTER TABLE {t} DROP INDEX v"),
            _ => format!("ALTER TABLE {t} DROP CONSTRAINT {t}_v_key"),
        },
    },
    Case {
        name: "foreign_key",
        source_v: text,
        target_v: |e| match e {
            Engine::Mysql => "VARCHAR(50), FOREIGN KEY (v) REFERENCES parents (code)",
            _ => "TEXT, FOREIGN KEY (v) REFERENCES parents (code)",
        },
        bad: "'nobody'",
        good: "'known'",
        reason: &["foreign key"],
        fix: |_, _| "INSERT INTO parents (code) VALUES ('nobody')".to_owned(),
    },
    Case {
        name: "check",
        source_v: text,
        target_v: |e| match e {
            Engine::Mysql => "VARCHAR(50), CONSTRAINT check_v CHECK (v <> 'bad')",
            _ => "TEXT, CONSTRAINT check_v CHECK (v <> 'bad')",
        },
        bad: "'bad'",
        good: "'fine'",
        reason: &["check_v"],
        fix: |_, t| format!("ALTER TABLE {t} DROP CONSTRAINT check_v"),
    },
    Case {
        name: "not_null",
        source_v: text,
        target_v: |e| match e {
            Engine::Mysql => "VARCHAR(50) NOT NULL",
            _ => "TEXT NOT NULL",
        },
        bad: "NULL",
        good: "'set'",
        reason: &["null"],
        fix: |e, t| match e {
            Engine::Mysql => format!("ALTER TABLE {t} MODIFY v VARCHAR(50) NULL"),
            _ => format!("ALTER TABLE {t} ALTER COLUMN v DROP NOT NULL"),
        },
    },
    Case {
        name: "too_long",
        source_v: text,
        target_v: |_| "VARCHAR(5)",
        bad: "'far too long'",
        good: "'short'",
        reason: &["too long"],
        fix: |e, t| retype(e, t, "VARCHAR(50)"),
    },
    Case {
        name: "out_of_range",
        source_v: |_| "BIGINT",
        target_v: |_| "SMALLINT",
        bad: "100000",
        good: "7",
        reason: &["out of range"],
        fix: |e, t| retype(e, t, "BIGINT"),
    },
    // Last: the mapping that makes text go to a date column is appended to
    // the config, and so belongs to the last pair.
    Case {
        name: "unconvertible",
        source_v: text,
        target_v: |_| "DATE",
        bad: "'someday'",
        good: "'2024-01-02'",
        reason: &["someday"],
        fix: |e, t| retype(e, t, text(e)),
    },
];

/// The case's records on `db` that the test wrote: (tag, v, n), sorted.
async fn records(db: &Db, table: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = db
        .rows(&format!(
            "SELECT tag, v, n FROM {table} WHERE tag IS NOT NULL"
        ))
        .await;
    rows.sort();
    rows
}

fn row(tag: &str, v: &str, n: i64) -> Vec<Option<String>> {
    let v = match v {
        "NULL" => None,
        quoted => Some(quoted.trim_matches('\'').to_owned()),
    };
    vec![Some(tag.to_owned()), v, Some(n.to_string())]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_refused_record_waits_in_dead_letters_until_retried() {
    for (source_engine, target_engine) in ENGINE_PAIRS {
        let source = Db::create(source_engine).await;
        let target = Db::create(target_engine).await;
        let direction = format!("{source_engine:?} -> {target_engine:?}");
        target
            .exec(&format!(
                "CREATE TABLE parents (code {} PRIMARY KEY)",
                text(target_engine)
            ))
            .await;
        target
            .exec("INSERT INTO parents (code) VALUES ('known')")
            .await;
        let mut pairs = Vec::new();
        for case in CASES {
            let table = format!("t_{}", case.name);
            for (db, v) in [
                (&source, (case.source_v)(source_engine)),
                (&target, (case.target_v)(target_engine)),
            ] {
                db.exec(&format!(
                    "CREATE TABLE {table} (id {}, tag {}, n BIGINT, v {v})",
                    db.id(),
                    text(db.engine)
                ))
                .await;
            }
            pairs.push(table);
        }
        target
            .exec("INSERT INTO t_unique (v, n) VALUES ('taken', 0)")
            .await;
        let pair_refs: Vec<(&str, &str)> = pairs.iter().map(|t| (t.as_str(), t.as_str())).collect();
        // Text is not mapped to a date column unless the mapping says so
        // (the last pair is the unconvertible case's).
        let agent = Agent::new(
            &source,
            &target,
            &pair_refs,
            "[tables.to_target.columns]\nv = \"v\"\n",
        );
        agent.install().await;
        agent.once().await;

        // GIVEN one record each table's target refuses, next to one it takes
        for case in CASES {
            source
                .exec(&format!(
                    "INSERT INTO t_{} (tag, v, n) VALUES ('bad', {}, 1), ('good', {}, 1)",
                    case.name, case.bad, case.good
                ))
                .await;
        }
        let out = agent.output(&["run", "--once"]).await;

        // THEN the run says the sides are not in step, every good record
        // arrived, and every bad one is listed with the database's reason
        assert_eq!(
            out.status.code(),
            Some(3),
            "{direction}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = agent.ok(&["dead-letters", "list"]).await;
        for case in CASES {
            let table = format!("t_{}", case.name);
            assert_eq!(
                records(&target, &table).await,
                vec![row("good", case.good, 1)],
                "{direction}: {}",
                case.name
            );
            let line = listed
                .lines()
                .find(|l| l.starts_with(&format!("{table} source key")))
                .unwrap_or_else(|| panic!("{direction}: {table} not dead-lettered:\n{listed}"));
            // The reason, without the table's name (which names the case).
            let reason = line
                .split_once("UTC): ")
                .map_or(line, |(_, reason)| reason)
                .replace(&table, "")
                .to_lowercase();
            for word in case.reason {
                assert!(
                    reason.contains(word),
                    "{direction}: {}: the reason lacks {word:?}: {line}",
                    case.name
                );
            }
        }
        assert_eq!(listed.lines().count(), CASES.len(), "{listed}");

        // WHEN both records change again, THEN the good one's change arrives
        // and the bad one's waits behind its dead letter, never applied
        // before it
        for case in CASES {
            source
                .exec(&format!("UPDATE t_{} SET n = 2", case.name))
                .await;
        }
        assert_eq!(
            agent.output(&["run", "--once"]).await.status.code(),
            Some(3)
        );
        let listed = agent.ok(&["dead-letters", "list"]).await;
        for case in CASES {
            let table = format!("t_{}", case.name);
            assert_eq!(
                records(&target, &table).await,
                vec![row("good", case.good, 2)],
                "{direction}: {}",
                case.name
            );
            assert!(
                listed
                    .lines()
                    .any(|l| l.starts_with(&format!("{table} source key"))
                        && l.contains("2 change(s)")),
                "{direction}: {table}:\n{listed}"
            );
        }

        // WHEN the causes are fixed and the records retried, THEN each
        // arrives with its latest values and the list is empty
        for case in CASES {
            target
                .exec(&(case.fix)(target_engine, &format!("t_{}", case.name)))
                .await;
        }
        agent.ok(&["dead-letters", "retry"]).await;
        agent.once().await;
        for case in CASES {
            assert_eq!(
                records(&target, &format!("t_{}", case.name)).await,
                vec![row("bad", case.bad, 2), row("good", case.good, 2)],
                "{direction}: {}",
                case.name
            );
        }
        assert!(
            agent
                .ok(&["dead-letters", "list"])
                .await
                .contains("no dead letters"),
            "{direction}"
        );
    }
}
