//! What the config file says about a cloud application's REST API.
//!
//! The endpoint is declarative: the config names, per object, where its
//! records live, which fields hold the id and the modification time, how to
//! ask for "modified since T", and how each field is written in JSON. This
//! module reads and checks that description; nothing here talks to a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::schema::DataType;

/// Requests per second when the config sets none.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 20.0;
/// Requests in flight at once when the config sets none.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// How long one request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the id set is compared when the API has no deleted-records
/// request.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(300);
/// How far back each poll looks before the last modification time seen.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(2);
/// Records per list request.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Tries of one request (the first included) before its error is returned.
pub const DEFAULT_ATTEMPTS: u32 = 6;

/// The `http` keys of an endpoint section, as written in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Headers sent with every request (an application id, a version).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How requests authenticate; the secret is the endpoint's password.
    pub auth: Option<RawAuth>,
    /// Largest request rate.
    pub requests_per_second: Option<f64>,
    /// Largest number of requests in flight.
    pub concurrency: Option<usize>,
    /// Longest a request may take (`"30s"`).
    pub timeout: Option<String>,
    /// Tries of one request before giving up (retries included).
    pub attempts: Option<u32>,
    /// How often the id set is compared to find deletes (`"5m"`).
    pub reconcile_interval: Option<String>,
    /// The objects (the "tables" of the API).
    #[serde(default)]
    pub objects: Vec<RawObject>,
}

/// `auth = { scheme = "...", ... }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// `bearer`, `header`, `basic`, `oauth2` or `none`.
    pub scheme: String,
    /// The header that carries the key (`header` only).
    pub header: Option<String>,
    /// The user name (`basic` only).
    pub user: Option<String>,
    /// The token endpoint (`oauth2` only).
    pub token_url: Option<String>,
    /// The client id (`oauth2` only; the endpoint's password is the
    /// client secret).
    pub client_id: Option<String>,
    /// `client_credentials` (default) or `refresh_token` (`oauth2` only).
    pub grant: Option<String>,
    /// The scopes asked for, space-separated (`oauth2` only).
    pub scope: Option<String>,
    /// Other form parameters of the token request, such as `audience` or
    /// `resource` (`oauth2` only).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// How the client authenticates to the token endpoint: `basic`
    /// (default) or `post` (`oauth2` only).
    pub client_auth: Option<String>,
    /// The environment variable holding the refresh token (`refresh_token`
    /// grant).
    pub refresh_token_env: Option<String>,
    /// The file holding the refresh token (`refresh_token` grant; relative
    /// to the config file).
    pub refresh_token_file: Option<PathBuf>,
}

/// One `[[<side>.objects]]` section. Every key but `name` may come from a
/// preset (`preset = "parse"`); a key written here wins over the preset's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObject {
    /// The name `[[tables]]` uses for it.
    pub name: String,
    /// A shipped description of a known API (`parse`, `pocketbase`), or a
    /// TOML file of one's own (a path, relative to the config file), that
    /// fills the keys this section does not set.
    pub preset: Option<String>,
    /// Path of the collection under the base URL; list and create go
    /// there, get, update and delete to `<path>/<id>`.
    pub path: Option<String>,
    /// Where a list response holds the records (dotted path; empty: the
    /// body is the array).
    pub records: Option<String>,
    /// Where a single-record answer (create, read, update) holds the
    /// record (dotted path; empty: the body is the record).
    pub record: Option<String>,
    /// Where a request body (create, update) holds the record (dotted
    /// path; empty, the default: the body is the record).
    pub request_record: Option<String>,
    /// The id field (a dotted path; the column is its last part).
    pub id: Option<String>,
    /// The modification-time field (required: without it nothing can be
    /// synced incrementally; a dotted path).
    pub modified: Option<String>,
    /// The creation-time field (a dotted path).
    pub created: Option<String>,
    /// `PUT` or `PATCH`.
    pub update_method: Option<String>,
    /// The statuses that mean "no such record" (default `[404]`).
    pub not_found: Option<Vec<u16>>,
    /// Query parameters asking for records modified at or after `{since}`.
    #[serde(default)]
    pub since: BTreeMap<String, String>,
    /// Query parameters ordering a list by modification time, oldest first.
    #[serde(default)]
    pub order: BTreeMap<String, String>,
    /// The query parameter that sets the page size.
    pub limit_param: Option<String>,
    /// The query parameter that skips records (offset paging), used when
    /// more records than a page share one modification time.
    pub offset_param: Option<String>,
    /// The query parameter that names a page by its number, counted from
    /// 1 (page paging), where the API has no offset.
    pub page_param: Option<String>,
    /// Where a list response says how many records the query matches in
    /// all (dotted path), for telling a complete listing from a cut one.
    pub total: Option<String>,
    /// Records per page.
    pub page_size: Option<usize>,
    /// How `{since}` is written: `rfc3339` (default), `unix`, `unix_ms`,
    /// or a `chrono` format of the time in UTC (`%Y-%m-%d %H:%M:%S%.3fZ`).
    pub time_format: Option<String>,
    /// How far back each poll looks (`"2s"`).
    pub overlap: Option<String>,
    /// JSON written to clear a field on update (default `null`).
    pub clear: Option<String>,
    /// A field the agent fills with a fresh token when it creates a record,
    /// so that a create whose response was lost can be found again.
    pub create_token: Option<String>,
    /// Query parameters finding the record whose token is `{token}`.
    #[serde(default)]
    pub find_token: BTreeMap<String, String>,
    /// Query parameters finding a record by its own values, for a create
    /// whose answer was lost or unreadable: `{field}` stands for a field's
    /// value (`{ filter = "email='{email}'" }`).
    #[serde(default)]
    pub find_created: BTreeMap<String, String>,
    /// Wrapping templates by field type (`timestamptz`, `reference`, ...),
    /// for fields without a `wrap` of their own; `{object}` in a
    /// reference's template stands for the object it references.
    #[serde(default)]
    pub wraps: BTreeMap<String, String>,
    /// A deleted-records request, where the API has one.
    pub deleted: Option<RawDeleted>,
    /// Ids the agent picks for the records it creates, where the API takes
    /// a client's id: a create is then found again by a GET of its id.
    pub own_ids: Option<RawOwnIds>,
    /// Whether an empty string is read as NULL, for APIs that have no
    /// NULL and answer `""` for a field never set (text, dates,
    /// references).
    pub empty_is_null: Option<bool>,
    /// The synced fields and how each is written.
    #[serde(default)]
    pub fields: BTreeMap<String, RawField>,
}

