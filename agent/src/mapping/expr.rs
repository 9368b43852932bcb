//! Expressions, in the Common Expression Language (CEL), through the `cel`
//! crate: compiled once at start-up, evaluated per row.
//!
//! A row's columns are the expression's variables. Besides CEL's standard
//! library (arithmetic, comparisons, `?:`, `string()`, `int()`, `double()`,
//! `timestamp()`, `getFullYear()` and the other timestamp parts) the strings
//! and math extensions are on (`upperAscii()`, `lowerAscii()`, `trim()`,
//! `substring()`, `replace()`, `split()`, `math.round()`, ...), and Tandem adds
//! `coalesce(a, b, ...)`, `padLeft(s, n, fill)`, `padRight(s, n, fill)`,
//! `round(x, digits)`, `formatTime(ts, "%Y-%m-%d")` and
//! `parseTime(text, "%d.%m.%Y")`.

use std::sync::{Arc, OnceLock};

use cel::extractors::Arguments;
use cel::{Context, Env, Program};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use tandem_connectors::{DataType, Row, Value};

/// Names the expression language reserves (namespaces, not columns).
const NAMESPACES: &[&str] = &["math", "strings"];

fn environment() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings)
            .expect("the strings extension registers");
        env.add_extension(cel::extensions::math)
            .expect("the math extension registers");
        Arc::new(env)
    })
    .clone()
}

/// A compiled expression.
pub struct Expression {
    source: String,
    program: Program,
    variables: Vec<String>,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

impl Expression {
    /// Compiles `source`; the error is one line.
    pub fn compile(source: &str) -> Result<Expression, String> {
        let program = environment().compile(source).map_err(|e| {
            format!(
                "expression {source:?} does not compile: {}",
                e.to_string().replace('\n', " ")
            )
        })?;
        let mut variables: Vec<String> = program
            .references()
            .variables()
            .into_iter()
            .filter(|v| !NAMESPACES.contains(v))
            .map(str::to_owned)
            .collect();
        variables.sort();
        Ok(Expression {
            source: source.to_owned(),
            program,
            variables,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The columns the expression reads.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Evaluates over `row`; the error names the expression.
    pub fn evaluate(&self, row: &Row) -> Result<Value, String> {
        let mut context = Context::with_env(environment());
        for name in &self.variables {
            let value = row.get(name).map_or(cel::Value::Null, to_cel);
            context.add_variable_from_value(name.clone(), value);
        }
        add_functions(&mut context);
        let value = self
            .program
            .execute(&context)
            .map_err(|e| format!("expression {:?} failed: {e}", self.source))?;
        from_cel(value).map_err(|e| format!("expression {:?}: {e}", self.source))
    }

    /// Evaluates as a condition: true, false, or an error for anything else.
    pub fn test(&self, row: &Row) -> Result<bool, String> {
        match self.evaluate(row)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!(
                "filter {:?} gave {} instead of true or false",
                self.source,
                other.type_name()
            )),
        }
    }
}

fn add_functions(context: &mut Context) {
    // Names are ours and distinct from the standard library's: registering
    // cannot fail.
    let _ = context.add_function("coalesce", |Arguments(args): Arguments| -> cel::Value {
        args.iter()
            .find(|v| !matches!(v, cel::Value::Null))
            .cloned()
            .unwrap_or(cel::Value::Null)
    });
    let _ = context.add_function(
        "padLeft",
        |s: Arc<String>,
         width: i64,
         fill: Arc<String>|
         -> Result<cel::Value, cel::ExecutionError> {
            pad("padLeft", &s, width, &fill, true).map(cel::Value::from)
        },
    );
    let _ = context.add_function(
        "padRight",
        |s: Arc<String>,
         width: i64,
         fill: Arc<String>|
         -> Result<cel::Value, cel::ExecutionError> {
            pad("padRight", &s, width, &fill, false).map(cel::Value::from)
        },
    );
    let _ = context.add_function("round", |x: f64, digits: i64| -> f64 {
        let factor = 10f64.powi(digits.clamp(-15, 15) as i32);
        (x * factor).round() / factor
    });
    let _ = context.add_function(
        "formatTime",
        |t: DateTime<FixedOffset>,
         format: Arc<String>|
         -> Result<cel::Value, cel::ExecutionError> {
            format_time(t, &format).map(cel::Value::from)
        },
    );
    let _ = context.add_function(
        "parseTime",
        |text: Arc<String>,
         format: Arc<String>|
         -> Result<DateTime<FixedOffset>, cel::ExecutionError> {
            parse_time(&text, &format).ok_or_else(|| {
                cel::ExecutionError::function_error(
                    "parseTime",
                    format!("{text:?} does not match {format:?}"),
                )
            })
        },
    );
}

/// The widest `padLeft`/`padRight` result: a typo in the width (an extra
/// digit or three) must fail the row, not exhaust the agent's memory.
const MAX_PAD_WIDTH: i64 = 1 << 20;

fn pad(
    function: &str,
    s: &str,
    width: i64,
    fill: &str,
    left: bool,
) -> Result<String, cel::ExecutionError> {
    if width > MAX_PAD_WIDTH {
        return Err(cel::ExecutionError::function_error(
            function,
            format!("width {width} is more than {MAX_PAD_WIDTH}"),
        ));
    }
    let len = s.chars().count() as i64;
    let Some(fill_char) = fill.chars().next() else {
        return Ok(s.to_owned());
    };
    if len >= width {
        return Ok(s.to_owned());
    }
    let padding: String = std::iter::repeat_n(fill_char, (width - len) as usize).collect();
    Ok(if left {
        padding + s
    } else {
        s.to_owned() + &padding
    })
}

/// `t` formatted; an unknown `%` directive is an error (chrono reports it
/// only while writing, where `to_string()` would panic).
fn format_time(t: DateTime<FixedOffset>, format: &str) -> Result<String, cel::ExecutionError> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", t.format(format)).map_err(|_| {
        cel::ExecutionError::function_error(
            "formatTime",
            format!("{format:?} is not a valid time format"),
        )
    })?;
    Ok(out)
}

