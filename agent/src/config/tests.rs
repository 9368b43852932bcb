use std::time::Duration;

use super::*;
use tandem_connectors::{Engine, ExposeSecret, TlsMode};

const GOOD: &str = r#"
state_dir = "state"
[source]
kind = "postgres"
url = "postgres://tandem:secret@127.0.0.1:5432/crm"
[target]
kind = "mysql"
url = "mysql://root@127.0.0.1:3306/shop"
poll_interval = "100ms"
[[tables]]
source = "customers"
target = "clients"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/tandem/crm.toml"), text)
}

/// The endpoint's separate password, read.
fn password(endpoint: &EndpointConfig) -> Option<&str> {
    endpoint.password.as_ref().map(ExposeSecret::expose_secret)
}

#[test]
fn reads_a_minimal_config() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.state_dir, Path::new("/etc/tandem/state"));
    assert_eq!(config.tables[0].name, "customers");
    assert_eq!(
        config.endpoint(Side::Target).poll_interval,
        Duration::from_millis(100)
    );
    assert_eq!(
        config.endpoint(Side::Source).poll_interval,
        Engine::Postgres.default_poll_interval()
    );
    assert_eq!(config.conflict, ConflictPolicy::SourceWins);
}

#[test]
fn sqlite_files_are_relative_to_the_config() {
    let text = GOOD.replace(
        "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
        "kind = \"sqlite\"\nurl = \"sqlite://data/shop.db\"",
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.endpoint(Side::Target).url,
        "sqlite:///etc/tandem/data/shop.db"
    );
    let absolute = text.replace("sqlite://data/shop.db", "sqlite:///var/lib/shop.db");
    assert_eq!(
        parse(&absolute).unwrap().endpoint(Side::Target).url,
        "sqlite:///var/lib/shop.db"
    );
}

#[test]
fn unknown_keys_name_the_line() {
    let err = parse(&GOOD.replace("poll_interval", "poll_intervall"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/etc/tandem/crm.toml: line 9: unknown field `poll_intervall`"),
        "{err}"
    );
}

#[test]
fn bad_values_name_the_field() {
    let cases = [
        (
            GOOD.replace("\"100ms\"", "\"soon\""),
            "target.poll_interval: \"soon\"",
        ),
        (
            GOOD.replace("kind = \"mysql\"", "kind = \"oracle\""),
            "target.kind: unknown kind \"oracle\"",
        ),
        (GOOD.replace("mysql://root", "http://root"), "target.url:"),
        (
            GOOD.replace(
                "[[tables]]\nsource = \"customers\"\ntarget = \"clients\"",
                "",
            ),
            "tables: no table pair",
        ),
        (
            format!(
                "{GOOD}[[tables]]\nname = \"customers\"\nsource = \"orders\"\ntarget = \"x\"\n"
            ),
            "tables[1].name: pair name \"customers\" is used twice",
        ),
        (
            GOOD.replace("state_dir = \"state\"", ""),
            "missing field `state_dir`",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn every_problem_of_the_file_is_reported_each_on_a_line() {
    // Values: each one named.
    let text = GOOD
        .replace("\"100ms\"", "\"soon\"")
        .replace("kind = \"postgres\"", "kind = \"oracle\"")
        .replace(
            "target = \"clients\"",
            "target = \"clients\"\n[sync]\nbatch_size = 0",
        );
    let err = parse(&text).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains("source.kind: unknown kind \"oracle\""),
        "{err}"
    );
    assert!(lines[1].contains("target.poll_interval: \"soon\""), "{err}");
    assert!(
        lines[2].contains("sync.batch_size: must be at least 1"),
        "{err}"
    );
    // Unknown keys: the first with its line, the other sections' too.
    let text = GOOD.replace("poll_interval", "poll_intervall").replace(
        "target = \"clients\"",
        "target = \"clients\"\nmatch_on = [\"email\"]",
    );
    let err = parse(&text).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("/etc/tandem/crm.toml: line 9: unknown field `poll_intervall`"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("/etc/tandem/crm.toml: line 13: unknown field `match_on`"),
        "{err}"
    );
    // A section missing and a section's key missing are two problems;
    // a section's value and another's key too.
    let text = GOOD
        .replace("[source]\nkind = \"postgres\"\nurl = \"postgres://tandem:secret@127.0.0.1:5432/crm\"\n", "")
        .replace("source = \"customers\"\n", "")
        .replace("\"100ms\"", "\"soon\"");
    let err = parse(&text).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].ends_with(": missing field `source`"), "{err}");
    assert!(
        lines[1].contains("line 7: tables[0]: missing field `source`"),
        "{err}"
    );
    assert!(lines[2].contains("target.poll_interval: \"soon\""), "{err}");
    // A pair may name its source table only.
    let config = parse(&GOOD.replace("target = \"clients\"\n", "")).unwrap();
    assert_eq!(config.tables[0].target, None);
    assert_eq!(config.tables[0].table(Side::Target), "customers");
    let schema = parse(&GOOD.replace(
        "source = \"customers\"\ntarget = \"clients\"\n",
        "source = \"sales.customers\"\n",
    ));
    assert_eq!(schema.unwrap().tables[0].table(Side::Target), "customers");
    // Names as written, when asked.
    let exact = format!("{GOOD}[sync]\nnames = \"exact\"\n");
    assert_eq!(parse(&exact).unwrap().names, NameMatching::Exact);
    assert_eq!(parse(GOOD).unwrap().names, NameMatching::Fold);
}

/// GOOD with the source endpoint's lines replaced by `source`.
fn with_source(source: &str) -> String {
    GOOD.replace(
        "kind = \"postgres\"\nurl = \"postgres://tandem:secret@127.0.0.1:5432/crm\"",
        source,
    )
}

#[test]
fn env_references_in_the_url_become_the_separate_password() {
    std::env::set_var("TANDEM_TEST_CFG_URL_PW", "from-env p@ss");
    let text = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem:${TANDEM_TEST_CFG_URL_PW}@db.example:5432/crm\"",
    );
    let config = parse(&text).unwrap();
    let source = config.endpoint(Side::Source);
    assert_eq!(password(source), Some("from-env p@ss"));
    assert_eq!(source.url, "postgres://tandem@db.example:5432/crm");
    assert!(!format!("{config:?}").contains("from-env"));
    // A reference to a variable that is not set names it, not a value.
    let err = parse(&text.replace("TANDEM_TEST_CFG_URL_PW", "TANDEM_TEST_CFG_UNSET"))
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("source.url: environment variable TANDEM_TEST_CFG_UNSET is not set"),
        "{err}"
    );
    // Half a reference is an error, not a password.
    let err = parse(&text.replace("${TANDEM_TEST_CFG_URL_PW}", "x${Y}"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source.url: password: write an environment variable"),
        "{err}"
    );
}