impl RawObject {
    /// This section over `preset`: what it sets wins, maps are merged
    /// (its entries win).
    fn over(self, preset: RawObject) -> RawObject {
        fn merged(
            preset: BTreeMap<String, String>,
            own: BTreeMap<String, String>,
        ) -> BTreeMap<String, String> {
            let mut out = preset;
            out.extend(own);
            out
        }
        // A query written here replaces the preset's whole: it is one
        // filter, not a set of options.
        let query = |own: BTreeMap<String, String>, preset: BTreeMap<String, String>| {
            if own.is_empty() {
                preset
            } else {
                own
            }
        };
        let mut fields = preset.fields;
        fields.extend(self.fields);
        RawObject {
            name: self.name,
            preset: self.preset,
            path: self.path.or(preset.path),
            records: self.records.or(preset.records),
            record: self.record.or(preset.record),
            request_record: self.request_record.or(preset.request_record),
            id: self.id.or(preset.id),
            modified: self.modified.or(preset.modified),
            created: self.created.or(preset.created),
            update_method: self.update_method.or(preset.update_method),
            not_found: self.not_found.or(preset.not_found),
            since: query(self.since, preset.since),
            order: query(self.order, preset.order),
            limit_param: self.limit_param.or(preset.limit_param),
            offset_param: self.offset_param.or(preset.offset_param),
            page_param: self.page_param.or(preset.page_param),
            total: self.total.or(preset.total),
            page_size: self.page_size.or(preset.page_size),
            time_format: self.time_format.or(preset.time_format),
            overlap: self.overlap.or(preset.overlap),
            clear: self.clear.or(preset.clear),
            create_token: self.create_token.or(preset.create_token),
            find_token: query(self.find_token, preset.find_token),
            find_created: query(self.find_created, preset.find_created),
            wraps: merged(preset.wraps, self.wraps),
            deleted: self.deleted.or(preset.deleted),
            own_ids: self.own_ids.or(preset.own_ids),
            empty_is_null: self.empty_is_null.or(preset.empty_is_null),
            fields,
        }
    }
}

/// `own_ids = { length = 15, alphabet = "abc...789" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwnIds {
    /// Characters per id.
    pub length: usize,
    /// The characters an id is made of.
    pub alphabet: String,
}

/// How the agent makes the ids of the records it creates.
#[derive(Debug, Clone)]
pub struct OwnIds {
    /// Characters per id.
    pub length: usize,
    /// The characters an id is made of.
    pub alphabet: Vec<char>,
}

impl OwnIds {
    /// A new random id.
    pub fn generate(&self) -> String {
        (0..self.length)
            .map(|_| self.alphabet[fastrand::usize(..self.alphabet.len())])
            .collect()
    }
}

/// `deleted = { path = "...", since = {...}, records = "...", id = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeleted {
    /// Path of the deleted-records list.
    pub path: String,
    /// Query parameters asking for deletes at or after `{since}`.
    #[serde(default)]
    pub since: BTreeMap<String, String>,
    /// Where the response holds the deleted records.
    pub records: Option<String>,
    /// The id field of a deleted record.
    pub id: Option<String>,
    /// The deletion-time field of a deleted record.
    pub deleted_at: String,
    /// A field that is `true` on a deleted record, where the answer also
    /// lists live ones (tombstones in a changes feed): only records with
    /// it count as deleted, and the object's own listing skips them.
    pub flag: Option<String>,
}

/// A field: its type alone (`"text"`) or a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawField {
    /// Just the type.
    Type(String),
    /// Type and how it is written.
    Full(RawFieldSpec),
}

