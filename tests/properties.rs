//! Bad input, generated: whatever an operator writes in the config file and
//! whatever an expression meets in a row, the agent answers with an error
//! naming the problem, never with a panic.
//!
//! Failing cases are shrunk by proptest and printed; a seed is replayed with
//! `PROPTEST_CASES` / the regression file proptest writes next to the test.

use std::path::Path;

use proptest::prelude::*;
use tandem_agent::config::Config;
use tandem_agent::mapping::expr::{fit, Expression};
use tandem_connectors::{DataType, Row, Value};

const FILE: &str = "/etc/tandem/props.toml";

/// A config that parses, as the base the generated mistakes are made in.
fn valid_config() -> String {
    "state_dir = \"state\"\n\n\
     [source]\nkind = \"postgres\"\nurl = \"postgres://tandem@127.0.0.1:5432/crm\"\n\n\
     [target]\nkind = \"mysql\"\nurl = \"mysql://tandem@127.0.0.1:3306/erp\"\n\n\
     [[tables]]\nsource = \"contacts\"\ntarget = \"people\"\n\n\
     [tables.to_target.columns]\nfull_name = { expression = \"first_name + ' ' + last_name\" }\n"
        .to_owned()
}

#[test]
fn the_base_config_of_these_tests_is_valid() {
    Config::parse(Path::new(FILE), &valid_config()).expect("the base config parses");
}

/// Pieces of TOML, right and wrong, that the generator strings together.
fn toml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[source]\n".to_owned()),
        Just("[target]\n".to_owned()),
        Just("[[tables]]\n".to_owned()),
        Just("[tables.to_target]\n".to_owned()),
        Just("[tables.to_source.columns]\n".to_owned()),
        Just("[[tables.split]]\n".to_owned()),
        Just("[sync]\n".to_owned()),
        Just("[metrics]\n".to_owned()),
        Just("[source\n".to_owned()),
        Just("state_dir = \"\"\n".to_owned()),
        "[a-z_]{1,12} = \"[^\"\\\\\n]{0,20}\"\n",
        "[a-z_]{1,12} = -?[0-9]{1,25}\n",
        "[a-z_]{1,12} = \\[\"[a-z]{0,5}\", ?[0-9]{0,3}\\]\n",
        "[a-z_]{1,12} = \\{ [a-z]{1,10} = \"[^\"\\\\\n]{0,20}\" \\}\n",
        "(kind|url|poll_interval|tls|batch_size|max_connections|conflict|source|target|filter|on_filter_exit|password|password_env) = (\"[^\"\\\\\n]{0,30}\"|-?[0-9]{1,22}|true|\\[\\])\n",
        ".{0,40}\n",
    ]
}