#[test]
fn the_password_key_takes_a_reference_or_a_literal() {
    std::env::set_var("TANDEM_TEST_CFG_KEY_PW", "key-secret");
    let text = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword = \"${TANDEM_TEST_CFG_KEY_PW}\"",
    );
    let config = parse(&text).unwrap();
    assert_eq!(password(config.endpoint(Side::Source)), Some("key-secret"));
    let literal = text.replace("${TANDEM_TEST_CFG_KEY_PW}", "written-out");
    assert_eq!(
        password(parse(&literal).unwrap().endpoint(Side::Source)),
        Some("written-out")
    );
    // One source of password only.
    let both = literal.replace(
        "password = \"written-out\"",
        "password = \"written-out\"\npassword_env = \"HOME\"",
    );
    let err = parse(&both).unwrap_err().to_string();
    assert!(
        err.contains("source: set one of password, password_env"),
        "{err}"
    );
    // The key wins over the URL's password.
    let over = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem:in-url@db.example/crm\"\npassword = \"${TANDEM_TEST_CFG_KEY_PW}\"",
    );
    assert_eq!(
        password(parse(&over).unwrap().endpoint(Side::Source)),
        Some("key-secret")
    );
}

#[test]
fn password_env_and_password_file_still_work() {
    std::env::set_var("TANDEM_TEST_CFG_ENV_PW", "env-secret");
    let text = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword_env = \"TANDEM_TEST_CFG_ENV_PW\"",
    );
    assert_eq!(
        password(parse(&text).unwrap().endpoint(Side::Source)),
        Some("env-secret")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "file-secret\n").unwrap();
    let text = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword_file = \"pw\"",
    );
    let config = Config::parse(&dir.path().join("t.toml"), &text).unwrap();
    assert_eq!(password(config.endpoint(Side::Source)), Some("file-secret"));
}

/// Writes `text` to a file with `mode` and loads it.
#[cfg(unix)]
fn load_with_mode(text: &str, mode: u32) -> Result<Config, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.toml");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    Config::load(&file)
}

