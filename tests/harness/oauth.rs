//! A real OAuth 2.0 setup per test: an authorization server, and Kinto, a
//! REST server whose records the agent syncs, reached two ways.
//!
//! [`OAuthServer::start`] runs, on free loopback ports and each in a
//! temporary directory of the test's own:
//!
//! 1. the authorization server: the npm package `oidc-provider`
//!    (`tests/oauth/provider.mjs`), in memory, with its test hooks;
//! 2. Kinto (`tests/oauth/kinto.ini`), in memory, which checks each bearer
//!    token by asking the provider's userinfo endpoint, on every request;
//! 3. Apache httpd with mod_auth_openidc (`tests/oauth/apache-rs.conf`), a
//!    resource server in front of that same Kinto, which checks each bearer
//!    token by introspection (RFC 7662), on every request.
//!
//! Everything lives in memory: records and tokens go with the value. What
//! the servers need is installed by `tests/oauth/install.sh` (tests/run.sh
//! runs it); `TANDEM_TEST_OAUTH_DIR` names another copy of `tests/oauth`.
//!
//! Which token each route takes, and whose records it reaches:
//!
//! | route | user token ([`OAuthServer::user_token`]) | client token ([`OAuthServer::client_token`]) | Kinto principal |
//! |---|---|---|---|
//! | [`OAuthServer::kinto_url`] | yes (needs scope `openid`) | no: 401 | `oidc:<user>`, e.g. `oidc:alice` |
//! | [`OAuthServer::resource_url`] | yes | yes | `proxy:sync-agent` (the client id), whoever the user |
//!
//! Kinto's `default` bucket is a bucket of the caller's own, so records
//! written through one route are not seen through the other, and a test
//! writing "from outside" must write as the same principal as the agent:
//! on [`OAuthServer::kinto_url`] with a token of [`USER`] (the user of
//! [`OAuthServer::refresh_token`]), on [`OAuthServer::resource_url`] with
//! any token of the client.
//!
//! Kinto's shapes: records at `{base}/buckets/default/collections/{c}/records`,
//! bodies wrapped as `{"data": …}`, `last_modified` in epoch milliseconds.
//! A collection of the `default` bucket comes into being on first use, a
//! listing included: listing one never written answers 200 with no records.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{header, StatusCode};
use serde_json::{json, Value};

/// The confidential client the agent is: id.
pub const CLIENT_ID: &str = "sync-agent";
/// The confidential client the agent is: secret.
pub const CLIENT_SECRET: &str = "sync-agent-secret";
/// The redirect URI registered for [`CLIENT_ID`]; nothing listens there.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
/// The scope of the user's grant: `openid` for Kinto's userinfo check,
/// `offline_access` for a refresh token, `records` for the resource server.
pub const SCOPE: &str = "openid offline_access records";
/// The user who logs in (the provider takes any name and password).
pub const USER: &str = "alice";

/// How the authorization server behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Lifetime in seconds of access tokens, a user's and the client's
    /// alike (expiry is checked to the second: allow ±1 s).
    pub access_token_ttl: u64,
    /// Whether each refresh returns a new refresh token. Redeeming a
    /// replaced one is refused (`invalid_grant`) and revokes the whole
    /// grant, the new refresh token included. When false, the refresh
    /// token (valid one day) is never replaced.
    pub rotate_refresh_tokens: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            access_token_ttl: 5,
            rotate_refresh_tokens: false,
        }
    }
}

/// The authorization server, Kinto and the Apache resource server of one
/// test; all three are stopped when the value is dropped.
pub struct OAuthServer {
    /// The provider's issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// The agent's client id, [`CLIENT_ID`].
    pub client_id: &'static str,
    /// The agent's client secret, [`CLIENT_SECRET`].
    pub client_secret: &'static str,
    kinto_port: u16,
    rs_port: u16,
    http: reqwest::Client,
    /// Stopped in this order: Apache, Kinto, the provider.
    processes: Vec<(&'static str, Child)>,
    dir: tempfile::TempDir,
}

fn fixture_dir() -> PathBuf {
    std::env::var_os("TANDEM_TEST_OAUTH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oauth"))
}

const APACHE: &str = "/usr/sbin/apache2";
const OPENIDC_MODULE: &str = "/usr/lib/apache2/modules/mod_auth_openidc.so";