/// `{ type = "...", path = "...", wrap = "...", object = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFieldSpec {
    /// The canonical type, or `reference`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where the value sits in a record (dotted path; default: the name).
    pub path: Option<String>,
    /// A JSON template holding `"{}"` where the value goes, for APIs that
    /// wrap values (`{"__type":"Date","iso":"{}"}`).
    pub wrap: Option<String>,
    /// The referenced object (`reference` only).
    pub object: Option<String>,
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    None,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<header>: <secret>`.
    Header(String),
    /// `Authorization: Basic` with this user and the secret.
    Basic(String),
    /// `Authorization: Bearer <token>`, the token from an OAuth2 token
    /// endpoint (the secret is the client secret).
    OAuth2(OAuth2),
}

/// Which OAuth2 grant gets the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The client's own credentials.
    ClientCredentials,
    /// A refresh token, read from where `RefreshToken` says.
    RefreshToken(RefreshTokenFrom),
}

/// Where the first refresh token is read (a newer one, when the provider
/// rotates them, is kept in the endpoint's state). It is read when a token
/// is asked for, so the config never holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTokenFrom {
    /// An environment variable.
    Env(String),
    /// A file.
    File(PathBuf),
}

/// An OAuth2 client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The grant.
    pub grant: Grant,
    /// Scopes asked for.
    pub scope: Option<String>,
    /// Other form parameters of the token request.
    pub params: BTreeMap<String, String>,
    /// Whether the client secret goes in the form (`post`) rather than in
    /// HTTP Basic.
    pub secret_in_form: bool,
}

/// How `{since}` is written into a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2024-05-01T13:45:00.123Z`.
    Rfc3339,
    /// Seconds since 1970.
    Unix,
    /// Milliseconds since 1970.
    UnixMs,
    /// A `chrono` format of the time in UTC (`%Y-%m-%d %H:%M:%S%.3fZ`).
    Pattern(String),
}

/// A validated `http` endpoint description.
#[derive(Clone)]
pub struct HttpOptions {
    /// Headers for every request.
    pub headers: BTreeMap<String, String>,
    /// Authentication scheme.
    pub auth: Auth,
    /// Largest request rate.
    pub requests_per_second: f64,
    /// Largest number of requests in flight.
    pub concurrency: usize,
    /// Longest a request may take.
    pub timeout: Duration,
    /// Tries of one request.
    pub attempts: u32,
    /// How often the id set is compared.
    pub reconcile_interval: Duration,
    /// The objects.
    pub objects: Vec<ObjectSpec>,
    /// A directory where the endpoint keeps what it must remember (the
    /// agent's state directory); `None` for commands that only describe.
    pub state_dir: Option<PathBuf>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be keys: only their names are shown.
        f.debug_struct("HttpOptions")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth", &self.auth)
            .field(
                "objects",
                &self.objects.iter().map(|o| &o.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HttpOptions {
    /// The object called `name`.
    pub fn object(&self, name: &str) -> Option<&ObjectSpec> {
        self.objects.iter().find(|o| o.name == name)
    }
}

/// One validated object.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    /// The name tables use.
    pub name: String,
    /// Collection path (no trailing slash).
    pub path: String,
    /// Where list responses hold the records.
    pub records: Vec<String>,
    /// Where single-record answers hold the record.
    pub record: Vec<String>,
    /// Where request bodies hold the record.
    pub request_record: Vec<String>,
    /// The id column (the last part of its path).
    pub id: String,
    /// Where a record holds its id.
    pub id_path: Vec<String>,
    /// The modification-time column.
    pub modified: String,
    /// Where a record holds its modification time.
    pub modified_path: Vec<String>,
    /// The creation-time column.
    pub created: Option<String>,
    /// Where a record holds its creation time.
    pub created_path: Vec<String>,
    /// `PUT` or `PATCH`.
    pub update_method: reqwest::Method,
    /// The statuses that mean "no such record".
    pub not_found: Vec<u16>,
    /// Query asking for "modified at or after `{since}`".
    pub since: BTreeMap<String, String>,
    /// Query ordering by modification time.
    pub order: BTreeMap<String, String>,
    /// Page-size parameter.
    pub limit_param: Option<String>,
    /// Offset parameter.
    pub offset_param: Option<String>,
    /// Page-number parameter.
    pub page_param: Option<String>,
    /// Where a list response holds the number of records matched.
    pub total: Option<Vec<String>>,
    /// Records per page.
    pub page_size: usize,
    /// How `{since}` is written.
    pub time_format: TimeFormat,
    /// How far back each poll looks.
    pub overlap: Duration,
    /// JSON that clears a field.
    pub clear: serde_json::Value,
    /// Field holding the create token.
    pub create_token: Option<String>,
    /// Query finding a record by its token.
    pub find_token: BTreeMap<String, String>,
    /// Query finding a record by its own values.
    pub find_created: BTreeMap<String, String>,
    /// The deleted-records request.
    pub deleted: Option<DeletedSpec>,
    /// Ids the agent picks for its creates.
    pub own_ids: Option<OwnIds>,
    /// Whether `""` reads as NULL.
    pub empty_is_null: bool,
    /// The synced fields, in name order.
    pub fields: Vec<FieldSpec>,
}

impl ObjectSpec {
    /// Whether an answer with `status` says there is no such record.
    pub fn is_not_found(&self, status: reqwest::StatusCode) -> bool {
        self.not_found.contains(&status.as_u16())
    }

    /// Whether a create whose outcome is unknown can be looked for.
    pub fn can_find_creates(&self) -> bool {
        self.own_ids.is_some() || self.create_token.is_some() || !self.find_created.is_empty()
    }
}

/// A validated deleted-records request.
#[derive(Debug, Clone)]
pub struct DeletedSpec {
    /// Its path.
    pub path: String,
    /// Query asking for deletes since `{since}`.
    pub since: BTreeMap<String, String>,
    /// Where the response holds the records.
    pub records: Vec<String>,
    /// Where a deleted record holds its id.
    pub id: Vec<String>,
    /// Where a deleted record holds its deletion time.
    pub deleted_at: Vec<String>,
    /// Where a record says it is deleted, when the answer mixes live and
    /// deleted records.
    pub flag: Option<Vec<String>>,
}

/// One field of an object.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// The column name the mapping uses.
    pub name: String,
    /// Where it sits in a record.
    pub path: Vec<String>,
    /// Its canonical type.
    pub data_type: DataType,
    /// The wrapping template and the path of the value inside it.
    pub wrap: Option<Wrap>,
    /// The object it references, for a reference.
    pub references: Option<String>,
}

/// A JSON template a value is wrapped in.
#[derive(Debug, Clone)]
pub struct Wrap {
    /// The template with `"{}"` where the value goes.
    pub template: serde_json::Value,
    /// The path of the placeholder inside the template.
    pub at: Vec<String>,
}

/// Splits a dotted path (`data.items`); empty or `.` is the root.
pub fn split_path(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks a dotted path (`meta.id`; empty for "the whole"): no part of
/// it may be empty, as `meta.` or `a..b` are typos, not keys.
fn dotted_path(at: &str, text: &str) -> Result<(), String> {
    if !text.is_empty() && text.split('.').any(|part| part.trim().is_empty()) {
        return Err(format!(
            "{at}: {text:?} has an empty part (a dotted path names keys: \"id\", \"meta.id\"; \"\" for the whole)"
        ));
    }
    Ok(())
}

fn duration(at: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("{at}: {text:?} is not a duration like \"2s\": {e}")),
    }
}

