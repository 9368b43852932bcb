//! What the config file says about a cloud application's REST API.
//!
//! The endpoint is declarative: the config names, per object, where its
//! records live, which fields hold the id and the modification time, how to
//! ask for "modified since T", and how each field is written in JSON. This
//! module reads and checks that description; nothing here talks to a server.

use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// `bearer`, `header` or `basic`.
    pub scheme: String,
    /// The header that carries the key (`header` only).
    pub header: Option<String>,
    /// The user name (`basic` only).
    pub user: Option<String>,
}

/// One `[[<side>.objects]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObject {
    /// The name `[[tables]]` uses for it.
    pub name: String,
    /// Path of the collection under the base URL; list and create go
    /// there, get, update and delete to `<path>/<id>`.
    pub path: String,
    /// Where a list response holds the records (dotted path; empty: the
    /// body is the array).
    pub records: Option<String>,
    /// The id field.
    pub id: Option<String>,
    /// The modification-time field (required: without it nothing can be
    /// synced incrementally).
    pub modified: Option<String>,
    /// The creation-time field.
    pub created: Option<String>,
    /// `PUT` or `PATCH`.
    pub update_method: Option<String>,
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
    /// Records per page.
    pub page_size: Option<usize>,
    /// How `{since}` is written: `rfc3339` (default), `unix` or `unix_ms`.
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
    /// A deleted-records request, where the API has one.
    pub deleted: Option<RawDeleted>,
    /// The synced fields and how each is written.
    #[serde(default)]
    pub fields: BTreeMap<String, RawField>,
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
}

/// How `{since}` is written into a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// `2024-05-01T13:45:00.123Z`.
    Rfc3339,
    /// Seconds since 1970.
    Unix,
    /// Milliseconds since 1970.
    UnixMs,
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
    /// The id field.
    pub id: String,
    /// The modification-time field.
    pub modified: String,
    /// The creation-time field.
    pub created: Option<String>,
    /// `PUT` or `PATCH`.
    pub update_method: reqwest::Method,
    /// Query asking for "modified at or after `{since}`".
    pub since: BTreeMap<String, String>,
    /// Query ordering by modification time.
    pub order: BTreeMap<String, String>,
    /// Page-size parameter.
    pub limit_param: Option<String>,
    /// Offset parameter.
    pub offset_param: Option<String>,
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
    /// The deleted-records request.
    pub deleted: Option<DeletedSpec>,
    /// The synced fields, in name order.
    pub fields: Vec<FieldSpec>,
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
    /// The id field.
    pub id: String,
    /// The deletion-time field.
    pub deleted_at: String,
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
    /// `at` (`target.objects[0].modified: ...`).
    pub fn validate(self, at: &str) -> Result<HttpOptions, String> {
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
                match raw.scheme.as_str() {
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
                            "{at}.auth.scheme: unknown scheme {other:?} (expected \"bearer\", \"header\", \"basic\" or \"none\")"
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
            let object = raw.validate(&format!("{at}.objects[{i}]"))?;
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

impl RawObject {
    fn validate(self, at: &str) -> Result<ObjectSpec, String> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(format!("{at}.name: must name the object"));
        }
        let at = format!("{at} ({name})");
        let Some(modified) = self.modified.filter(|m| !m.trim().is_empty()) else {
            return Err(format!(
                "{at}.modified: no modification-time field: an object without one cannot be synced incrementally, so it is refused (name the field that holds the time of the last change, e.g. modified = \"updatedAt\")"
            ));
        };
        if !self.path.starts_with('/') {
            return Err(format!(
                "{at}.path: {:?} must start with / (it is appended to the endpoint's URL)",
                self.path
            ));
        }
        let id = self.id.unwrap_or_else(|| "id".to_owned());
        let update_method = match self.update_method.as_deref().unwrap_or("PATCH") {
            m if m.eq_ignore_ascii_case("put") => reqwest::Method::PUT,
            m if m.eq_ignore_ascii_case("patch") => reqwest::Method::PATCH,
            other => {
                return Err(format!(
                    "{at}.update_method: {other:?} (expected \"PUT\" or \"PATCH\")"
                ))
            }
        };
        if self.since.is_empty() || !self.since.values().any(|v| v.contains("{since}")) {
            return Err(format!(
                "{at}.since: the query asking for records modified since a time must hold {{since}} (e.g. since = {{ modified_after = \"{{since}}\" }})"
            ));
        }
        let time_format = match self.time_format.as_deref().unwrap_or("rfc3339") {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            other => {
                return Err(format!(
                    "{at}.time_format: {other:?} (expected \"rfc3339\", \"unix\" or \"unix_ms\")"
                ))
            }
        };
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        if page_size == 0 {
            return Err(format!("{at}.page_size: must be at least 1"));
        }
        let overlap = duration(
            &format!("{at}.overlap"),
            self.overlap.as_deref(),
            DEFAULT_OVERLAP,
        )?;
        let clear = match &self.clear {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("{at}.clear: {text:?} is not JSON: {e}"))?,
        };
        if self.create_token.is_some() == self.find_token.is_empty() {
            return Err(format!(
                "{at}.find_token: create_token and find_token go together (the field to fill, and the query that finds a record by it)"
            ));
        }
        if !self.find_token.is_empty() && !self.find_token.values().any(|v| v.contains("{token}")) {
            return Err(format!("{at}.find_token: the query must hold {{token}}"));
        }
        let deleted = match self.deleted {
            None => None,
            Some(raw) => {
                if !raw.path.starts_with('/') {
                    return Err(format!("{at}.deleted.path: must start with /"));
                }
                if !raw.since.values().any(|v| v.contains("{since}")) {
                    return Err(format!("{at}.deleted.since: the query must hold {{since}}"));
                }
                Some(DeletedSpec {
                    path: raw.path.trim_end_matches('/').to_owned(),
                    since: raw.since,
                    records: split_path(raw.records.as_deref().unwrap_or("")),
                    id: raw.id.unwrap_or_else(|| id.clone()),
                    deleted_at: raw.deleted_at,
                })
            }
        };
        let mut fields = Vec::new();
        for (field, raw) in self.fields {
            let fat = format!("{at}.fields.{field}");
            if [&id, &modified].contains(&&field) || self.created.as_ref() == Some(&field) {
                return Err(format!(
                    "{fat}: the id and time fields are always read; do not list them under fields"
                ));
            }
            if self.create_token.as_ref() == Some(&field) {
                return Err(format!(
                    "{fat}: this is the create_token field, which the agent fills itself"
                ));
            }
            let spec = match raw {
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
            let wrap = match &spec.wrap {
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
        Ok(ObjectSpec {
            name,
            path: self.path.trim_end_matches('/').to_owned(),
            records: split_path(self.records.as_deref().unwrap_or("")),
            id,
            modified,
            created: self.created,
            update_method,
            since: self.since,
            order: self.order,
            limit_param: self.limit_param,
            offset_param: self.offset_param,
            page_size,
            time_format,
            overlap,
            clear,
            create_token: self.create_token,
            find_token: self.find_token,
            deleted,
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
        raw.validate("target")
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
}
