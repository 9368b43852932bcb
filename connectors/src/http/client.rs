//! Requests to the API: authentication, pacing, retries.
//!
//! Every request waits for its turn under the configured rate and
//! concurrency. A 429 is always retried after its `Retry-After` (the server
//! did nothing); so is a 401 once, with a renewed token, under OAuth2, and
//! a 403 once per token (Kinto answers a token it no longer takes with 403
//! where it knows the resource). A
//! 5xx, a timeout or a broken connection is retried with exponential
//! backoff and jitter only when the request is safe to repeat (GET, PUT,
//! DELETE, and a PATCH of absolute values); a create is never sent twice
//! here, its caller decides what an unknown outcome means. Other 4xx
//! answers are errors: 401 and 403 of permission (an operator's matter),
//! 408 transient, the rest the record's fault (dead-lettered); except the
//! statuses a caller accepts as answers (a record's `not_found`).

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value as Json;
use tokio::sync::{Mutex, Semaphore};
use tracing::{debug, info, warn};

use super::config::{Auth, HttpOptions};
use super::oauth::Tokens;
use crate::connector::{redact_url, TlsConfig, TlsMode};
use crate::error::{ConnectorError, ErrorKind, Result};

/// Shortest wait before a retry.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// An answer: its status and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: Json,
}

/// The API client of one endpoint.
pub struct Client {
    http: reqwest::Client,
    base: String,
    headers: HeaderMap,
    /// OAuth2 tokens, for `Authorization`.
    tokens: Option<Tokens>,
    permits: Semaphore,
    /// When the next request may start (the rate limit).
    next_slot: Mutex<Instant>,
    interval: Duration,
    attempts: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &redact_url(&self.base))
            .finish_non_exhaustive()
    }
}

/// Whether a request can be sent again without a second effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Reads, updates to absolute values, deletes.
    Safe,
    /// Creates: sent once.
    Unsafe,
}

