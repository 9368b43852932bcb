//! OAuth2 access tokens for an endpoint (`auth = { scheme = "oauth2" }`):
//! asked of the token endpoint with the client's grant (client credentials,
//! or a refresh token), kept until shortly before they expire, and renewed
//! then, or at once when the API answers 401.
//!
//! A provider may rotate refresh tokens (each refresh answers with a new
//! one and the old one stops working): the latest is kept in the
//! endpoint's state directory (mode 0600), tied to the refresh token the
//! config gives, so that a restart, or another command of the same
//! integration, goes on with it. Tokens and secrets never reach a log or
//! an error message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::config::{Grant, OAuth2, RefreshTokenFrom};
use crate::error::{ConnectorError, ErrorKind, Result};

/// How long before its expiry a token is renewed (at most; a token that
/// lives shorter is renewed at four fifths of its life).
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// How long before its expiry a token is renewed at least (at most half its
/// life): providers count a lifetime in whole seconds from the second the
/// token was issued, so a token may end up to a second before `expires_in`
/// says, and a request in flight needs a moment more.
const RENEW_BEFORE_AT_LEAST: Duration = Duration::from_secs(2);

/// How long before the end of a token living `life` it is renewed.
fn renew_early(life: Duration) -> Duration {
    RENEW_BEFORE
        .min(life / 5)
        .max(RENEW_BEFORE_AT_LEAST)
        .min(life / 2)
}

/// An access token and when it must be renewed.
#[derive(Debug)]
struct Token {
    /// `Bearer <token>`, marked sensitive (its Debug shows no token).
    header: HeaderValue,
    renew_at: Option<Instant>,
    /// Got because the API answered the one before with 403: a 403 to
    /// this one is the API's answer, not a token it no longer takes.
    after_403: bool,
}

/// The refresh token kept in the state directory, with the fingerprint
/// of the configured one it descends from.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kept {
    from: String,
    #[serde(serialize_with = "written_out")]
    token: SecretString,
    /// When it was received (ms since 1970): the newer of the file's and
    /// the process's own is used.
    #[serde(default)]
    at: i64,
}

/// The tokens of one endpoint.
#[derive(Debug)]
pub struct Tokens {
    spec: OAuth2,
    client_secret: Option<SecretString>,
    /// Where the latest refresh token is kept, when there is a state
    /// directory.
    kept_at: Option<PathBuf>,
    /// The latest rotated refresh token, also when it could not be kept
    /// on disk: a spent one is never sent again by this process.
    latest: std::sync::Mutex<Option<Kept>>,
    current: tokio::sync::Mutex<Option<Token>>,
    http: reqwest::Client,
}

/// The answer of a token endpoint.
#[derive(Deserialize)]
struct Answer {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<f64>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
}

/// A kept refresh token as the state file holds it: the file (mode 0600)
/// is where it must be written out.
fn written_out<S: serde::Serializer>(
    token: &SecretString,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(token.expose_secret())
}

fn refused(message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::Permission, message)
}

impl Tokens {
    /// Tokens for `spec`, `client_secret` being the endpoint's password;
    /// `state_dir` keeps rotated refresh tokens.
    pub fn new(
        spec: OAuth2,
        client_secret: Option<SecretString>,
        state_dir: Option<PathBuf>,
        http: reqwest::Client,
    ) -> Tokens {
        Tokens {
            spec,
            client_secret,
            kept_at: state_dir.map(|d| d.join("oauth-refresh-token")),
            latest: std::sync::Mutex::new(None),
            current: tokio::sync::Mutex::new(None),
            http,
        }
    }