impl RawHttp {
    /// Whether any `http` key is set (they are refused on database
    /// endpoints).
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
            && self.auth.is_none()
            && self.requests_per_second.is_none()
            && self.concurrency.is_none()
            && self.timeout.is_none()
            && self.attempts.is_none()
            && self.reconcile_interval.is_none()
            && self.objects.is_empty()
    }

    /// Checks the description; errors start with the key at fault, under
    /// `at` (`target.objects[0].modified: ...`). A preset file's path is
    /// relative to `base` (the config file's directory).
    pub fn validate(self, at: &str, base: &Path) -> Result<HttpOptions, String> {
        let auth = match &self.auth {
            None => Auth::None,
            Some(raw) => {
                let only = |key: &str, set: bool, scheme: &str| {
                    if set {
                        Err(format!(
                            "{at}.auth.{key}: not used with scheme = \"{scheme}\""
                        ))
                    } else {
                        Ok(())
                    }
                };
                let oauth_keys = [
                    ("token_url", raw.token_url.is_some()),
                    ("client_id", raw.client_id.is_some()),
                    ("grant", raw.grant.is_some()),
                    ("scope", raw.scope.is_some()),
                    ("params", !raw.params.is_empty()),
                    ("client_auth", raw.client_auth.is_some()),
                    ("refresh_token_env", raw.refresh_token_env.is_some()),
                    ("refresh_token_file", raw.refresh_token_file.is_some()),
                ];
                if raw.scheme != "oauth2" {
                    for (key, set) in oauth_keys {
                        only(key, set, &raw.scheme)?;
                    }
                }
                match raw.scheme.as_str() {
                    "oauth2" => {
                        only("header", raw.header.is_some(), "oauth2")?;
                        only("user", raw.user.is_some(), "oauth2")?;
                        Auth::OAuth2(oauth2(&format!("{at}.auth"), raw, base)?)
                    }
                    "none" => {
                        only("header", raw.header.is_some(), "none")?;
                        only("user", raw.user.is_some(), "none")?;
                        Auth::None
                    }
                    "bearer" => {
                        only("header", raw.header.is_some(), "bearer")?;
                        only("user", raw.user.is_some(), "bearer")?;
                        Auth::Bearer
                    }
                    "header" => {
                        only("user", raw.user.is_some(), "header")?;
                        let name = raw.header.clone().ok_or_else(|| {
                            format!("{at}.auth.header: scheme = \"header\" needs the header's name")
                        })?;
                        reqwest::header::HeaderName::try_from(name.as_str())
                            .map_err(|_| format!("{at}.auth.header: {name:?} is not a header name"))?;
                        Auth::Header(name)
                    }
                    "basic" => {
                        only("header", raw.header.is_some(), "basic")?;
                        Auth::Basic(raw.user.clone().ok_or_else(|| {
                            format!("{at}.auth.user: scheme = \"basic\" needs the user name")
                        })?)
                    }
                    other => {
                        return Err(format!(
                            "{at}.auth.scheme: unknown scheme {other:?} (expected \"bearer\", \"header\", \"basic\", \"oauth2\" or \"none\")"
                        ))
                    }
                }
            }
        };
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::try_from(name.as_str())
                .map_err(|_| format!("{at}.headers: {name:?} is not a header name"))?;
            reqwest::header::HeaderValue::try_from(value.as_str()).map_err(|_| {
                format!("{at}.headers.{name}: the value is not a valid header value")
            })?;
        }
        let requests_per_second = self
            .requests_per_second
            .unwrap_or(DEFAULT_REQUESTS_PER_SECOND);
        if !(requests_per_second > 0.0 && requests_per_second.is_finite()) {
            return Err(format!("{at}.requests_per_second: must be more than zero"));
        }
        let concurrency = self.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(format!("{at}.concurrency: must be at least 1"));
        }
        let attempts = self.attempts.unwrap_or(DEFAULT_ATTEMPTS);
        if attempts == 0 {
            return Err(format!("{at}.attempts: must be at least 1"));
        }
        let timeout = duration(
            &format!("{at}.timeout"),
            self.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        )?;
        let reconcile_interval = duration(
            &format!("{at}.reconcile_interval"),
            self.reconcile_interval.as_deref(),
            DEFAULT_RECONCILE_INTERVAL,
        )?;
        if self.objects.is_empty() {
            return Err(format!(
                "{at}.objects: an http endpoint needs at least one [[{at}.objects]] section"
            ));
        }
        let mut objects: Vec<ObjectSpec> = Vec::new();
        for (i, raw) in self.objects.into_iter().enumerate() {
            let object = raw.validate(&format!("{at}.objects[{i}]"), base)?;
            if objects.iter().any(|o| o.name == object.name) {
                return Err(format!(
                    "{at}.objects[{i}].name: object {:?} is described twice",
                    object.name
                ));
            }
            objects.push(object);
        }
        for (i, object) in objects.iter().enumerate() {
            for field in &object.fields {
                if let Some(referenced) = &field.references {
                    if !objects.iter().any(|o| &o.name == referenced) {
                        return Err(format!(
                            "{at}.objects[{i}].fields.{}.object: no object {referenced:?} is described",
                            field.name
                        ));
                    }
                }
            }
        }
        Ok(HttpOptions {
            headers: self.headers,
            auth,
            requests_per_second,
            concurrency,
            timeout,
            attempts,
            reconcile_interval,
            objects,
            state_dir: None,
        })
    }
}

