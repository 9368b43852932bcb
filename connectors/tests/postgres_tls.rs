//! TLS to the local PostgreSQL server, with a certificate made for the test.
//!
//! The test makes a throw-away CA and a server certificate for `localhost`,
//! `127.0.0.1` and `::1` (rcgen), writes them into the server's data
//! directory (owned by the server's user, the key mode 0600), points the
//! server at them (`ALTER SYSTEM SET ssl_cert_file, ssl_key_file, ssl = on`,
//! `pg_reload_conf()`), and connects through the connector with
//! `tls = "verify-full"` and the CA file. A guard puts the server's settings
//! back and removes the files when the test ends, failed or not.
//!
//! Other tests keep running against the same server meanwhile: turning TLS
//! on leaves plain connections allowed (the default `pg_hba.conf` has `host`
//! lines, which take both), and swapping the certificate only changes what
//! new TLS sessions see. Runs of this test from other checkouts wait for
//! each other on an advisory lock.
//!
//! It needs a superuser (`ALTER SYSTEM`) and the server's data directory on
//! this machine, writable by the test; without them it is skipped with a
//! visible message. The admin URL is `TANDEM_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tandem_connectors::{connect, EndpointConfig, Engine, ErrorKind, TlsConfig, TlsMode};
use tokio_postgres::NoTls;

/// Serialises runs of this test across checkouts sharing the server.
const ADVISORY_LOCK: i64 = 0x7461_6e64_656d_746c; // "tandemtl"

/// The settings the test changes, put back by [`Restore`].
const SETTINGS: [&str; 3] = ["ssl_cert_file", "ssl_key_file", "ssl"];

fn admin_url() -> String {
    std::env::var("TANDEM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn plain_client(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A CA (its PEM certificate and the issuer that signs with it).
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

/// A server certificate for this machine's names, signed by `issuer`: the
/// certificate and key, PEM.
fn new_server_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let mut params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, issuer).expect("server certificate");
    (cert.pem(), key.serialize_pem())
}