    /// The `Authorization` header: the current token, renewed first when
    /// it is about to expire.
    pub async fn header(&self) -> Result<HeaderValue> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            if token.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(token.header.clone());
            }
        }
        let token = self.fetch().await?;
        let header = token.header.clone();
        *current = Some(token);
        Ok(header)
    }

    /// A new token after the API refused `stale` (401): renewed, unless
    /// another request renewed it meanwhile.
    pub async fn renew(&self, stale: &HeaderValue) -> Result<HeaderValue> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            if token.header != *stale {
                return Ok(token.header.clone());
            }
        }
        info!(token_url = %self.spec.token_url, "the API refused the access token (401); renewing it");
        let token = self.fetch().await?;
        let header = token.header.clone();
        *current = Some(token);
        Ok(header)
    }

    /// A new token after the API answered `stale` with 403, once per token:
    /// some APIs (Kinto) answer a token they no longer take with 403, not
    /// 401. `None` when `stale` itself came from such a renewal, so that an
    /// API whose 403s are its answers (a record one may not read) costs no
    /// more than one token request per token.
    pub async fn renew_after_403(&self, stale: &HeaderValue) -> Result<Option<HeaderValue>> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref() {
            if token.header != *stale {
                return Ok(Some(token.header.clone()));
            }
            if token.after_403 {
                return Ok(None);
            }
        }
        info!(token_url = %self.spec.token_url, "the API refused the access token (403); renewing it once");
        let mut token = self.fetch().await?;
        token.after_403 = true;
        let header = token.header.clone();
        *current = Some(token);
        Ok(Some(header))
    }

    /// The refresh token to use: the configured one, or a later one it was
    /// rotated into.
    fn refresh_token(&self, from: &RefreshTokenFrom) -> Result<(SecretString, String)> {
        let configured: SecretString = match from {
            RefreshTokenFrom::Env(var) => std::env::var(var)
                .map_err(|_| {
                    ConnectorError::config(format!(
                        "auth.refresh_token_env: environment variable {var} is not set"
                    ))
                })?
                .into(),
            RefreshTokenFrom::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    ConnectorError::config(format!(
                        "auth.refresh_token_file: cannot read {}: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .into(),
        };
        let origin = blake3::hash(configured.expose_secret().as_bytes())
            .to_hex()
            .to_string();
        let on_disk = self
            .kept_at
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<Kept>(&bytes).ok());
        // The newer of the file's (another process of the integration, a
        // `check` beside the service, may have rotated it since) and this
        // process's own (which the file may have failed to take).
        let in_memory = self.latest.lock().expect("latest lock").clone();
        let kept = [on_disk, in_memory]
            .into_iter()
            .flatten()
            .filter(|kept| kept.from == origin)
            .max_by_key(|kept| kept.at);
        Ok((kept.map_or(configured, |k| k.token), origin))
    }

    /// Holds the lock that keeps two processes of one integration from
    /// spending the same refresh token (a provider that detects the reuse
    /// revokes them all); released when the file is dropped.
    async fn exclusive(&self) -> Result<Option<std::fs::File>> {
        let Some(path) = &self.kept_at else {
            return Ok(None);
        };
        let path = path.with_extension("lock");
        let locked = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .expect("the lock task does not panic");
        locked.map(Some).map_err(|e| {
            ConnectorError::new(
                ErrorKind::Internal,
                format!("cannot lock the refresh token's file: {e}"),
            )
        })
    }

    /// Keeps a rotated refresh token in the state directory.
    fn keep(&self, kept: &Kept) -> Result<()> {
        let Some(path) = &self.kept_at else {
            return Ok(());
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            use std::io::Write as _;
            let mut file = options.open(&tmp)?;
            file.write_all(&serde_json::to_vec(kept).expect("serializable"))?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            ConnectorError::new(
                ErrorKind::Internal,
                format!(
                    "cannot keep the rotated refresh token in {}: {e}",
                    path.display()
                ),
            )
        })
    }

    /// Asks the token endpoint for a new token.
    async fn fetch(&self) -> Result<Token> {
        let spec = &self.spec;
        let mut form: Vec<(String, String)> = Vec::new();
        let mut origin = None;
        // Held until the rotated refresh token is kept.
        let mut lock = None;
        match &spec.grant {
            Grant::ClientCredentials => {
                form.push(("grant_type".into(), "client_credentials".into()));
            }
            Grant::RefreshToken(from) => {
                lock = self.exclusive().await?;
                let (token, from) = self.refresh_token(from)?;
                form.push(("grant_type".into(), "refresh_token".into()));
                form.push(("refresh_token".into(), token.expose_secret().to_owned()));
                origin = Some(from);
            }
        }
        if let Some(scope) = &spec.scope {
            form.push(("scope".into(), scope.clone()));
        }
        form.extend(spec.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut request = self.http.post(&spec.token_url);
        if spec.secret_in_form {
            form.push(("client_id".into(), spec.client_id.clone()));
            if let Some(secret) = &self.client_secret {
                form.push(("client_secret".into(), secret.expose_secret().to_owned()));
            }
        } else {
            // RFC 6749 2.3.1: both form-encoded, then Basic.
            let encode =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                encode(&spec.client_id),
                encode(
                    self.client_secret
                        .as_ref()
                        .map_or("", ExposeSecret::expose_secret)
                )
            );
            let mut value = HeaderValue::try_from(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .map_err(|_| {
                ConnectorError::config(
                    "auth: the client secret is not valid in a header".to_owned(),
                )
            })?;
            value.set_sensitive(true);
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let what = format!("OAuth2 token request to {}", spec.token_url);
        let response = request.form(&form).send().await.map_err(|e| {
            ConnectorError::new(
                ErrorKind::Connection,
                format!(
                    "{what}: {}",
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "cannot connect"
                    }
                ),
            )
        })?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            // The provider's error code and description say why; they hold
            // no secret.
            let why = [body.get("error"), body.get("error_description")]
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(": ");
            let message = format!("{what}: {status} {why}");
            return Err(if status.is_server_error() {
                ConnectorError::new(ErrorKind::Transient, message)
            } else {
                refused(format!(
                    "{message} (check client_id, the client secret, the grant and its refresh token)"
                ))
            });
        }
        let answer: Answer = serde_json::from_value(body)
            .map_err(|_| refused(format!("{what}: the answer holds no access_token")))?;
        if let (Some(origin), Some(rotated)) = (&origin, &answer.refresh_token) {
            let kept = Kept {
                from: origin.clone(),
                token: rotated.clone(),
                at: chrono::Utc::now().timestamp_millis(),
            };
            *self.latest.lock().expect("latest lock") = Some(kept.clone());
            if let Err(e) = self.keep(&kept) {
                // This process goes on with it; a restart would not.
                warn!(error = %e, "the rotated refresh token is kept in memory only");
            }
        }
        drop(lock);
        let lifetime = answer
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        let renew_at = lifetime.map(|life| Instant::now() + life - renew_early(life));
        debug!(token_url = %spec.token_url, expires_in = ?lifetime, "got an OAuth2 access token");
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", answer.access_token.expose_secret()))
                .map_err(|_| {
                    refused(format!("{what}: the access token is not valid in a header"))
                })?;
        header.set_sensitive(true);
        Ok(Token {
            header,
            renew_at,
            after_403: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret_or_token_and_the_state_file_keeps_the_rotated_one() {
        let spec = OAuth2 {
            token_url: "https://id.example.com/token".to_owned(),
            client_id: "tandem".to_owned(),
            grant: Grant::RefreshToken(RefreshTokenFrom::Env("REFRESH".to_owned())),
            scope: None,
            params: Default::default(),
            secret_in_form: false,
        };
        let tokens = Tokens::new(
            spec,
            Some("client-secret-value".into()),
            None,
            reqwest::Client::new(),
        );
        let kept = Kept {
            from: "origin".to_owned(),
            token: "rotated-refresh-token".into(),
            at: 1,
        };
        *tokens.latest.lock().unwrap() = Some(kept.clone());
        let mut header = HeaderValue::from_static("Bearer access-token-value");
        header.set_sensitive(true);
        *tokens.current.try_lock().unwrap() = Some(Token {
            header,
            renew_at: None,
            after_403: false,
        });
        let shown = format!("{tokens:?}");
        assert!(shown.contains("id.example.com"), "{shown}");
        for secret in [
            "client-secret-value",
            "rotated-refresh-token",
            "access-token-value",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // The state file is where the rotated token must be written out.
        let file = serde_json::to_string(&kept).unwrap();
        assert_eq!(
            file,
            r#"{"from":"origin","token":"rotated-refresh-token","at":1}"#
        );
        let read: Kept = serde_json::from_str(&file).unwrap();
        assert_eq!(read.token.expose_secret(), "rotated-refresh-token");
    }

    #[test]
    fn tokens_are_renewed_early_enough_for_whole_second_lifetimes() {
        let secs = |s: u64| Duration::from_secs(s);
        assert_eq!(renew_early(secs(3600)), secs(60), "an hour: a minute early");
        assert_eq!(renew_early(secs(100)), secs(20), "a fifth of a short life");
        assert_eq!(renew_early(secs(5)), secs(2), "never less than two seconds");
        assert_eq!(
            renew_early(secs(3)),
            Duration::from_millis(1500),
            "half a tiny life"
        );
    }
}
