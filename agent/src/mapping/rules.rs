//! The mapping sections of a table pair, as written in the config.
//!
//! ```toml
//! [[tables]]
//! source = "contacts"
//! target = "people"
//!
//! [tables.to_target]                       # source -> target
//! exclude = ["internal_note"]
//! filter = "status != 'archived'"          # only these rows travel
//! on_filter_exit = "keep"                  # or "delete": a copy whose row stops matching
//! [tables.to_target.columns]
//! email = "mail"                           # another column
//! full_name = { expression = "first_name + ' ' + last_name" }
//! origin = { constant = "crm", filters_back = true }
//! country_code = { lookup = { side = "target", table = "countries", match = "name", value = "code", from = "country" } }
//! owner_id = { relation = "users", column = "owner" }
//! legacy_ref = { column = "old_ref", translate = false }   # a reference copied as it is
//! ```

use std::path::Path;

use serde::Deserialize;
use tandem_connectors::Value;

use crate::config::{ConfigError, Side};

/// What happens to a copy whose row stops passing the direction's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterExit {
    /// The copy stays as it was last synced (default).
    #[default]
    Keep,
    /// The copy is deleted.
    Delete,
}

/// Where a lookup takes its value from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The side whose table is read.
    pub side: Side,
    /// The table read (a reference table: it is read whole and cached).
    pub table: String,
    /// Its column compared with the row's `from` value.
    #[serde(rename = "match")]
    pub match_column: String,
    /// Its column whose value is written.
    pub value: String,
    /// The column of the row being mapped.
    pub from: String,
}

/// How one column of the side written to gets its value.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleConfig {
    /// The value of another column. A reference to a synced pair is
    /// translated through that pair's ID map unless `translate` is false.
    Column {
        /// The column read.
        from: String,
        /// Whether a reference is translated (`translate = false`: copied
        /// as it is).
        translate: bool,
    },
    /// A CEL expression over the row.
    Expression(String),
    /// A fixed value; with `filters_back`, only rows holding it travel the
    /// opposite way.
    Constant {
        /// The value.
        value: Value,
        /// Whether it filters the opposite direction.
        filters_back: bool,
    },
    /// A value read from another table.
    Lookup(LookupConfig),
    /// A reference translated through the ID map of another pair.
    Relation {
        /// The referenced pair.
        pair: String,
        /// The column holding the reference on the side read from
        /// (default: the same name).
        from: Option<String>,
    },
}

/// One direction's mapping, as configured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectionConfig {
    /// Column rules by the column written to.
    pub columns: Vec<(String, RuleConfig)>,
    /// Columns of the side written to that are left alone.
    pub exclude: Vec<String>,
    /// Only rows for which this expression is true travel.
    pub filter: Option<String>,
    /// What happens when a row stops passing the filter.
    pub on_filter_exit: FilterExit,
}

/// Data splitting: an extra table on one side, filled from the other side's
/// row and shared by every row with the same natural key (for example
/// `contacts(company_name, ...)` -> `companies(name)` + `people(company_id,
/// ...)`). Read the other way, the extra table's values are joined back.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfig {
    /// The side the extra table is on.
    pub side: Side,
    /// The extra table.
    pub table: String,
    /// Its natural key: rows with equal values are one shared record.
    pub key: Vec<String>,
    /// The column of the pair's own table (on `side`) that references the
    /// extra table's primary key.
    pub reference: String,
    /// The extra table's columns and where their values come from (rules
    /// over the other side's row: column, expression or constant).
    pub columns: Vec<(String, RuleConfig)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSplit {
    #[serde(default = "default_split_side")]
    side: Side,
    table: String,
    key: Vec<String>,
    reference: String,
    #[serde(default)]
    columns: toml::Table,
}

fn default_split_side() -> Side {
    Side::Target
}