#[cfg(unix)]
#[test]
fn a_world_readable_file_with_a_written_out_password_is_refused() {
    // GOOD holds "secret" in the source URL.
    let err = load_with_mode(GOOD, 0o644).unwrap_err().to_string();
    assert!(
        err.contains("crm.toml: every user can read this file"),
        "{err}"
    );
    assert!(err.contains("(source.url)"), "{err}");
    assert!(err.contains("run `chmod 640 /"), "{err}");
    assert!(err.contains("password_file"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    assert_eq!(err.lines().count(), 1);
    // A literal `password` key is refused the same way.
    let key = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"\npassword = \"hunter2\"",
    );
    let err = load_with_mode(&key, 0o604).unwrap_err().to_string();
    assert!(err.contains("(source.password)"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Not readable by others: fine.
    load_with_mode(GOOD, 0o640).unwrap();
    load_with_mode(&key, 0o600).unwrap();
    // Readable by all but without a written-out password: fine.
    std::env::set_var("TANDEM_TEST_CFG_MODE_PW", "x");
    let reference = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem:${TANDEM_TEST_CFG_MODE_PW}@db.example/crm\"",
    );
    load_with_mode(&reference, 0o644).unwrap();
    let no_password =
        with_source("kind = \"postgres\"\nurl = \"postgres://tandem@db.example/crm\"");
    load_with_mode(&no_password, 0o644).unwrap();
}

#[test]
fn tls_defaults_to_prefer_on_this_machine_and_verify_full_elsewhere() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.endpoint(Side::Source).tls.mode, TlsMode::Prefer);
    assert_eq!(config.endpoint(Side::Target).tls.mode, TlsMode::Prefer);
    let remote = GOOD.replace("@127.0.0.1:5432", "@db.example:5432");
    let tls = &parse(&remote).unwrap().endpoints[0].tls;
    assert_eq!(tls.mode, TlsMode::VerifyFull);
    assert_eq!(tls.ca_file, None);
    let sqlite = GOOD.replace(
        "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
        "kind = \"sqlite\"\nurl = \"sqlite://shop.db\"",
    );
    assert_eq!(
        parse(&sqlite).unwrap().endpoint(Side::Target).tls.mode,
        TlsMode::Disable
    );
}

#[test]
fn tls_keys_set_the_mode_and_the_ca_file() {
    let text = GOOD.replace(
        "url = \"postgres://tandem:secret@127.0.0.1:5432/crm\"",
        "url = \"postgres://tandem:secret@127.0.0.1:5432/crm\"\ntls = \"require\"",
    );
    assert_eq!(
        parse(&text).unwrap().endpoint(Side::Source).tls.mode,
        TlsMode::Require
    );
    let ca = GOOD.replace(
        "poll_interval = \"100ms\"",
        "poll_interval = \"100ms\"\ntls_ca_file = \"certs/ca.pem\"",
    );
    let tls = parse(&ca).unwrap().endpoint(Side::Target).tls.clone();
    assert_eq!(tls.mode, TlsMode::VerifyFull);
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/tandem/certs/ca.pem"))
    );
    // The URL's own option is read.
    let url = GOOD.replace("5432/crm", "5432/crm?sslmode=verify-full");
    assert_eq!(
        parse(&url).unwrap().endpoint(Side::Source).tls.mode,
        TlsMode::VerifyFull
    );
}

#[test]
fn bad_tls_settings_name_the_key() {
    let cases = [
        (
            GOOD.replace("poll_interval = \"100ms\"", "tls = \"on\""),
            "target.tls: \"on\" is not a TLS mode (expected \"disable\", \"prefer\", \"require\" or \"verify-full\")",
        ),
        (
            GOOD.replace(
                "poll_interval = \"100ms\"",
                "tls = \"require\"\ntls_ca_file = \"/ca.pem\"",
            ),
            "target.tls_ca_file: only used with tls = \"verify-full\"",
        ),
        (
            GOOD.replace("5432/crm\"", "5432/crm?sslmode=require\"\ntls = \"disable\""),
            "source.tls: tls = \"disable\" disagrees with sslmode=require in the URL",
        ),
        (
            GOOD.replace("3306/shop", "3306/shop?require_ssl=true"),
            "target.url: TLS is set with the tls key",
        ),
        (
            GOOD.replace(
                "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"",
                "kind = \"sqlite\"\nurl = \"sqlite://shop.db\"\ntls = \"require\"",
            ),
            "target.tls: SQLite opens a local file",
        ),
    ];
    for (text, expected) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}

#[test]
fn passwords_never_appear_in_errors() {
    let err = parse(&GOOD.replace("postgres://tandem", "mysql://tandem"))
        .unwrap_err()
        .to_string();
    assert!(!err.contains("secret"), "{err}");
    assert!(format!("{:?}", parse(GOOD).unwrap()).contains("***"));
}