/// The `{name}` placeholders of a query template (names of letters,
/// digits and `_`; JSON's own braces are not placeholders).
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let len = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len > 0 && after[len..].starts_with('}') {
            found.push(&after[..len]);
        }
        rest = after;
    }
    found
}

/// Reads `auth = { scheme = "oauth2", ... }`.
fn oauth2(at: &str, raw: &RawAuth, base: &Path) -> Result<OAuth2, String> {
    let token_url = raw
        .token_url
        .clone()
        .ok_or_else(|| format!("{at}.token_url: the OAuth2 token endpoint is missing"))?;
    url::Url::parse(&token_url)
        .map_err(|e| format!("{at}.token_url: {token_url:?} is not a URL: {e}"))?;
    let client_id = raw
        .client_id
        .clone()
        .ok_or_else(|| format!("{at}.client_id: the OAuth2 client id is missing"))?;
    let grant = match raw.grant.as_deref().unwrap_or("client_credentials") {
        "client_credentials" => {
            if raw.refresh_token_env.is_some() || raw.refresh_token_file.is_some() {
                return Err(format!(
                    "{at}.grant: a refresh token goes with grant = \"refresh_token\""
                ));
            }
            Grant::ClientCredentials
        }
        "refresh_token" => Grant::RefreshToken(
            match (&raw.refresh_token_env, &raw.refresh_token_file) {
                (Some(var), None) => RefreshTokenFrom::Env(var.clone()),
                (None, Some(file)) => RefreshTokenFrom::File(if file.is_relative() {
                    base.join(file)
                } else {
                    file.clone()
                }),
                _ => {
                    return Err(format!(
                        "{at}.refresh_token_env: grant = \"refresh_token\" reads the refresh token from refresh_token_env or refresh_token_file (one of them)"
                    ))
                }
            },
        ),
        other => {
            return Err(format!(
                "{at}.grant: {other:?} (expected \"client_credentials\" or \"refresh_token\")"
            ))
        }
    };
    let secret_in_form = match raw.client_auth.as_deref().unwrap_or("basic") {
        "basic" => false,
        "post" => true,
        other => {
            return Err(format!(
                "{at}.client_auth: {other:?} (expected \"basic\" or \"post\")"
            ))
        }
    };
    Ok(OAuth2 {
        token_url,
        client_id,
        grant,
        scope: raw.scope.clone(),
        params: raw.params.clone(),
        secret_in_form,
    })
}

/// A dotted path and the column it names: its last part.
fn column_path(text: &str) -> (String, Vec<String>) {
    let path = split_path(text);
    let column = path.last().cloned().unwrap_or_default();
    (column, path)
}

/// The shipped presets: (name, TOML).
const PRESETS: [(&str, &str); 3] = [
    ("parse", include_str!("presets/parse.toml")),
    ("pocketbase", include_str!("presets/pocketbase.toml")),
    ("kinto", include_str!("presets/kinto.toml")),
];

/// The preset `name` (shipped) or file `name` (a path, relative to
/// `base`) for object `object`: its text with `{name}` standing for the
/// object's name.
fn preset(at: &str, name: &str, object: &str, base: &Path) -> Result<RawObject, String> {
    let text = match PRESETS.iter().find(|(shipped, _)| *shipped == name) {
        Some((_, text)) => (*text).to_owned(),
        None if name.ends_with(".toml") || name.contains('/') => {
            let file = base.join(name);
            std::fs::read_to_string(&file)
                .map_err(|e| format!("{at}.preset: cannot read {}: {e}", file.display()))?
        }
        None => {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{at}.preset: no preset {name:?} (shipped: {}; or a .toml file of one's own)",
                known.join(", ")
            ));
        }
    };
    let mut value: toml::Value = toml::from_str(&text)
        .map_err(|e| format!("{at}.preset: {name}: {}", e.message().trim()))?;
    substitute(&mut value, object);
    if let toml::Value::Table(table) = &mut value {
        table.insert("name".to_owned(), toml::Value::String(object.to_owned()));
    }
    value
        .try_into()
        .map_err(|e: toml::de::Error| format!("{at}.preset: {name}: {}", e.message().trim()))
}