fn require(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run tests/oauth/install.sh (tests/run.sh does it)",
        path.display()
    );
}

/// Makes a self-signed certificate for 127.0.0.1 with the `cryptography`
/// package Kinto brings along (no openssl needed).
const MAKE_CERT: &str = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(hours=1))
    .not_valid_after(now + datetime.timedelta(days=7))
    .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    .sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;

/// Sends `signal` to the process group led by `child` (each server runs in
/// a group of its own, so Apache's workers go too).
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
}

impl OAuthServer {
    /// Starts the provider, then Kinto (which reads the provider's
    /// discovery document at startup), then Apache, and waits until each
    /// answers.
    pub async fn start(options: Options) -> OAuthServer {
        let fixture = fixture_dir();
        let venv = fixture.join(".venv/bin");
        require(
            &fixture.join("node_modules/oidc-provider/package.json"),
            "oidc-provider",
        );
        require(&venv.join("pserve"), "Kinto");
        require(Path::new(APACHE), "Apache httpd");
        require(Path::new(OPENIDC_MODULE), "mod_auth_openidc");
        // install.sh puts a Node.js into the venv when the machine's is too old.
        let node = if venv.join("node").exists() {
            venv.join("node")
        } else {
            PathBuf::from("node")
        };

        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().to_path_buf();
        // Apache started as root serves from www-data workers, which write
        // their shared-memory and mutex files here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777))
                .expect("chmod the run directory");
        }
        let (cert, key) = (run.join("op-tls.crt"), run.join("op-tls.key"));
        let made = Command::new(venv.join("python"))
            .args(["-c", MAKE_CERT])
            .arg(&cert)
            .arg(&key)
            .output()
            .expect("run the venv's python");
        assert!(
            made.status.success(),
            "making the provider's TLS certificate failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let mut server = OAuthServer {
            issuer: String::new(),
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            kinto_port: 0,
            rs_port: 0,
            http,
            processes: Vec::new(),
            dir,
        };

        // 1. The provider picks its own ports and prints them.
        let config = json!({
            "accessTokenTTL": options.access_token_ttl,
            "clientCredentialsTTL": options.access_token_ttl,
            "rotateRefreshToken": if options.rotate_refresh_tokens { "always" } else { "never" },
            "tlsCert": cert,
            "tlsKey": key,
        });
        let mut provider = Command::new(&node);
        provider
            .arg(fixture.join("provider.mjs"))
            .arg(config.to_string());
        server.spawn("provider", provider);
        let ready = server.provider_ready().await;
        server.issuer = ready["issuer"].as_str().expect("issuer").to_owned();
        let tls_base = ready["tls_base"].as_str().expect("tls_base").to_owned();
        server
            .wait_until_up(
                "provider",
                &format!("{}/.well-known/openid-configuration", server.issuer),
            )
            .await;

        // 2. Kinto.
        server.kinto_port = super::free_port();
        let mut kinto = Command::new(venv.join("pserve"));
        kinto
            .arg(fixture.join("kinto.ini"))
            .arg(format!("http_port={}", server.kinto_port))
            .arg(format!("issuer={}", server.issuer));
        server.spawn("kinto", kinto);
        let heartbeat = format!("{}/__heartbeat__", server.kinto_url());
        server.wait_until_up("kinto", &heartbeat).await;

