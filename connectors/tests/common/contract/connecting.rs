//! Connecting, and what a failure says: its kind, and never a password.

use std::time::Instant;

use tandem_connectors::{connect, EndpointConfig, ErrorKind, Value};

use crate::common::*;

/// GIVEN a child table with a unique key, a foreign key, a NOT NULL
/// column, a bounded text and a small integer, THEN each violation is a
/// one-line data error naming the table, an unknown column and a table
/// dropped are schema errors naming them, a refused connection is a
/// connection error naming the address, and a wrong login a permission
/// error, neither showing the password.
pub async fn errors_have_the_right_kind<S: Server>() {
    let db = TestDb::<S>::with(&format!(
        "CREATE TABLE parent (id INT PRIMARY KEY);
         CREATE TABLE child (id INT PRIMARY KEY, parent INT, name {name} NOT NULL{check},
                             small {small}, FOREIGN KEY (parent) REFERENCES parent (id))",
        name = S::varchar(3),
        check = S::length_check("name", 3),
        small = S::SMALL_INT.0,
    ))
    .await;
    let connector = db.connector().await;
    let child = describe(&connector, "child").await;
    let check = |err: &tandem_connectors::ConnectorError, kind: ErrorKind, needles: &[&str]| {
        assert!(!err.to_string().contains('\n'), "{err}");
        assert_error(err, kind, needles);
    };
    let name = |v: &str| ("name", text(v));

    let mut tx = connector.begin().await.unwrap();
    tx.insert(&child, &row(&[("id", Value::Int(1)), name("a")]))
        .await
        .unwrap();
    tx.savepoint().await.unwrap();
    // a unique violation, a foreign key violation, NOT NULL, too long, too
    // big
    let mut bad_rows = vec![
        row(&[("id", Value::Int(1)), name("b")]),
        row(&[("id", Value::Int(2)), ("parent", Value::Int(7)), name("c")]),
        row(&[("id", Value::Int(3))]),
        row(&[("id", Value::Int(4)), name("toolong")]),
    ];
    if S::ENFORCES_WIDTHS {
        bad_rows.push(row(&[
            ("id", Value::Int(5)),
            name("d"),
            ("small", Value::Int(S::SMALL_INT.1)),
        ]));
    }
    for bad in bad_rows {
        let err = tx.insert(&child, &bad).await.unwrap_err();
        check(&err, ErrorKind::Data, &["child"]);
        tx.rollback_to_savepoint().await.unwrap();
    }
    let err = tx
        .insert(&child, &row(&[("nope", Value::Int(1))]))
        .await
        .unwrap_err();
    check(&err, ErrorKind::Schema, &["nope"]);
    tx.commit().await.unwrap();

    db.exec("DROP TABLE child").await;
    let err = connector
        .fetch_rows(&child, &[key(&[Value::Int(1)])])
        .await
        .unwrap_err();
    check(&err, ErrorKind::Schema, &["child"]);
    let err = connector.describe(&child.name).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Schema);

    if S::EMBEDDED {
        return;
    }
    // Nothing listens on port 1.
    let refused = db.url_with(|url| {
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(1)).unwrap();
        url.set_password(Some("hunter2")).unwrap();
        url.set_path("/x");
    });
    let err = db.connect_error(&refused).await;
    assert_eq!(err.kind(), ErrorKind::Connection);
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect to {} at 127.0.0.1:1: connection refused",
            S::NAME
        )
    );
    assert!(!format!("{err} {err:?}").contains("hunter2"), "{err:?}");

    if S::CHECKS_PASSWORDS {
        let denied = EndpointConfig {
            url: db.url_with(|url| {
                url.set_username("tandem_nobody").unwrap();
                url.set_password(Some("s3cret-pw")).unwrap();
            }),
            ..db.config()
        };
        let err = db.connect_error(&denied.url).await;
        assert_eq!(err.kind(), ErrorKind::Permission, "{err}");
        assert!(!format!("{err} {err:?}").contains("s3cret-pw"), "{err:?}");
        assert!(!format!("{denied:?}").contains("s3cret-pw"));
    }
}

/// GIVEN a URL with a wrong password and the right one in the
/// configuration (where the engine takes passwords at all), WHEN
/// connecting, THEN the configured one is used, and neither is shown.
pub async fn a_configured_password_wins_over_the_urls_and_is_never_shown<S: Server>() {
    let db = TestDb::<S>::create().await;
    let mut url = url::Url::parse(&db.url).unwrap();
    let right = percent_decode(url.password().unwrap_or(""));
    // An engine without logins takes any password, and ignores it.
    let password = match url.set_password(Some("s3cret-wrong")) {
        Ok(()) => right,
        Err(()) => "s3cret-pw".to_owned(),
    };
    let config = EndpointConfig {
        url: url.to_string(),
        password: Some(password.into()),
        ..db.config()
    };

    let connector = connect(&config).await.unwrap();

    assert_eq!(connector.engine(), S::ENGINE);
    assert!(!format!("{config:?}").contains("s3cret"), "{config:?}");
}

/// GIVEN an installed database and a connector polling every 50 ms, THEN
/// waiting for changes that never come returns well before its timeout.
pub async fn waiting_for_changes_never_outlasts_the_poll_interval_by_much<S: Server>() {
    let (db, _) = TestDb::<S>::installed().await;
    let connector = db
        .connector_with(|c| c.poll_interval = Duration::from_millis(50))
        .await;

    let started = Instant::now();
    connector.wait_for_changes(Duration::from_secs(60)).await;

    assert!(started.elapsed() < Duration::from_secs(30));
}