/// What a setting was before the test, to put it back: `Some(value)` when
/// it came from `ALTER SYSTEM` (postgresql.auto.conf), `None` when `ALTER
/// SYSTEM RESET` restores it.
type Saved = Vec<(&'static str, Option<String>)>;

async fn save_settings(admin: &tokio_postgres::Client) -> Saved {
    let mut saved = Vec::new();
    for name in SETTINGS {
        let row = admin
            .query_one(
                "SELECT setting, coalesce(sourcefile, '') FROM pg_settings WHERE name = $1",
                &[&name],
            )
            .await
            .expect("read pg_settings");
        let setting: String = row.get(0);
        let file: String = row.get(1);
        saved.push((
            name,
            file.ends_with("postgresql.auto.conf").then_some(setting),
        ));
    }
    saved
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Reloads the configuration and waits until new sessions see
/// `ssl_cert_file = expected`.
async fn reload_and_wait(url: &str, expected: &str) -> Result<(), String> {
    let admin = plain_client(url).await.map_err(|e| e.to_string())?;
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let fresh = plain_client(url).await.map_err(|e| e.to_string())?;
        let row = fresh
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .map_err(|e| e.to_string())?;
        if row.get::<_, String>(0) == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server did not reload (ssl_cert_file is not {expected})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts the server's TLS settings back and removes the test's files, when
/// dropped (a failed test included).
struct Restore {
    url: String,
    saved: Saved,
    files: Vec<PathBuf>,
}

impl Restore {
    async fn restore(url: String, saved: Saved, files: Vec<PathBuf>) -> Result<(), String> {
        let admin = plain_client(&url).await.map_err(|e| e.to_string())?;
        for (name, value) in &saved {
            let sql = match value {
                Some(value) => format!("ALTER SYSTEM SET {name} = {}", quote(value)),
                None => format!("ALTER SYSTEM RESET {name}"),
            };
            admin.batch_execute(&sql).await.map_err(|e| e.to_string())?;
        }
        // The file the server falls back to, once it has reloaded.
        let row = admin
            .query_one(
                "SELECT coalesce((SELECT setting FROM pg_file_settings \
                 WHERE name = 'ssl_cert_file' AND applied ORDER BY seqno DESC LIMIT 1), \
                 (SELECT boot_val FROM pg_settings WHERE name = 'ssl_cert_file'))",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let expected: String = row.get(0);
        let reloaded = reload_and_wait(&url, &expected).await;
        // Only once the server no longer names them.
        if reloaded.is_ok() {
            for file in &files {
                let _ = if file.is_dir() {
                    std::fs::remove_dir_all(file)
                } else {
                    std::fs::remove_file(file)
                };
            }
        }
        reloaded
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let (url, saved, files) = (
            self.url.clone(),
            std::mem::take(&mut self.saved),
            std::mem::take(&mut self.files),
        );
        // Its own thread and runtime: the test's runtime may be gone or busy.
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(Restore::restore(url, saved, files))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("postgres_tls: could not restore the server's TLS settings: {e}")
            }
            Err(_) => eprintln!("postgres_tls: restoring the server's TLS settings panicked"),
        }
    }
}

/// Writes `contents` to `path` owned like `owner_of` (the data directory),
/// with `mode`.
fn write_owned(path: &Path, contents: &str, mode: u32, owner_of: &Path) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let owner = std::fs::metadata(owner_of).expect("data directory metadata");
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// The URL the connector uses: the admin URL, its sessions named `app`.
fn connector_url(app: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("admin URL");
    url.query_pairs_mut().append_pair("application_name", app);
    url.to_string()
}

fn endpoint(url: &str, tls: TlsConfig) -> EndpointConfig {
    EndpointConfig {
        engine: Engine::Postgres,
        url: url.to_owned(),
        password: None,
        poll_interval: Duration::from_millis(100),
        max_connections: 2,
        tls,
        http: None,
    }
}

/// `(ssl, TLS version)` of every session named `app`, once there are at
/// least `sessions` of them.
async fn sessions_of(
    admin: &tokio_postgres::Client,
    app: &str,
    sessions: usize,
) -> Vec<(bool, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = admin
            .query(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s \
                 JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = $1",
                &[&app],
            )
            .await
            .expect("read pg_stat_ssl");
        if rows.len() >= sessions || Instant::now() > deadline {
            return rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_with_the_ca_file_encrypts_and_a_wrong_ca_is_refused() {
    let url = admin_url();
    let admin = plain_client(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
    let row = admin
        .query_one(
            "SELECT current_setting('data_directory'), \
             (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
            &[],
        )
        .await
        .expect("read the data directory");
    let data_dir = PathBuf::from(row.get::<_, String>(0));
    let superuser: bool = row.get(1);
    let writable =
        std::fs::metadata(&data_dir).is_ok_and(|m| m.is_dir()) && tempfile_in(&data_dir).is_ok();
    if !superuser || !writable {
        eprintln!(
            "SKIPPED verify_full_with_the_ca_file_encrypts_and_a_wrong_ca_is_refused: \
             needs a superuser and the server's data directory ({}) writable here",
            data_dir.display()
        );
        return;
    }
    // One run at a time on this server; released when `admin` closes.
    admin
        .batch_execute(&format!("SELECT pg_advisory_lock({ADVISORY_LOCK})"))
        .await
        .expect("advisory lock");

    // GIVEN a CA, a server certificate it signed, and an unrelated CA
    let (ca_pem, issuer) = new_ca("Tandem test CA");
    let (cert_pem, key_pem) = new_server_cert(&issuer);
    let (wrong_ca_pem, _) = new_ca("Tandem unrelated CA");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let cert_file = data_dir.join(format!("tandem-test-{tag}.crt"));
    let key_file = data_dir.join(format!("tandem-test-{tag}.key"));
    let client_dir = std::env::temp_dir().join(format!("tandem-tls-{tag}"));
    std::fs::create_dir_all(&client_dir).expect("temp dir");
    let ca_file = client_dir.join("ca.pem");
    let wrong_ca_file = client_dir.join("wrong-ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("write CA");
    std::fs::write(&wrong_ca_file, &wrong_ca_pem).expect("write wrong CA");

    // AND the server using the certificate (put back however the test ends)
    let _restore = Restore {
        url: url.clone(),
        saved: save_settings(&admin).await,
        files: vec![cert_file.clone(), key_file.clone(), client_dir.clone()],
    };
    write_owned(&cert_file, &cert_pem, 0o644, &data_dir);
    write_owned(&key_file, &key_pem, 0o600, &data_dir);
    let cert_path = cert_file.display().to_string();
    // One statement each: ALTER SYSTEM refuses to run in a transaction.
    for sql in [
        format!("ALTER SYSTEM SET ssl_cert_file = {}", quote(&cert_path)),
        format!(
            "ALTER SYSTEM SET ssl_key_file = {}",
            quote(&key_file.display().to_string())
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        admin.batch_execute(&sql).await.expect("ALTER SYSTEM");
    }
    reload_and_wait(&url, &cert_path)
        .await
        .expect("the server reloads");

    // WHEN the connector connects with tls = "verify-full" and the CA file
    let app = format!("tandem_tls_{tag}");
    let verified = connect(&endpoint(
        &connector_url(&app),
        TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some(ca_file.clone()),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("verify-full with the right CA: {e}"));
    // (its LISTEN connection too)
    verified.wait_for_changes(Duration::from_millis(200)).await;

    // THEN every session it opened is encrypted
    let sessions = sessions_of(&admin, &app, 2).await;
    assert!(
        sessions.len() >= 2,
        "pool and LISTEN sessions: {sessions:?}"
    );
    assert!(
        sessions
            .iter()
            .all(|(ssl, version)| *ssl && version.is_some()),
        "{sessions:?}"
    );
    drop(verified);

    // AND a plain session still gets in (other tests rely on it)
    let plain = plain_client(&url).await.expect("plain connection");
    let ssl: bool = plain
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(!ssl);

    // AND tls = "require" encrypts without a CA, "disable" does not
    for (mode, encrypted) in [(TlsMode::Require, true), (TlsMode::Disable, false)] {
        let app = format!("tandem_tls_{mode}_{tag}").replace('-', "_");
        let connector = connect(&endpoint(
            &connector_url(&app),
            TlsConfig {
                mode,
                ca_file: None,
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("tls = {mode}: {e}"));
        let sessions = sessions_of(&admin, &app, 1).await;
        assert!(
            !sessions.is_empty() && sessions.iter().all(|(ssl, _)| *ssl == encrypted),
            "tls = {mode}: {sessions:?}"
        );
        drop(connector);
    }

    // AND a CA that did not sign the certificate is refused, in one line
    let err = connect(&endpoint(
        &connector_url(&app),
        TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_file: Some(wrong_ca_file.clone()),
        },
    ))
    .await
    .err()
    .expect("verify-full with a CA that did not sign the server's certificate");
    let message = err.to_string();
    eprintln!("refused as expected: {message}");
    assert_eq!(err.kind(), ErrorKind::Connection, "{message}");
    assert!(
        message.starts_with("cannot connect to PostgreSQL at ") && message.contains("TLS"),
        "{message}"
    );
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// A file created and removed in `dir`, to see whether the test may write
/// there.
fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!("tandem-probe-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