#[test]
fn debug_output_shows_no_password_token_or_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.toml");
    std::fs::write(dir.path().join("client-secret"), "oauth-client-secret\n").unwrap();
    std::fs::write(dir.path().join("refresh"), "oauth-refresh-token\n").unwrap();
    std::env::set_var("TANDEM_TEST_CFG_DEBUG_TOKEN", "api-bearer-token");
    // The secrets were read (so that their absence below means something),
    // and Debug shows none of them.
    let shown = |text: &str, side: Side, expected: &str| {
        let config = Config::parse(&file, text).unwrap();
        assert_eq!(password(config.endpoint(side)), Some(expected));
        format!("{config:?}")
    };
    // Databases: a password in the URL, and one in the password key.
    let databases = GOOD.replace(
        "url = \"mysql://root@127.0.0.1:3306/shop\"",
        "url = \"mysql://root@127.0.0.1:3306/shop\"\npassword = \"key-pass\"",
    );
    let debug = shown(&databases, Side::Target, "key-pass");
    assert!(debug.contains("password"), "{debug}");
    for secret in ["secret", "key-pass"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    // An API: a bearer token, then an OAuth2 client secret and refresh token.
    let api = |target: &str| {
        with_source("kind = \"sqlite\"\nurl = \"sqlite://crm.db\"").replace(
            "kind = \"mysql\"\nurl = \"mysql://root@127.0.0.1:3306/shop\"\npoll_interval = \"100ms\"\n",
            &format!(
                "kind = \"http\"\nurl = \"https://api.example.com/v1\"\n{target}\n\
                 [[target.objects]]\nname = \"clients\"\npath = \"/clients\"\nmodified = \"m\"\n\
                 since = {{ s = \"{{since}}\" }}\n"
            ),
        )
    };
    let bearer =
        api("password = \"${TANDEM_TEST_CFG_DEBUG_TOKEN}\"\nauth = { scheme = \"bearer\" }");
    let debug = shown(&bearer, Side::Target, "api-bearer-token");
    assert!(debug.contains("Bearer"), "{debug}");
    assert!(!debug.contains("api-bearer-token"), "{debug}");
    let oauth = api("password_file = \"client-secret\"\n\
         auth = { scheme = \"oauth2\", token_url = \"https://id.example.com/token\", \
         client_id = \"tandem\", grant = \"refresh_token\", refresh_token_file = \"refresh\" }");
    let debug = shown(&oauth, Side::Target, "oauth-client-secret");
    assert!(debug.contains("OAuth2"), "{debug}");
    for secret in ["oauth-client-secret", "oauth-refresh-token"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn validating_reads_no_secret_and_reading_them_reports_every_problem() {
    let path = Path::new("/etc/tandem/crm.toml");
    let text = with_source(
        "kind = \"postgres\"\nurl = \"postgres://tandem:${TANDEM_TEST_CFG_STEPS_UNSET}@db.example/crm\"",
    )
    .replace(
        "poll_interval = \"100ms\"",
        "poll_interval = \"100ms\"\npassword_file = \"/nonexistent/tandem-pw\"",
    );
    // Step 1 only names the variable and the file.
    let validated = RawConfig::read(path, &text).unwrap().validate().unwrap();
    // Step 2 reads them: each problem on its line.
    let err = validated.resolve_secrets().unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0]
            .ends_with("source.url: environment variable TANDEM_TEST_CFG_STEPS_UNSET is not set"),
        "{err}"
    );
    assert!(
        lines[1].contains("target.password_file: cannot read /nonexistent/tandem-pw"),
        "{err}"
    );
    // A file with other problems has its passwords read all the same: one
    // run reports every problem, the values' first.
    let err = parse(&text.replace("\"100ms\"", "\"soon\""))
        .unwrap_err()
        .to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].contains("target.poll_interval: \"soon\""), "{err}");
    assert!(
        lines[1].contains("source.url: environment variable"),
        "{err}"
    );
    assert!(
        lines[2].contains("target.password_file: cannot read"),
        "{err}"
    );
    // Step 3: the passwords go to their endpoints.
    std::env::set_var("TANDEM_TEST_CFG_STEPS_SET", "steps-secret");
    let text = text
        .replace("STEPS_UNSET", "STEPS_SET")
        .replace("password_file = \"/nonexistent/tandem-pw\"\n", "");
    let validated = RawConfig::read(path, &text).unwrap().validate().unwrap();
    let passwords = validated.resolve_secrets().unwrap();
    let config = validated.build(passwords);
    assert_eq!(
        password(config.endpoint(Side::Source)),
        Some("steps-secret")
    );
    assert_eq!(password(config.endpoint(Side::Target)), None);
}