/// Reads one `[[tables.split]]` entry.
pub fn parse_split(file: &Path, at: &str, raw: toml::Value) -> Result<SplitConfig, ConfigError> {
    let fail = |message: String| ConfigError::new(file, message);
    let raw: RawSplit = raw.try_into().map_err(|e: toml::de::Error| {
        fail(format!("{at}: {}", e.message().trim().replace('\n', "; ")))
    })?;
    if raw.key.is_empty() {
        return Err(fail(format!("{at}.key: name at least one column")));
    }
    let columns = parse_columns(file, at, raw.columns)?;
    for (column, rule) in &columns {
        if matches!(rule, RuleConfig::Lookup(_) | RuleConfig::Relation { .. }) {
            return Err(fail(format!(
                "{at}.columns.{column}: a split column takes a column, an expression or a constant"
            )));
        }
    }
    Ok(SplitConfig {
        side: raw.side,
        table: raw.table,
        key: raw.key,
        reference: raw.reference,
        columns,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirection {
    #[serde(default)]
    columns: toml::Table,
    #[serde(default)]
    exclude: Vec<String>,
    filter: Option<String>,
    on_filter_exit: Option<FilterExit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    column: Option<String>,
    expression: Option<String>,
    constant: Option<toml::Value>,
    #[serde(default)]
    filters_back: bool,
    lookup: Option<LookupConfig>,
    relation: Option<String>,
    translate: Option<bool>,
}

/// Reads one direction's section (`at` names it in messages, for example
/// `tables[0].to_target`).
pub fn parse_direction(
    file: &Path,
    at: &str,
    raw: toml::Value,
) -> Result<DirectionConfig, ConfigError> {
    let fail = |message: String| ConfigError::new(file, message);
    let raw: RawDirection = raw.try_into().map_err(|e: toml::de::Error| {
        fail(format!("{at}: {}", e.message().trim().replace('\n', "; ")))
    })?;
    let columns = parse_columns(file, at, raw.columns)?;
    Ok(DirectionConfig {
        columns,
        exclude: raw.exclude,
        filter: raw.filter,
        on_filter_exit: raw.on_filter_exit.unwrap_or_default(),
    })
}

fn parse_columns(
    file: &Path,
    at: &str,
    table: toml::Table,
) -> Result<Vec<(String, RuleConfig)>, ConfigError> {
    let fail = |message: String| ConfigError::new(file, message);
    let mut columns = Vec::new();
    for (to, value) in table {
        let here = format!("{at}.columns.{to}");
        let rule = match value {
            toml::Value::String(from) => RuleConfig::Column {
                from,
                translate: true,
            },
            other @ toml::Value::Table(_) => {
                let raw: RawRule = other
                    .try_into()
                    .map_err(|e: toml::de::Error| fail(format!("{here}: {}", e.message().trim().replace('\n', "; "))))?;
                parse_rule(&here, raw).map_err(fail)?
            }
            other => {
                return Err(fail(format!(
                    "{here}: expected a column name or a table such as {{ expression = \"...\" }}, found {}",
                    other.type_str()
                )))
            }
        };
        columns.push((to, rule));
    }
    Ok(columns)
}

fn parse_rule(here: &str, raw: RawRule) -> Result<RuleConfig, String> {
    let kinds = [
        raw.expression.is_some(),
        raw.constant.is_some(),
        raw.lookup.is_some(),
        raw.relation.is_some(),
    ];
    let count = kinds.iter().filter(|k| **k).count();
    if count > 1 || (count == 0 && raw.column.is_none()) {
        return Err(format!(
            "{here}: give exactly one of column, expression, constant, lookup or relation"
        ));
    }
    if raw.filters_back && raw.constant.is_none() {
        return Err(format!("{here}: filters_back goes with a constant"));
    }
    if raw.column.is_some()
        && (raw.expression.is_some() || raw.constant.is_some() || raw.lookup.is_some())
    {
        return Err(format!("{here}: column only combines with relation"));
    }
    if raw.translate.is_some() && (raw.column.is_none() || raw.relation.is_some()) {
        return Err(format!(
            "{here}: translate goes with a column alone (a relation is always translated)"
        ));
    }
    Ok(if let Some(source) = raw.expression {
        RuleConfig::Expression(source)
    } else if let Some(value) = raw.constant {
        RuleConfig::Constant {
            value: constant(here, value)?,
            filters_back: raw.filters_back,
        }
    } else if let Some(lookup) = raw.lookup {
        RuleConfig::Lookup(lookup)
    } else if let Some(pair) = raw.relation {
        RuleConfig::Relation {
            pair,
            from: raw.column,
        }
    } else {
        RuleConfig::Column {
            from: raw.column.expect("checked above"),
            translate: raw.translate.unwrap_or(true),
        }
    })
}

fn constant(here: &str, value: toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::Text(s),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        other => {
            return Err(format!(
                "{here}: a constant must be a string, number, boolean or date, not {}",
                other.type_str()
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DirectionConfig, String> {
        let value: toml::Value = toml::from_str(text).unwrap();
        parse_direction(Path::new("t.toml"), "tables[0].to_target", value)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_kind_of_rule() {
        let config = parse(
            r#"
exclude = ["secret"]
filter = "status != 'archived'"
on_filter_exit = "delete"
[columns]
email = "mail"
full_name = { expression = "first + ' ' + last" }
origin = { constant = "crm", filters_back = true }
code = { lookup = { side = "target", table = "countries", match = "name", value = "code", from = "country" } }
owner_id = { relation = "users", column = "owner" }
legacy = { column = "old_ref", translate = false }
"#,
        )
        .unwrap();
        assert_eq!(config.exclude, ["secret"]);
        assert_eq!(config.on_filter_exit, FilterExit::Delete);
        let rule = |name: &str| {
            config
                .columns
                .iter()
                .find(|(to, _)| to == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(
            rule("email"),
            RuleConfig::Column {
                from: "mail".into(),
                translate: true
            }
        );
        assert_eq!(
            rule("legacy"),
            RuleConfig::Column {
                from: "old_ref".into(),
                translate: false
            }
        );
        assert_eq!(
            rule("origin"),
            RuleConfig::Constant {
                value: Value::Text("crm".into()),
                filters_back: true
            }
        );
        assert_eq!(
            rule("owner_id"),
            RuleConfig::Relation {
                pair: "users".into(),
                from: Some("owner".into())
            }
        );
        assert!(
            matches!(rule("code"), RuleConfig::Lookup(l) if l.side == Side::Target && l.match_column == "name")
        );
    }

    #[test]
    fn mistakes_name_the_column() {
        for (text, expected) in [
            (
                "[columns]\nx = { expression = \"a\", constant = 1 }",
                "tables[0].to_target.columns.x: give exactly one of",
            ),
            (
                "[columns]\nx = { expresion = \"a\" }",
                "tables[0].to_target.columns.x: unknown field `expresion`",
            ),
            (
                "[columns]\nx = 5",
                "tables[0].to_target.columns.x: expected a column name",
            ),
            (
                "[columns]\nx = { column = \"a\", filters_back = true }",
                "filters_back goes with a constant",
            ),
            (
                "[columns]\nx = { expression = \"a\", translate = false }",
                "tables[0].to_target.columns.x: translate goes with a column alone",
            ),
            (
                "on_filter_exit = \"drop\"",
                "tables[0].to_target: unknown variant `drop`",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
            assert_eq!(err.lines().count(), 1);
        }
    }
}