fn parse_time(text: &str, format: &str) -> Option<DateTime<FixedOffset>> {
    let utc = FixedOffset::east_opt(0).expect("zero offset");
    DateTime::parse_from_str(text, format)
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, format)
                .ok()
                .map(|t| utc.from_utc_datetime(&t))
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, format)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| utc.from_utc_datetime(&t))
        })
}

fn utc(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.fixed_offset()
}

/// A canonical value as CEL sees it. Exact decimals become doubles (CEL has
/// no decimal type); dates and timestamps become CEL timestamps (UTC).
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Int(i) => cel::Value::Int(*i),
        Value::Decimal(d) => d.parse::<f64>().map_or_else(
            |_| cel::Value::String(Arc::new(d.clone())),
            cel::Value::Float,
        ),
        Value::Float(f) => cel::Value::Float(*f),
        Value::Text(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Bytes(b) => cel::Value::Bytes(Arc::new(b.clone())),
        Value::Date(d) => {
            cel::Value::Timestamp(utc(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()))
        }
        Value::Time(t) => cel::Value::String(Arc::new(t.format("%H:%M:%S%.f").to_string())),
        Value::Timestamp(t) => cel::Value::Timestamp(utc(t.and_utc())),
        Value::TimestampTz(t) => cel::Value::Timestamp(utc(*t)),
        Value::Json(j) => cel::to_value(j).unwrap_or(cel::Value::Null),
        Value::Uuid(u) => cel::Value::String(Arc::new(u.to_string())),
    }
}

/// CEL's result as a canonical value; the connector converts it to the
/// column's type (text to a date, a double to a decimal, ...).
fn from_cel(value: cel::Value) -> Result<Value, String> {
    Ok(match value {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(b),
        cel::Value::Int(i) => Value::Int(i),
        cel::Value::UInt(u) => {
            i64::try_from(u).map_or_else(|_| Value::Decimal(u.to_string()), Value::Int)
        }
        cel::Value::Float(f) => Value::Float(f),
        cel::Value::String(s) => Value::Text(s.as_str().to_owned()),
        cel::Value::Bytes(b) => Value::Bytes(b.as_slice().to_vec()),
        cel::Value::Timestamp(t) => Value::TimestampTz(t.with_timezone(&Utc)),
        cel::Value::Duration(d) => Value::Text(d.to_string()),
        list @ (cel::Value::List(_) | cel::Value::Map(_)) => Value::Json(
            list.json()
                .map_err(|e| format!("result is not JSON: {e}"))?,
        ),
        other => return Err(format!("result {other:?} has no column type")),
    })
}