/// `{name}` replaced by `object` in the paths of `value` (`path`,
/// `deleted.path`): elsewhere `{name}` may be a field's placeholder
/// (`find_created = { filter = "name='{name}'" }`).
fn substitute(value: &mut toml::Value, object: &str) {
    let Some(table) = value.as_table_mut() else {
        return;
    };
    if let Some(toml::Value::String(path)) = table.get_mut("path") {
        *path = path.replace("{name}", object);
    }
    if let Some(toml::Value::Table(deleted)) = table.get_mut("deleted") {
        if let Some(toml::Value::String(path)) = deleted.get_mut("path") {
            *path = path.replace("{name}", object);
        }
    }
}

impl RawObject {
    fn validate(self, at: &str, base: &Path) -> Result<ObjectSpec, String> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(format!("{at}.name: must name the object"));
        }
        let at = format!("{at} ({name})");
        let raw = match self.preset.clone() {
            Some(preset_name) => self.over(preset(&at, &preset_name, &name, base)?),
            None => self,
        };
        let dotted = [
            ("records", &raw.records),
            ("record", &raw.record),
            ("request_record", &raw.request_record),
            ("id", &raw.id),
            ("modified", &raw.modified),
            ("created", &raw.created),
            ("total", &raw.total),
        ];
        for (key, text) in dotted {
            if let Some(text) = text {
                dotted_path(&format!("{at}.{key}"), text)?;
            }
        }
        for (field, spec) in &raw.fields {
            if let RawField::Full(RawFieldSpec {
                path: Some(path), ..
            }) = spec
            {
                dotted_path(&format!("{at}.fields.{field}.path"), path)?;
            }
        }
        let Some(modified) = raw.modified.clone().filter(|m| !m.trim().is_empty()) else {
            return Err(format!(
                "{at}.modified: no modification-time field: an object without one cannot be synced incrementally, so it is refused (name the field that holds the time of the last change, e.g. modified = \"updatedAt\")"
            ));
        };
        let Some(path) = raw.path.clone() else {
            return Err(format!(
                "{at}.path: the collection's path is missing (e.g. path = \"/items\", or a preset)"
            ));
        };
        if !path.starts_with('/') {
            return Err(format!(
                "{at}.path: {path:?} must start with / (it is appended to the endpoint's URL)"
            ));
        }
        let (id, id_path) = column_path(raw.id.as_deref().unwrap_or("id"));
        let (modified, modified_path) = column_path(&modified);
        let (created, created_path) = match raw.created.as_deref() {
            Some(text) => {
                let (column, path) = column_path(text);
                (Some(column), path)
            }
            None => (None, Vec::new()),
        };
        let update_method = match raw.update_method.as_deref().unwrap_or("PATCH") {
            m if m.eq_ignore_ascii_case("put") => reqwest::Method::PUT,
            m if m.eq_ignore_ascii_case("patch") => reqwest::Method::PATCH,
            other => {
                return Err(format!(
                    "{at}.update_method: {other:?} (expected \"PUT\" or \"PATCH\")"
                ))
            }
        };
        let not_found = raw.not_found.clone().unwrap_or_else(|| vec![404]);
        if let Some(bad) = not_found.iter().find(|s| !(400..500).contains(*s)) {
            return Err(format!(
                "{at}.not_found: {bad} is not a 4xx status (a missing record is the client's question, not the server's fault)"
            ));
        }
        if raw.since.is_empty() || !raw.since.values().any(|v| v.contains("{since}")) {
            return Err(format!(
                "{at}.since: the query asking for records modified since a time must hold {{since}} (e.g. since = {{ modified_after = \"{{since}}\" }})"
            ));
        }
        let time_format = match raw.time_format.as_deref().unwrap_or("rfc3339") {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            pattern if pattern.contains('%') => {
                use std::fmt::Write as _;
                // A pattern chrono cannot write fails here, not mid-sync.
                let mut probe = String::new();
                if write!(
                    probe,
                    "{}",
                    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH.format(pattern)
                )
                .is_err()
                {
                    return Err(format!(
                        "{at}.time_format: {pattern:?} is not a chrono time format"
                    ));
                }
                TimeFormat::Pattern(pattern.to_owned())
            }
            other => {
                return Err(format!(
                    "{at}.time_format: {other:?} (expected \"rfc3339\", \"unix\", \"unix_ms\" or a chrono format such as \"%Y-%m-%d %H:%M:%S%.3fZ\")"
                ))
            }
        };
        if raw.offset_param.is_some() && raw.page_param.is_some() {
            return Err(format!(
                "{at}.page_param: an API pages by offset or by page number: set offset_param or page_param"
            ));
        }
        let page_size = raw.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 {
            return Err(format!("{at}.page_size: must be at least 1"));
        }
        let overlap = duration(
            &format!("{at}.overlap"),
            raw.overlap.as_deref(),
            DEFAULT_OVERLAP,
        )?;
        let clear = match &raw.clear {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("{at}.clear: {text:?} is not JSON: {e}"))?,
        };
        if raw.create_token.is_some() == raw.find_token.is_empty() {
            return Err(format!(
                "{at}.find_token: create_token and find_token go together (the field to fill, and the query that finds a record by it)"
            ));
        }
        if !raw.find_token.is_empty() && !raw.find_token.values().any(|v| v.contains("{token}")) {
            return Err(format!("{at}.find_token: the query must hold {{token}}"));
        }
        let own_ids = match raw.own_ids {
            None => None,
            Some(own) => {
                let alphabet: Vec<char> = own.alphabet.chars().collect();
                let mut distinct = alphabet.clone();
                distinct.sort_unstable();
                distinct.dedup();
                // Fewer than 64 bits of chance would let two creates meet.
                let bits = own.length as f64 * (distinct.len() as f64).log2();
                if distinct.len() < 2 || bits < 64.0 {
                    return Err(format!(
                        "{at}.own_ids: {} characters from {} distinct ones are too few to be unique (at least 64 bits: e.g. length = 15 of 36 characters)",
                        own.length,
                        distinct.len()
                    ));
                }
                Some(OwnIds {
                    length: own.length,
                    alphabet: distinct,
                })
            }
        };
        let deleted = match raw.deleted {
            None => None,
            Some(spec) => {
                if !spec.path.starts_with('/') {
                    return Err(format!("{at}.deleted.path: must start with /"));
                }
                if !spec.since.values().any(|v| v.contains("{since}")) {
                    return Err(format!("{at}.deleted.since: the query must hold {{since}}"));
                }
                Some(DeletedSpec {
                    path: spec.path.trim_end_matches('/').to_owned(),
                    since: spec.since,
                    records: split_path(spec.records.as_deref().unwrap_or("")),
                    id: spec
                        .id
                        .as_deref()
                        .map_or_else(|| id_path.clone(), split_path),
                    deleted_at: split_path(&spec.deleted_at),
                    flag: spec.flag.as_deref().map(split_path),
                })
            }
        };
        let mut fields = Vec::new();
        for (field, spec) in raw.fields {
            let fat = format!("{at}.fields.{field}");
            if [&id, &modified].contains(&&field) || created.as_ref() == Some(&field) {
                return Err(format!(
                    "{fat}: the id and time fields are always read; do not list them under fields"
                ));
            }
            if raw.create_token.as_ref() == Some(&field) {
                return Err(format!(
                    "{fat}: this is the create_token field, which the agent fills itself"
                ));
            }
            let spec = match spec {
                RawField::Type(kind) => RawFieldSpec {
                    kind,
                    path: None,
                    wrap: None,
                    object: None,
                },
                RawField::Full(spec) => spec,
            };
            let (data_type, references) = match spec.kind.as_str() {
                "reference" => (
                    DataType::Text,
                    Some(spec.object.clone().ok_or_else(|| {
                        format!("{fat}.object: a reference names the object it points to")
                    })?),
                ),
                kind => {
                    let data_type = data_type(kind).ok_or_else(|| {
                        format!(
                            "{fat}.type: unknown type {kind:?} (expected text, integer, decimal, float, bool, date, time, timestamp, timestamptz, json, uuid, bytes or reference)"
                        )
                    })?;
                    if spec.object.is_some() {
                        return Err(format!(
                            "{fat}.object: only a reference points to an object"
                        ));
                    }
                    (data_type, None)
                }
            };
            // The field's own template, else the one for its type.
            let template = spec.wrap.clone().or_else(|| {
                raw.wraps.get(&spec.kind).map(|t| match &references {
                    Some(object) => t.replace("{object}", object),
                    None => t.clone(),
                })
            });
            let wrap = match &template {
                None => None,
                Some(text) => {
                    let template: serde_json::Value = serde_json::from_str(text)
                        .map_err(|e| format!("{fat}.wrap: {text:?} is not JSON: {e}"))?;
                    let at_path = placeholder(&template).ok_or_else(|| {
                        format!("{fat}.wrap: the template must hold \"{{}}\" where the value goes")
                    })?;
                    Some(Wrap {
                        template,
                        at: at_path,
                    })
                }
            };
            fields.push(FieldSpec {
                path: split_path(spec.path.as_deref().unwrap_or(&field)),
                name: field,
                data_type,
                wrap,
                references,
            });
        }
        for (key, template) in &raw.find_created {
            for placeholder in placeholders(template) {
                if !fields.iter().any(|f| f.name == placeholder) {
                    return Err(format!(
                        "{at}.find_created.{key}: {{{placeholder}}} is not a field of the object"
                    ));
                }
            }
        }
        Ok(ObjectSpec {
            name,
            path: path.trim_end_matches('/').to_owned(),
            records: split_path(raw.records.as_deref().unwrap_or("")),
            record: split_path(raw.record.as_deref().unwrap_or("")),
            request_record: split_path(raw.request_record.as_deref().unwrap_or("")),
            id,
            id_path,
            modified,
            modified_path,
            created,
            created_path,
            update_method,
            not_found,
            since: raw.since,
            order: raw.order,
            limit_param: raw.limit_param,
            offset_param: raw.offset_param,
            page_param: raw.page_param,
            total: raw.total.as_deref().map(split_path),
            page_size,
            time_format,
            overlap,
            clear,
            create_token: raw.create_token,
            find_token: raw.find_token,
            find_created: raw.find_created,
            deleted,
            own_ids,
            empty_is_null: raw.empty_is_null.unwrap_or(false),
            fields,
        })
    }
}