/// A field of the base config given a value of the wrong kind or range.
fn wrong_field() -> impl Strategy<Value = (String, String)> {
    let field = proptest::sample::select(vec![
        "kind = \"postgres\"",
        "kind = \"mysql\"",
        "url = \"postgres://tandem@127.0.0.1:5432/crm\"",
        "url = \"mysql://tandem@127.0.0.1:3306/erp\"",
        "source = \"contacts\"",
        "target = \"people\"",
        "state_dir = \"state\"",
        "full_name = { expression = \"first_name + ' ' + last_name\" }",
    ]);
    let value = prop_oneof![
        Just("\"\"".to_owned()),
        Just("\"   \"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("true".to_owned()),
        "-?[0-9]{1,30}",
        "\"[a-z]{0,8}://[^\"\\\\\n]{0,30}\"",
        "\"[^\"\\\\\n]{0,30}\"",
        "\\{ [a-z]{1,10} = \"[^\"\\\\\n]{0,30}\" \\}",
        "\\{ expression = \"[^\"\\\\\n]{0,30}\" \\}",
        "\\{ lookup = \\{ side = \"[a-z]{0,7}\", table = \"[a-z]{0,5}\" \\} \\}",
    ];
    (field, value).prop_map(|(f, v)| (f.to_owned(), v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_text_is_a_config_or_an_error(text in ".{0,400}") {
        let _ = Config::parse(Path::new(FILE), &text);
    }

    #[test]
    fn toml_shaped_text_is_a_config_or_an_error(pieces in prop::collection::vec(toml_piece(), 0..24)) {
        let text = pieces.concat();
        let _ = Config::parse(Path::new(FILE), &text);
    }

    #[test]
    fn a_valid_config_with_lines_added_is_a_config_or_an_error(
        pieces in prop::collection::vec(toml_piece(), 1..6),
        at in any::<prop::sample::Index>(),
    ) {
        let base = valid_config();
        let lines: Vec<&str> = base.lines().collect();
        let at = at.index(lines.len() + 1);
        let text = format!("{}\n{}{}\n", lines[..at].join("\n"), pieces.concat(), lines[at..].join("\n"));
        let _ = Config::parse(Path::new(FILE), &text);
    }

    #[test]
    fn a_field_with_a_wrong_value_is_refused_with_one_line(
        (field, value) in wrong_field(),
    ) {
        let name = field.split(" = ").next().unwrap();
        let text = valid_config().replacen(&field, &format!("{name} = {value}"), 1);
        if let Err(e) = Config::parse(Path::new(FILE), &text) {
            let message = e.to_string();
            prop_assert!(message.starts_with(FILE), "{message}");
            prop_assert_eq!(message.lines().count(), 1, "{}", message);
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused(
        section in proptest::sample::select(vec!["[sync]\nbatch_size", "[source]\nmax_connections"]),
        n in prop_oneof![Just(0i128), Just(1), -(1i128 << 70)..0, (1i128 << 64)..(1i128 << 100)],
    ) {
        let text = match section.split_once('\n') {
            Some(("[sync]", field)) => format!("{}\n[sync]\n{field} = {n}\n", valid_config()),
            _ => valid_config().replacen(
                "kind = \"postgres\"",
                &format!("kind = \"postgres\"\nmax_connections = {n}"),
                1,
            ),
        };
        let parsed = Config::parse(Path::new(FILE), &text);
        let acceptable = section.ends_with("batch_size") && n == 1;
        prop_assert_eq!(parsed.is_ok(), acceptable, "{} = {}", section, n);
    }

    #[test]
    fn unknown_kinds_urls_and_durations_are_refused(
        kind in "[a-z]{1,10}",
        url in "[a-z]{0,10}:?/{0,2}[^\"\\\\\n]{0,30}",
        duration in "[0-9]{0,30}[a-z ]{0,6}",
    ) {
        // The target's URL is a MariaDB one: only the kinds naming MariaDB fit it.
        let text = valid_config().replacen("kind = \"mysql\"", &format!("kind = {kind:?}"), 1);
        prop_assert_eq!(Config::parse(Path::new(FILE), &text).is_ok(), kind == "mysql" || kind == "mariadb");
        let text = valid_config().replacen("url = \"postgres://tandem@127.0.0.1:5432/crm\"", &format!("url = {url:?}"), 1);
        if !url.starts_with("postgres") {
            prop_assert!(Config::parse(Path::new(FILE), &text).is_err(), "{url}");
        }
        let text = valid_config().replacen("kind = \"mysql\"", &format!("kind = \"mysql\"\npoll_interval = {duration:?}"), 1);
        let _ = Config::parse(Path::new(FILE), &text);
    }
}

/// Source text built from CEL's tokens, so that most of it gets past the
/// parser and reaches evaluation.
fn cel_source() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("n".to_owned()),
        Just("t".to_owned()),
        Just("j".to_owned()),
        Just("d".to_owned()),
        "-?[0-9]{1,21}(\\.[0-9]{0,3})?u?",
        "'[^'\\\\]{0,6}'",
        "b'[a-z]{0,4}'",
        proptest::sample::select(vec![
            "+",
            "-",
            "*",
            "/",
            "%",
            "==",
            "!=",
            "<",
            ">=",
            "&&",
            "||",
            "!",
            "?",
            ":",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            ",",
            ".",
            "in",
            "null",
            "true",
            "false",
            "size(",
            "int(",
            "uint(",
            "double(",
            "string(",
            "bytes(",
            "timestamp(",
            "duration(",
            "dyn(",
            "matches(",
            ".contains(",
            ".startsWith(",
            ".substring(",
            ".split(",
            ".indexOf(",
            ".replace(",
            ".upperAscii()",
            ".trim()",
            ".getFullYear()",
            ".all(x, ",
            ".map(x, ",
            ".exists(x, ",
            "has(",
            "math.round(",
            "math.greatest(",
            "coalesce(",
            "padLeft(",
            "padRight(",
            "round(",
            "formatTime(",
            "parseTime(",
            "'%Y-%m-%d'",
            "'%Q'",
            "'%'",
            "9223372036854775807",
            "-9223372036854775808",
            "18446744073709551615u",
            "1e308",
            "0",
            "-1",
            "1000000000",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(token, 1..14).prop_map(|tokens| tokens.join(" "))
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            Just(-1),
            any::<i64>()
        ]
        .prop_map(Value::Int),
        "-?[0-9]{1,40}(\\.[0-9]{1,10})?".prop_map(Value::Decimal),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e308),
            any::<f64>()
        ]
        .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
        (-300_000i32..300_000, 1u32..366).prop_filter_map("a day", |(y, d)| {
            chrono::NaiveDate::from_yo_opt(y, d).map(Value::Date)
        }),
        (-300_000i32..300_000, 1u32..366, 0u32..86_400).prop_filter_map(
            "an instant",
            |(y, d, s)| {
                chrono::NaiveDate::from_yo_opt(y, d)
                    .and_then(|d| d.and_hms_opt(s / 3600, s / 60 % 60, s % 60))
                    .map(|t| Value::TimestampTz(t.and_utc()))
            }
        ),
        Just(Value::Json(
            serde_json::json!({"k": [1, "x", null, 1.5e300]})
        )),
        any::<u128>().prop_map(|u| Value::Uuid(uuid::Uuid::from_u128(u))),
    ]
}

fn any_row() -> impl Strategy<Value = Row> {
    (
        any_value(),
        any_value(),
        any_value(),
        any_value(),
        any_value(),
        any_value(),
    )
        .prop_map(|(a, b, n, t, j, d)| {
            [("a", a), ("b", b), ("n", n), ("t", t), ("j", j), ("d", d)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        })
}

const TYPES: [DataType; 13] = [
    DataType::Bool,
    DataType::Int,
    DataType::Decimal,
    DataType::Float,
    DataType::Text,
    DataType::Bytes,
    DataType::Date,
    DataType::Time,
    DataType::Timestamp,
    DataType::TimestampTz,
    DataType::Json,
    DataType::Uuid,
    DataType::Other,
];

/// One call with arguments picked from edge cases: the functions Tandem
/// adds and the standard ones whose arguments have limits.
fn cel_call() -> impl Strategy<Value = String> {
    let argument = proptest::sample::select(vec![
        "a",
        "b",
        "n",
        "t",
        "j",
        "d",
        "''",
        "'x'",
        "'%Y-%m-%d'",
        "'%Q'",
        "'%'",
        "'%s'",
        "'%.3f'",
        "'24.12.2024'",
        "0",
        "-1",
        "1",
        "3",
        "1000000000",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615u",
        "1.5",
        "1e308",
        "-1e308",
        "0.0",
        "null",
        "true",
        "[]",
        "[1, 'a']",
        "{}",
        "{'k': 1}",
        "b'xy'",
        "timestamp('2024-01-02T00:00:00Z')",
        "duration('1h')",
        "'1h'",
        "'-999999999999h'",
        "'9999-12-31T23:59:59Z'",
    ])
    .prop_map(str::to_owned);
    let function = proptest::sample::select(vec![
        "coalesce",
        "padLeft",
        "padRight",
        "round",
        "formatTime",
        "parseTime",
        "int",
        "uint",
        "double",
        "string",
        "bytes",
        "timestamp",
        "duration",
        "size",
        "math.round",
        "math.greatest",
        "math.least",
        "math.abs",
        "math.ceil",
        "math.sign",
        "dyn",
        "type",
    ]);
    let method = proptest::sample::select(vec![
        "substring",
        "indexOf",
        "lastIndexOf",
        "split",
        "replace",
        "charAt",
        "join",
        "format",
        "upperAscii",
        "trim",
        "contains",
        "startsWith",
        "matches",
        "getFullYear",
        "getHours",
        "getDayOfWeek",
        "getMilliseconds",
    ]);
    let operator = proptest::sample::select(vec!["+", "-", "*", "/", "%", "<", "==", "[", "in"]);
    prop_oneof![
        (function, prop::collection::vec(argument.clone(), 0..4))
            .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
        (
            argument.clone(),
            method,
            prop::collection::vec(argument.clone(), 0..4)
        )
            .prop_map(|(on, m, args)| format!("{on}.{m}({})", args.join(", "))),
        (argument.clone(), operator, argument).prop_map(|(l, op, r)| if op == "[" {
            format!("{l}[{r}]")
        } else {
            format!("{l} {op} {r}")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_call_over_any_row_gives_a_value_or_an_error(
        source in cel_call(),
        row in any_row(),
    ) {
        let Ok(expression) = Expression::compile(&source) else { return Ok(()) };
        if let Err(e) = expression.evaluate(&row) {
            prop_assert!(e.contains(&format!("{source:?}")), "{e}");
        }
    }

    #[test]
    fn any_text_compiles_or_is_refused_in_one_line(source in ".{0,80}") {
        if let Err(e) = Expression::compile(&source) {
            prop_assert_eq!(e.lines().count(), 1, "{}", e);
        }
    }

    #[test]
    fn any_expression_over_any_row_gives_a_value_or_an_error(
        source in cel_source(),
        row in any_row(),
        ty in proptest::sample::select(TYPES.to_vec()),
    ) {
        let Ok(expression) = Expression::compile(&source) else { return Ok(()) };
        match expression.evaluate(&row) {
            Ok(value) => {
                let _ = fit(value, ty);
            }
            Err(e) => prop_assert!(e.contains(&format!("{source:?}")), "{e}"),
        }
        let _ = expression.test(&row);
    }

    #[test]
    fn any_value_fits_any_column_or_is_refused(
        value in any_value(),
        ty in proptest::sample::select(TYPES.to_vec()),
    ) {
        let _ = fit(value, ty);
    }
}
