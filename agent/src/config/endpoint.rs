//! One endpoint section, checked (step 1 of loading).

use std::path::Path;

use tandem_connectors::{EndpointConfig, Engine, TlsConfig, TlsMode};

use super::raw::RawEndpoint;
use super::secrets::PasswordSources;
use super::{ConfigError, Problems, DEFAULT_MAX_CONNECTIONS};

/// Checks the endpoint section `at` (`source`, `target`), noting its
/// problems in `problems`. Gives the endpoint, its password not read yet,
/// and where that password is read: each `None` when it has a problem. The
/// second is known once the kind and the URL are, so that reading the
/// password can report its problems with those of the rest of the file.
pub(super) fn endpoint(
    path: &Path,
    base: &Path,
    state_dir: &Path,
    at: &str,
    mut raw: RawEndpoint,
    literal_secrets: &mut Vec<String>,
    problems: &mut Problems,
) -> (Option<EndpointConfig>, Option<PasswordSources>) {
    let Some(engine) = Engine::from_kind(&raw.kind) else {
        problems.push(format!(
            "{at}.kind: unknown kind {:?} (expected \"postgres\", \"mysql\", \"sqlite\", \"mssql\" or \"http\")",
            raw.kind
        ));
        return (None, None);
    };
    let raw_http = raw.take_http();
    let http = if engine == Engine::Http {
        let mut options = match raw_http.validate(at, base) {
            Ok(options) => options,
            Err(e) => {
                problems.push(e);
                return (None, None);
            }
        };
        // The endpoint's journal (its position and mapping table) lives
        // with the rest of the state.
        options.state_dir = Some(state_dir.join(format!("{at}-http")));
        Some(std::sync::Arc::new(options))
    } else if !raw_http.is_empty() {
        problems.push(format!(
            "{at}: headers, auth, objects and the other API keys are only for kind = \"http\""
        ));
        return (None, None);
    } else {
        None
    };
    if !engine.accepts_url(&raw.url) || url::Url::parse(&raw.url).is_err() {
        problems.push(format!(
            "{at}.url: {} is not a {engine} URL (expected {})",
            tandem_connectors::connector::redact_url(&raw.url),
            engine.url_example()
        ));
        return (None, None);
    }
    let url = match engine {
        // A relative database file is relative to the config file, like
        // the state directory.
        Engine::Sqlite => {
            let file = Path::new(&raw.url["sqlite://".len()..]);
            format!("sqlite://{}", base.join(file).display())
        }
        _ => engine.canonical_url(&raw.url),
    };
    // From here on, every problem of the section is reported.
    let mut own = Problems::default();
    let (url, password) = match own.take(PasswordSources::check(
        path,
        base,
        at,
        engine,
        url.clone(),
        &raw,
        literal_secrets,
    )) {
        Some((url, password)) => (url, Some(password)),
        None => (url, None),
    };
    let tls_mode = own
        .take(
            raw.tls
                .as_deref()
                .map(|text| text.parse::<TlsMode>())
                .transpose()
                .map_err(|e| ConfigError::new(path, format!("{at}.tls: {e}"))),
        )
        .flatten();
    let tls_ca_file = raw.tls_ca_file.map(|file| {
        if file.is_relative() {
            base.join(file)
        } else {
            file
        }
    });
    let tls = own.take(
        TlsConfig::resolve(engine, &url, tls_mode, tls_ca_file)
            .map_err(|e| ConfigError::new(path, format!("{at}.{e}"))),
    );
    let default_poll = engine.default_poll_interval();
    let poll_interval = match raw.poll_interval {
        Some(text) => humantime::parse_duration(&text).unwrap_or_else(|e| {
            own.push(format!(
                "{at}.poll_interval: {text:?} is not a duration like \"250ms\": {e}"
            ));
            default_poll
        }),
        None => default_poll,
    };
    if poll_interval.is_zero() {
        own.push(format!("{at}.poll_interval: must be more than zero"));
    }
    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if max_connections < 2 {
        own.push(format!("{at}.max_connections: must be at least 2"));
    }
    let endpoint = match (tls, own.0.is_empty()) {
        (Some(tls), true) => Some(EndpointConfig {
            engine,
            url,
            // Read in step 2.
            password: None,
            poll_interval,
            max_connections,
            tls,
            http,
        }),
        _ => None,
    };
    problems.0.extend(own.0);
    (endpoint, password)
}