/// The canonical type a field's `type` names.
fn data_type(name: &str) -> Option<DataType> {
    Some(match name {
        "text" | "string" => DataType::Text,
        "integer" | "int" => DataType::Int,
        "decimal" => DataType::Decimal,
        "float" | "number" => DataType::Float,
        "bool" | "boolean" => DataType::Bool,
        "date" => DataType::Date,
        "time" => DataType::Time,
        "timestamp" => DataType::Timestamp,
        "timestamptz" => DataType::TimestampTz,
        "json" => DataType::Json,
        "uuid" => DataType::Uuid,
        "bytes" => DataType::Bytes,
        _ => return None,
    })
}

/// The path of the `"{}"` string inside a template.
fn placeholder(template: &serde_json::Value) -> Option<Vec<String>> {
    match template {
        serde_json::Value::String(s) if s == "{}" => Some(Vec::new()),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            placeholder(v).map(|mut rest| {
                rest.insert(0, k.clone());
                rest
            })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpOptions, String> {
        let raw: RawHttp = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate("target", std::path::Path::new("."))
    }

    const PARSE: &str = r#"
headers = { "X-Parse-Application-Id" = "app" }
auth = { scheme = "header", header = "X-Parse-Master-Key" }
[[objects]]
name = "Customer"
path = "/classes/Customer"
records = "results"
id = "objectId"
modified = "updatedAt"
created = "createdAt"
update_method = "PUT"
since = { where = '{"updatedAt":{"$gte":{"__type":"Date","iso":"{since}"}}}' }
order = { order = "updatedAt,objectId" }
limit_param = "limit"
offset_param = "skip"
fields = { name = "text", company = { type = "reference", object = "Company", wrap = '{"__type":"Pointer","className":"Company","objectId":"{}"}' } }
[[objects]]
name = "Company"
path = "/classes/Company/"
modified = "updatedAt"
since = { where = "{since}" }
"#;

    #[test]
    fn reads_a_parse_server_description() {
        let options = parse(PARSE).unwrap();
        assert_eq!(options.auth, Auth::Header("X-Parse-Master-Key".into()));
        let customer = options.object("Customer").unwrap();
        assert_eq!(customer.records, vec!["results"]);
        assert_eq!(customer.update_method, reqwest::Method::PUT);
        let company = &customer.fields[0];
        assert_eq!(company.name, "company");
        assert_eq!(company.references.as_deref(), Some("Company"));
        assert_eq!(company.wrap.as_ref().unwrap().at, vec!["objectId"]);
        assert_eq!(options.object("Company").unwrap().path, "/classes/Company");
        assert_eq!(options.object("Company").unwrap().id, "id");
    }

    #[test]
    fn an_object_without_a_modification_time_is_refused() {
        let text = PARSE.replace("modified = \"updatedAt\"\ncreated", "created");
        let err = parse(&text).unwrap_err();
        assert!(
            err.starts_with("target.objects[0] (Customer).modified: no modification-time field"),
            "{err}"
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        for (from, to, expected) in [
            (
                "scheme = \"header\"",
                "scheme = \"digest\"",
                "target.auth.scheme: unknown scheme",
            ),
            (
                "object = \"Company\", wrap",
                "object = \"Nope\", wrap",
                "target.objects[0].fields.company.object: no object \"Nope\"",
            ),
            (
                "update_method = \"PUT\"",
                "update_method = \"POST\"",
                "target.objects[0] (Customer).update_method",
            ),
            (
                "type = \"reference\"",
                "type = \"pointer\"",
                "target.objects[0] (Customer).fields.company.type: unknown type",
            ),
            (
                "\"objectId\":\"{}\"}'",
                "\"objectId\":\"x\"}'",
                "fields.company.wrap: the template must hold",
            ),
            (
                "path = \"/classes/Customer\"",
                "path = \"classes/Customer\"",
                "(Customer).path: \"classes/Customer\" must start with /",
            ),
            (
                "since = { where = \"{since}\" }",
                "since = { where = \"x\" }",
                "(Company).since: the query",
            ),
        ] {
            let text = PARSE.replacen(from, to, 1);
            assert_ne!(text, PARSE, "{from}");
            let err = parse(&text).unwrap_err();
            assert!(err.contains(expected), "{from} -> {err}");
        }
    }

    #[test]
    fn a_dotted_path_with_an_empty_part_is_refused_naming_the_key() {
        let err = parse(
            "[[objects]]\nname = \"tasks\"\npreset = \"pocketbase\"\nid = \"meta.\"\nfields = { title = { type = \"text\", path = \"a..b\" } }\n",
        )
        .unwrap_err();
        assert!(
            err.contains("objects[0] (tasks).id: \"meta.\" has an empty part"),
            "{err}"
        );
    }

    #[test]
    fn a_preset_names_its_object_in_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "path = \"/v2/{name}\"\nmodified = \"updated\"\nsince = { after = \"{since}\" }\nfind_created = { filter = \"name='{name}'\" }\n",
        )
        .unwrap();
        let raw: RawHttp = toml::from_str(
            "[[objects]]\nname = \"people\"\npreset = \"mine.toml\"\nfields = { name = \"text\" }\n",
        )
        .unwrap();
        let options = raw.validate("target", dir.path()).unwrap();
        let people = options.object("people").unwrap();
        assert_eq!(people.path, "/v2/people");
        // `{name}` in a query is the field's value, filled per record.
        assert_eq!(people.find_created["filter"], "name='{name}'");
    }
}