impl Client {
    /// A client for the API at `base` (no trailing slash); `secret` is the
    /// endpoint's password, which `options.auth` says how to send.
    pub fn new(
        base: &str,
        secret: Option<&SecretString>,
        options: &HttpOptions,
        tls: &TlsConfig,
    ) -> Result<Client> {
        let config = |m: String| ConnectorError::new(ErrorKind::Config, m);
        let url = url::Url::parse(base)
            .map_err(|e| config(format!("url: {} is not a URL: {e}", redact_url(base))))?;
        if url.scheme() == "http" && matches!(tls.mode, TlsMode::Require | TlsMode::VerifyFull) {
            return Err(config(format!(
                "url: {} is plain http but TLS is {} (use https://, or tls = \"disable\" for a server on a trusted network)",
                redact_url(base),
                tls.mode
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| config(format!("headers: {name:?} is not a header name")))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| config(format!("headers: the value of {name} is not valid")))?;
            headers.insert(name, value);
        }
        let need_secret = |scheme: &str| {
            secret.map(ExposeSecret::expose_secret).ok_or_else(|| {
                config(format!(
                    "auth: scheme = \"{scheme}\" needs a secret (password, password_env or password_file)"
                ))
            })
        };
        let sensitive = |text: String| {
            let mut value = HeaderValue::try_from(text)
                .map_err(|_| config("auth: the secret is not valid in a header".to_owned()))?;
            value.set_sensitive(true);
            Ok::<_, ConnectorError>(value)
        };
        let mut oauth = None;
        match &options.auth {
            Auth::None => {}
            Auth::OAuth2(spec) => oauth = Some(spec.clone()),
            Auth::Bearer => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!("Bearer {}", need_secret("bearer")?))?,
                );
            }
            Auth::Header(name) => {
                let name = HeaderName::try_from(name.as_str())
                    .map_err(|_| config(format!("auth.header: {name:?} is not a header name")))?;
                headers.insert(name, sensitive(need_secret("header")?.to_owned())?);
            }
            Auth::Basic(user) => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", need_secret("basic")?);
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ))?,
                );
            }
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            // The credentials travel in headers: a redirect is followed only
            // within the API's own origin (scheme, host and port).
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let same_origin = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| first.origin() == attempt.url().origin());
                if attempt.previous().len() > 5 {
                    attempt.error("more than 5 redirects")
                } else if same_origin {
                    attempt.follow()
                } else {
                    attempt.error("a redirect to another origin is not followed (the credentials would go with it)")
                }
            }));
        match tls.mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                // Without verify-full the certificate is not checked, as for
                // the database endpoints.
                builder = builder.danger_accept_invalid_certs(true);
            }
            TlsMode::VerifyFull => {
                if let Some(file) = &tls.ca_file {
                    let pem = std::fs::read(file).map_err(|e| {
                        config(format!("tls_ca_file: cannot read {}: {e}", file.display()))
                    })?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                        config(format!(
                            "tls_ca_file: {} holds no PEM certificate: {e}",
                            file.display()
                        ))
                    })?;
                    builder = builder.tls_certs_only(certs);
                }
            }
        }
        let http = builder
            .build()
            .map_err(|e| config(format!("cannot set up the HTTP client: {e}")))?;
        let tokens = oauth.map(|spec| {
            Tokens::new(
                spec,
                secret.cloned(),
                options.state_dir.clone(),
                http.clone(),
            )
        });
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            headers,
            tokens,
            permits: Semaphore::new(options.concurrency),
            next_slot: Mutex::new(Instant::now()),
            interval: Duration::from_secs_f64(1.0 / options.requests_per_second),
            attempts: options.attempts,
        })
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits for the rate limit's next slot.
    async fn pace(&self) {
        let wait = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a request and returns its answer. Statuses below 400 and
    /// those in `accept` are answers; the rest are errors (see the module
    /// docs for retries).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Json>,
        repeat: Repeat,
        accept: &[u16],
    ) -> Result<Answer> {
        let what = format!("{method} {path}");
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            let bearer = match &self.tokens {
                // No token, no request: nothing was sent.
                Some(tokens) => Some(tokens.header().await.map_err(ConnectorError::unsent)?),
                None => None,
            };
            let started = Instant::now();
            let result = {
                let _permit = self.permits.acquire().await.expect("never closed");
                self.pace().await;
                let mut request = self
                    .http
                    .request(method.clone(), self.url(path))
                    .headers(self.headers.clone())
                    .query(query);
                if let Some(bearer) = &bearer {
                    request = request.header(AUTHORIZATION, bearer.clone());
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                request.send().await
            };
            debug!(
                request = %what,
                status = result.as_ref().map_or(0, |r| r.status().as_u16()),
                ms = started.elapsed().as_millis() as u64,
                "API request"
            );
            let last = attempt >= self.attempts;
            let response = match result {
                Ok(response) => response,
                Err(e) => {
                    // The request may or may not have reached the server,
                    // unless no connection could be made.
                    let mut error = ConnectorError::new(
                        ErrorKind::Connection,
                        format!("{what}: {}", without_url(&e)),
                    );
                    if e.is_connect() {
                        error = error.unsent();
                    }
                    if (repeat == Repeat::Unsafe && !e.is_connect()) || last {
                        return Err(error);
                    }
                    let wait = backoff(attempt);
                    warn!(request = %what, attempt, retry_in = ?wait, error = %without_url(&e), "request failed; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            let status = response.status();
            if !renewed && matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                if let (Some(tokens), Some(stale)) = (&self.tokens, &bearer) {
                    // Refused before doing anything: once more, with a new
                    // token.
                    let again = if status == StatusCode::UNAUTHORIZED {
                        Some(tokens.renew(stale).await?)
                    } else {
                        tokens.renew_after_403(stale).await?
                    };
                    if again.is_some() {
                        renewed = true;
                        continue;
                    }
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                // Refused before doing anything: always safe to repeat.
                let wait = retry_after(response.headers()).unwrap_or_else(|| backoff(attempt));
                if last {
                    return Err(ConnectorError::new(
                        ErrorKind::Transient,
                        format!("{what}: rate limited (429) {attempt} times in a row"),
                    ));
                }
                info!(request = %what, retry_in = ?wait, "rate limited by the API (429); waiting");
                self.hold_everyone(wait).await;
                continue;
            }
            let text = response.text().await.map_err(|e| {
                ConnectorError::new(
                    ErrorKind::Connection,
                    format!("{what}: {}", without_url(&e)),
                )
            })?;
            let body_json = if text.trim().is_empty() {
                Json::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Json::String(text.clone()))
            };
            if status.is_server_error() {
                let error = ConnectorError::new(
                    ErrorKind::Transient,
                    format!(
                        "{what}: server error {status}: {}",
                        api_message(&body_json, status)
                    ),
                );
                if repeat == Repeat::Unsafe || last {
                    return Err(error);
                }
                let wait = backoff(attempt);
                warn!(request = %what, attempt, retry_in = ?wait, %status, "server error; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status.is_success() || status.is_redirection() || accept.contains(&status.as_u16()) {
                return Ok(Answer {
                    status,
                    body: body_json,
                });
            }
            let kind = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::Permission,
                StatusCode::REQUEST_TIMEOUT => ErrorKind::Transient,
                _ => ErrorKind::Data,
            };
            return Err(ConnectorError::new(
                kind,
                format!("{what}: {status}: {}", api_message(&body_json, status)),
            ));
        }
    }

    /// Makes every request wait `wait` (the server asked us to slow down).
    async fn hold_everyone(&self, wait: Duration) {
        let until = Instant::now() + wait;
        {
            let mut next = self.next_slot.lock().await;
            *next = (*next).max(until);
        }
        tokio::time::sleep_until(until.into()).await;
    }
}

/// The API's own message in an error body (`message`, `error`, ...; two
/// when they say different things, leaving out one that only repeats the
/// status), or the body itself, cut short.
pub(super) fn api_message(body: &Json, status: StatusCode) -> String {
    let text = match body {
        Json::Object(map) => {
            let reason = status.canonical_reason().unwrap_or_default();
            let mut said: Vec<String> = Vec::new();
            for key in ["message", "error", "detail", "error_description"] {
                let text = match map.get(key) {
                    Some(Json::String(s)) => s.clone(),
                    Some(Json::Null) | None => continue,
                    Some(other) => other.to_string(),
                };
                if !text.eq_ignore_ascii_case(reason) && !said.contains(&text) && said.len() < 2 {
                    said.push(text);
                }
            }
            if said.is_empty() {
                body.to_string()
            } else {
                said.join(": ")
            }
        }
        Json::String(s) => s.clone(),
        Json::Null => "(no body)".to_owned(),
        other => other.to_string(),
    };
    let text = text.replace('\n', " ");
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// A reqwest error without its URL (which may carry a query with ids).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Exponential backoff with full jitter.
fn backoff(attempt: u32) -> Duration {
    let cap = BASE_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    cap.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The wait a `Retry-After` header asks for (seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return Some(Duration::from_secs_f64(seconds.clamp(0.0, 300.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(
        wait.to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(300)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 1..30 {
            let wait = backoff(attempt);
            let cap = BASE_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            assert!(wait <= cap && wait >= cap / 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::try_from(later).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    fn client(auth: &str, secret: Option<&str>) -> Result<Client> {
        let raw: crate::http::config::RawHttp = toml::from_str(&format!(
            "auth = {auth}\n[[objects]]\nname = \"O\"\npath = \"/o\"\nmodified = \"m\"\nsince = {{ s = \"{{since}}\" }}\n"
        ))
        .unwrap();
        let options = raw.validate("target", std::path::Path::new(".")).unwrap();
        Client::new(
            "https://api.example.com/v1",
            secret.map(SecretString::from).as_ref(),
            &options,
            &TlsConfig::default_for(crate::Engine::Http, "https://api.example.com/v1").unwrap(),
        )
    }

    #[test]
    fn each_auth_scheme_sends_the_secret_as_it_should_and_hides_it() {
        let bearer = client("{ scheme = \"bearer\" }", Some("t0k")).unwrap();
        assert_eq!(bearer.headers[AUTHORIZATION], "Bearer t0k");
        assert!(bearer.headers[AUTHORIZATION].is_sensitive());
        let basic = client("{ scheme = \"basic\", user = \"sync\" }", Some("pw")).unwrap();
        // base64("sync:pw")
        assert_eq!(basic.headers[AUTHORIZATION], "Basic c3luYzpwdw==");
        let header = client("{ scheme = \"header\", header = \"X-Api-Key\" }", Some("k")).unwrap();
        assert_eq!(header.headers["x-api-key"], "k");
        assert!(!format!("{bearer:?}").contains("t0k"), "{bearer:?}");
        let err = client("{ scheme = \"bearer\" }", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth: scheme = \"bearer\" needs a secret"),
            "{err}"
        );
    }

    #[test]
    fn plain_http_to_a_remote_host_is_refused() {
        let raw: crate::http::config::RawHttp = toml::from_str(
            "[[objects]]\nname = \"O\"\npath = \"/o\"\nmodified = \"m\"\nsince = { s = \"{since}\" }\n",
        )
        .unwrap();
        let options = raw.validate("target", std::path::Path::new(".")).unwrap();
        let url = "http://api.example.com/v1";
        let tls = TlsConfig::default_for(crate::Engine::Http, url).unwrap();
        let err = Client::new(url, None, &options, &tls)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is plain http but TLS is verify-full"),
            "{err}"
        );
        let local = "http://127.0.0.1:1337/parse";
        let tls = TlsConfig::default_for(crate::Engine::Http, local).unwrap();
        assert!(Client::new(local, None, &options, &tls).is_ok());
    }

    #[test]
    fn the_apis_message_is_quoted() {
        let body = serde_json::json!({"code": 142, "error": "name is required"});
        assert_eq!(
            api_message(&body, StatusCode::BAD_REQUEST),
            "name is required"
        );
        // Kinto: `error` only repeats the status.
        let body = serde_json::json!({"code": 403, "errno": 121, "error": "Forbidden", "message": "This user cannot access this resource."});
        assert_eq!(
            api_message(&body, StatusCode::FORBIDDEN),
            "This user cannot access this resource."
        );
        // OAuth2: the code and its description.
        let body = serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"});
        assert_eq!(
            api_message(&body, StatusCode::UNAUTHORIZED),
            "invalid_client: client authentication failed"
        );
    }
}