/// Converts an expression's or constant's value to what a column of
/// `data_type` holds, where the canonical types differ (a double written to
/// a decimal column, a timestamp to a date column, text to a number).
pub fn fit(value: Value, data_type: DataType) -> Result<Value, String> {
    Ok(match (value, data_type) {
        (Value::Null, _) => Value::Null,
        (Value::Float(f), DataType::Decimal) if f.is_finite() => {
            Value::Decimal(format!("{f:?}").trim_end_matches(".0").to_owned())
        }
        (Value::Float(f), DataType::Int) if f.fract() == 0.0 && f.abs() < 9.0e18 => {
            Value::Int(f as i64)
        }
        (Value::Int(i), DataType::Decimal) => Value::Decimal(i.to_string()),
        (Value::Int(i), DataType::Float) => Value::Float(i as f64),
        (Value::TimestampTz(t), DataType::Date) => Value::Date(t.date_naive()),
        (Value::TimestampTz(t), DataType::Timestamp) => Value::Timestamp(t.naive_utc()),
        (Value::Text(s), ty) if !matches!(ty, DataType::Text | DataType::Other) => {
            Value::parse_text(ty, &s).map_err(|e| e.to_string())?
        }
        (value, _) => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, Value)]) -> Row {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn strings_math_nulls_conditionals_and_dates() {
        let r = row(&[
            ("first", Value::Text(" ada ".into())),
            ("last", Value::Text("Lovelace".into())),
            ("price", Value::Decimal("10.00".into())),
            ("qty", Value::Int(7)),
            ("nick", Value::Null),
            (
                "born",
                Value::Date(NaiveDate::from_ymd_opt(1815, 12, 10).unwrap()),
            ),
        ]);
        for (source, expected) in [
            (
                "first.trim() + ' ' + last.upperAscii()",
                Value::Text("ada LOVELACE".into()),
            ),
            ("round(price * 1.2, 2)", Value::Float(12.0)),
            ("coalesce(nick, first.trim())", Value::Text("ada".into())),
            ("qty > 5 ? 'many' : 'few'", Value::Text("many".into())),
            ("padLeft(string(qty), 4, '0')", Value::Text("0007".into())),
            ("padRight('ab', 4, '.')", Value::Text("ab..".into())),
            (
                "last.substring(0, 4).lowerAscii().replace('l', 'L')",
                Value::Text("Love".into()),
            ),
            ("born.getFullYear()", Value::Int(1815)),
            (
                "formatTime(born, '%d.%m.%Y')",
                Value::Text("10.12.1815".into()),
            ),
            (
                "formatTime(parseTime('24.12.2024', '%d.%m.%Y'), '%Y-%m-%d')",
                Value::Text("2024-12-24".into()),
            ),
            ("int('42') + qty", Value::Int(49)),
        ] {
            let expression = Expression::compile(source).unwrap();
            assert_eq!(expression.evaluate(&r), Ok(expected), "{source}");
        }
    }

    #[test]
    fn variables_are_the_columns_read() {
        let e = Expression::compile("math.round(price) + double(qty)").unwrap();
        assert_eq!(e.variables(), ["price", "qty"]);
    }

    #[test]
    fn errors_name_the_expression() {
        let err = Expression::compile("first +").unwrap_err();
        assert!(
            err.starts_with("expression \"first +\" does not compile"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
        let e = Expression::compile("int(name)").unwrap();
        let err = e
            .evaluate(&row(&[("name", Value::Text("x".into()))]))
            .unwrap_err();
        assert!(err.contains("int(name)"), "{err}");
        assert!(Expression::compile("name")
            .unwrap()
            .test(&row(&[("name", Value::Text("x".into()))]))
            .is_err());
    }

    #[test]
    fn a_bad_time_format_or_a_huge_width_fails_the_row_not_the_agent() {
        let r = row(&[(
            "d",
            Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()),
        )]);
        for (source, why) in [
            ("formatTime(d, '%Q')", "is not a valid time format"),
            ("formatTime(d, '%')", "is not a valid time format"),
            ("padLeft('a', 3000000000, 'x')", "is more than"),
            ("padRight('a', 9223372036854775807, 'x')", "is more than"),
        ] {
            let err = Expression::compile(source)
                .unwrap()
                .evaluate(&r)
                .unwrap_err();
            assert!(err.contains(why), "{source}: {err}");
        }
    }

    #[test]
    fn values_fit_their_column() {
        assert_eq!(
            fit(Value::Float(12.5), DataType::Decimal),
            Ok(Value::Decimal("12.5".into()))
        );
        assert_eq!(
            fit(Value::Float(12.0), DataType::Decimal),
            Ok(Value::Decimal("12".into()))
        );
        assert_eq!(
            fit(Value::Text("2024-01-02".into()), DataType::Date),
            Ok(Value::Date(NaiveDate::from_ymd_opt(2024, 1, 2).unwrap()))
        );
        assert!(fit(Value::Text("soon".into()), DataType::Date).is_err());
    }
}