        // 3. Apache, which fills in its config from the environment.
        server.rs_port = super::free_port();
        let mut apache = Command::new(APACHE);
        apache
            .arg("-f")
            .arg(fixture.join("apache-rs.conf"))
            .arg("-DFOREGROUND")
            .env("RS_PORT", server.rs_port.to_string())
            .env("OP_TLS_BASE", &tls_base)
            .env("KINTO_PORT", server.kinto_port.to_string())
            .env("RUN_DIR", &run);
        server.spawn("apache", apache);
        let front = format!("http://127.0.0.1:{}/", server.rs_port);
        server.wait_until_up("apache", &front).await;
        server
    }

    /// Starts `command` in a process group of its own, its output in the
    /// run directory (`NAME.out`, `NAME.err`).
    fn spawn(&mut self, name: &'static str, mut command: Command) {
        use std::os::unix::process::CommandExt;
        let log = |suffix: &str| {
            std::fs::File::create(self.dir.path().join(format!("{name}.{suffix}")))
                .expect("log file")
        };
        let child = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {name} ({command:?}): {e}; run tests/oauth/install.sh")
            });
        // Apache and Kinto stop before the provider (reverse order of start).
        self.processes.insert(0, (name, child));
    }

    /// Fails the test if `name` has exited, with its logs.
    fn check_alive(&mut self, name: &str) {
        let exited = self
            .processes
            .iter_mut()
            .find(|(n, _)| *n == name)
            .and_then(|(_, child)| child.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!("{name} exited ({status}) while starting:\n{}", self.logs());
        }
    }

    async fn provider_ready(&mut self) -> Value {
        let out = self.dir.path().join("provider.out");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(line) = text.lines().find_map(|l| l.strip_prefix("READY ")) {
                return serde_json::from_str(line).expect("the READY line is JSON");
            }
            self.check_alive("provider");
            assert!(
                Instant::now() < deadline,
                "the provider printed no READY line in 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `url` answers anything at all (Apache answers 401).
    async fn wait_until_up(&mut self, name: &str, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.http.get(url).send().await {
                if !response.status().is_server_error() {
                    return;
                }
            }
            self.check_alive(name);
            assert!(
                Instant::now() < deadline,
                "{name} did not answer at {url} within 60 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every server's output so far, for a failing test's message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in [
            "provider.err",
            "kinto.err",
            "apache.err",
            "apache-error.log",
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            all.push_str(&format!("--- {name}\n{text}\n"));
        }
        all
    }

    /// The token endpoint (`{issuer}/token`).
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// Kinto itself (`http://127.0.0.1:PORT/v1`): takes user tokens only
    /// (it checks them at userinfo), and each user has a `default` bucket
    /// of their own.
    pub fn kinto_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.kinto_port)
    }

    /// The same Kinto behind Apache (`http://127.0.0.1:PORT/v1`): takes
    /// client-credentials tokens and user tokens, and every caller is the
    /// principal `proxy:sync-agent`, so all share one `default` bucket,
    /// another than any user's on [`OAuthServer::kinto_url`]. Refusals are
    /// Apache's: 401 with an HTML body.
    pub fn resource_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.rs_port)
    }

    /// POSTs a form to the token endpoint as the client; fails the test
    /// unless it answers 200; returns the JSON answer.
    async fn token_request(&self, form: &[(&str, &str)]) -> Value {
        let response = self
            .http
            .post(self.token_url())
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(form))
            .send()
            .await
            .expect("the provider answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::OK, "token request {form:?}: {body}");
        body
    }

    /// Logs `user` in and consents, as a browser would, through the
    /// provider's development login pages, then redeems the code. Returns
    /// the token answer: `access_token`, `refresh_token`, `id_token`,
    /// `expires_in`, `scope`. Counts as one `authorization_code` request in
    /// [`OAuthServer::stats`].
    pub async fn authorize(&self, user: &str) -> Value {
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut next = url::Url::parse_with_params(
            &format!("{}/auth", self.issuer),
            [
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT_URI),
                ("scope", SCOPE),
                // Without it the provider quietly drops offline_access,
                // and no refresh token comes.
                ("prompt", "consent"),
                ("state", "tandem-test"),
            ],
        )
        .expect("authorization URL");
        for _ in 0..12 {
            if next.as_str().starts_with(REDIRECT_URI) {
                let code = next
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| panic!("no code in the redirect {next}"));
                let tokens = self
                    .token_request(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", REDIRECT_URI),
                    ])
                    .await;
                assert!(
                    tokens["refresh_token"].is_string(),
                    "no refresh token in {tokens}"
                );
                return tokens;
            }
            let mut request = self.http.get(next.clone());
            if next.path().starts_with("/interaction/") {
                // The page says what it asks for: a login, then a consent.
                let page = self
                    .with_cookies(self.http.get(next.clone()), &cookies)
                    .send()
                    .await
                    .expect("the provider answers");
                take_cookies(&page, &mut cookies);
                let html = page.text().await.expect("interaction page");
                let form = if html.contains(r#"name="prompt" value="login""#) {
                    form_body(&[("prompt", "login"), ("login", user), ("password", "x")])
                } else if html.contains(r#"name="prompt" value="consent""#) {
                    form_body(&[("prompt", "consent")])
                } else {
                    panic!("unexpected interaction page at {next}:\n{html}");
                };
                request = self
                    .http
                    .post(next.clone())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form);
            }
            let response = self
                .with_cookies(request, &cookies)
                .send()
                .await
                .expect("the provider answers");
            take_cookies(&response, &mut cookies);
            let status = response.status();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location else {
                let body = response.text().await.unwrap_or_default();
                panic!("the login flow stopped at {next} with {status}:\n{body}");
            };
            next = next.join(&location).expect("redirect URL");
        }
        panic!("the login flow did not reach the redirect URI in 12 steps");
    }

    fn with_cookies(
        &self,
        request: reqwest::RequestBuilder,
        cookies: &[(String, String)],
    ) -> reqwest::RequestBuilder {
        if cookies.is_empty() {
            return request;
        }
        let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        request.header(header::COOKIE, jar.join("; "))
    }

    /// A fresh refresh token of [`USER`] for the client, scope [`SCOPE`]:
    /// what the agent's config holds. Each call is a new grant.
    pub async fn refresh_token(&self) -> String {
        self.authorize(USER).await["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned()
    }

    /// A fresh access token of [`USER`], from a new grant's code (so it
    /// counts as `authorization_code`, never as `refresh_token`, in
    /// [`OAuthServer::stats`]). Good on both routes, for
    /// [`Options::access_token_ttl`] seconds.
    pub async fn user_token(&self) -> String {
        self.authorize(USER).await["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Redeems `refresh_token` as the agent would; returns the token answer
    /// (counts as `refresh_token` in [`OAuthServer::stats`]).
    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// A client-credentials access token of the client, scope `records`:
    /// good on [`OAuthServer::resource_url`] only (Kinto's userinfo check
    /// refuses it with 401). Counts as `client_credentials`.
    pub async fn client_token(&self) -> String {
        let tokens = self
            .token_request(&[("grant_type", "client_credentials"), ("scope", "records")])
            .await;
        tokens["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The provider's counters: `{"token_requests": {"refresh_token": 2,
    /// "authorization_code": 1, …}, "errors": {"refresh_token:invalid_grant":
    /// 1, …}}`, keyed by grant type (and error code); absent keys are 0.
    pub async fn stats(&self) -> Value {
        let response = self
            .http
            .get(format!("{}/__test__/stats", self.issuer))
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(response.status(), StatusCode::OK, "stats hook");
        response.json().await.expect("stats JSON")
    }

    /// How many token requests of `grant_type` succeeded so far.
    pub async fn token_requests(&self, grant_type: &str) -> u64 {
        self.stats().await["token_requests"][grant_type]
            .as_u64()
            .unwrap_or(0)
    }

    /// Makes one access token (a user's or a client-credentials one)
    /// unknown to the provider, as if it had expired, and nothing else: the
    /// refresh token of its grant stays good. The next request with it gets
    /// 401 on both routes. Returns whether the token was known (an expired
    /// one is not).
    pub async fn destroy_token(&self, token: &str) -> bool {
        let response = self
            .http
            .post(format!("{}/__test__/destroy-token", self.issuer))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[("token", token)]))
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(response.status(), StatusCode::OK, "destroy-token hook");
        let body: Value = response.json().await.expect("JSON");
        body["destroyed"].as_bool().unwrap_or(false)
    }

    /// Makes every access token handed out so far unknown to the
    /// provider (the agent's included, which a test never sees), their
    /// refresh tokens left good; returns how many there were.
    pub async fn destroy_issued(&self) -> u64 {
        let response = self
            .http
            .post(format!("{}/__test__/destroy-issued", self.issuer))
            .send()
            .await
            .expect("the provider answers");
        assert_eq!(response.status(), StatusCode::OK, "destroy-issued hook");
        let body: Value = response.json().await.expect("JSON");
        body["destroyed"].as_u64().unwrap_or(0)
    }

    /// One request to Kinto at `url` with `token`, failing the test
    /// unless it answers `expected`; returns the body and headers.
    pub async fn kinto(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> (Value, header::HeaderMap) {
        let mut request = self.http.request(method.clone(), url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("Kinto answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, expected, "{method} {url}: {text}");
        let value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (value, headers)
    }

    /// Creates a record with `fields` (a JSON object) in `collection` of
    /// the caller's `default` bucket at `base` ([`OAuthServer::kinto_url`]
    /// with a user token, or [`OAuthServer::resource_url`]); returns the
    /// id Kinto gave it.
    pub async fn kinto_create(
        &self,
        base: &str,
        token: &str,
        collection: &str,
        fields: Value,
    ) -> String {
        let (body, _) = self
            .kinto(
                reqwest::Method::POST,
                &records_url(base, collection),
                token,
                Some(json!({ "data": fields })),
                StatusCode::CREATED,
            )
            .await;
        body["data"]["id"].as_str().expect("record id").to_owned()
    }

    /// Merges `fields` into record `id` (PATCH; other fields are kept);
    /// returns the record as it is now.
    pub async fn kinto_update(
        &self,
        base: &str,
        token: &str,
        collection: &str,
        id: &str,
        fields: Value,
    ) -> Value {
        let (body, _) = self
            .kinto(
                reqwest::Method::PATCH,
                &format!("{}/{id}", records_url(base, collection)),
                token,
                Some(json!({ "data": fields })),
                StatusCode::OK,
            )
            .await;
        body["data"].clone()
    }

    /// Deletes record `id`; Kinto keeps a tombstone
    /// `{"id", "last_modified", "deleted": true}` that `_since` listings show.
    pub async fn kinto_delete(&self, base: &str, token: &str, collection: &str, id: &str) {
        self.kinto(
            reqwest::Method::DELETE,
            &format!("{}/{id}", records_url(base, collection)),
            token,
            None,
            StatusCode::OK,
        )
        .await;
    }

    /// Record `id`, or `None` when there is none (404).
    pub async fn kinto_get(
        &self,
        base: &str,
        token: &str,
        collection: &str,
        id: &str,
    ) -> Option<Value> {
        let url = format!("{}/{id}", records_url(base, collection));
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .expect("Kinto answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::OK => Some(body["data"].clone()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {url}: {other} {body}"),
        }
    }

    /// The listing of `collection` with `query` (e.g. `[("_since", "0")]`),
    /// every page followed (`Next-Page`): tombstones included when the
    /// query asks for them (`_since`, `_before`, `gt_last_modified`, …).
    pub async fn kinto_list(
        &self,
        base: &str,
        token: &str,
        collection: &str,
        query: &[(&str, &str)],
    ) -> Vec<Value> {
        let mut url = records_url(base, collection);
        if !query.is_empty() {
            url = url::Url::parse_with_params(&url, query)
                .expect("records URL")
                .to_string();
        }
        let mut records = Vec::new();
        loop {
            let (body, headers) = self
                .kinto(reqwest::Method::GET, &url, token, None, StatusCode::OK)
                .await;
            records.extend(body["data"].as_array().cloned().unwrap_or_default());
            match headers.get("Next-Page").and_then(|v| v.to_str().ok()) {
                Some(next) => url = next.to_owned(),
                None => return records,
            }
        }
    }

    /// Every live record of `collection` (no tombstones), newest first.
    pub async fn kinto_all(&self, base: &str, token: &str, collection: &str) -> Vec<Value> {
        let mut records = self.kinto_list(base, token, collection, &[]).await;
        records.retain(|r| r["deleted"] != Value::Bool(true));
        records
    }
}

/// The records endpoint of `collection` in the caller's `default` bucket.
pub fn records_url(base: &str, collection: &str) -> String {
    format!("{base}/buckets/default/collections/{collection}/records")
}

fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Keeps the cookies a response sets (by name; paths are ignored, which is
/// enough for the provider's login pages).
fn take_cookies(response: &reqwest::Response, cookies: &mut Vec<(String, String)>) {
    for set in response.headers().get_all(header::SET_COOKIE) {
        let Ok(set) = set.to_str() else { continue };
        let pair = set.split(';').next().unwrap_or_default();
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        cookies.retain(|(n, _)| n != name.trim());
        if !value.is_empty() {
            cookies.push((name.trim().to_owned(), value.to_owned()));
        }
    }
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        for (_, child) in &self.processes {
            signal_group(child, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.processes {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                signal_group(child, "KILL");
            }
            let _ = child.wait();
        }
    }
}
