//! Property tests of the value conversions: whatever a database or a stored
//! key hands the agent, converting it gives a value or an error, never a
//! panic; and what the agent stores (keys, fingerprints) reads back the same.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use proptest::prelude::*;

use crate::schema::{Column, DataType, TableName};
use crate::value::{Fingerprint, Key, Row, Value};

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

fn data_type() -> impl Strategy<Value = DataType> {
    proptest::sample::select(TYPES.to_vec())
}

fn date() -> impl Strategy<Value = NaiveDate> {
    // Beyond chrono's range in both directions is not representable at all;
    // inside it, every day is fair game (year 0, year 9999, leap days).
    (-200_000i32..200_000, 1u32..=366)
        .prop_filter_map("a real day", |(y, d)| NaiveDate::from_yo_opt(y, d))
}

fn time() -> impl Strategy<Value = NaiveTime> {
    (0u32..86_400, 0u32..1_000_000)
        .prop_map(|(s, us)| NaiveTime::from_num_seconds_from_midnight_opt(s, us * 1000).unwrap())
}

fn timestamp() -> impl Strategy<Value = NaiveDateTime> {
    (date(), time()).prop_map(|(d, t)| d.and_time(t))
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|i| serde_json::json!(i)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        ".*".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(".*", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn decimal_text() -> impl Strategy<Value = String> {
    "-?[0-9]{1,40}(\\.[0-9]{1,20})?"
}

/// Any float, the ones JSON cannot write included.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        1 => proptest::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, f64::MIN_POSITIVE]),
    ]
}

/// Any canonical value.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        decimal_text().prop_map(Value::Decimal),
        float().prop_map(Value::Float),
        ".*".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
        date().prop_map(Value::Date),
        time().prop_map(Value::Time),
        timestamp().prop_map(Value::Timestamp),
        timestamp()
            .prop_map(|t| Value::TimestampTz(DateTime::<Utc>::from_naive_utc_and_offset(t, Utc))),
        json().prop_map(Value::Json),
        any::<u128>().prop_map(|u| Value::Uuid(uuid::Uuid::from_u128(u))),
    ]
}

/// Text shaped like what the engines print, mixed with plain noise, so that
/// the parsers' deeper branches are reached.
fn engine_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".*",
        "[0-9+\\-.eE:TZ x\\\\a-f]{0,40}",
        "-?[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}( |T)[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\\.[0-9]{0,9})?([+-][0-9]{2}(:[0-9]{2})?|Z)?",
        value().prop_filter_map("not NULL", |v| v.to_sql_text()),
    ]
}

/// The column of `ty` on each engine, with a native type that engine uses.
fn column(ty: DataType, native: &str) -> Column {
    Column::new("c", ty, native)
}

fn native_types(ty: DataType) -> &'static [&'static str] {
    match ty {
        DataType::Bool => &["bit", "tinyint(1)", "boolean"],
        DataType::Int => &["tinyint", "smallint", "int", "bigint", "bigint unsigned"],
        DataType::Decimal => &["decimal(10,2)", "numeric", "money"],
        DataType::Float => &["float", "real", "double"],
        DataType::Text => &["varchar(5)", "nvarchar(max)", "text"],
        DataType::Bytes => &["varbinary(max)", "bytea", "blob"],
        DataType::Date => &["date"],
        DataType::Time => &["time"],
        DataType::Timestamp => &["datetime", "smalldatetime", "datetime2", "timestamp"],
        DataType::TimestampTz => &["datetimeoffset", "timestamptz"],
        DataType::Json => &["json", "jsonb"],
        DataType::Uuid => &["uniqueidentifier", "uuid"],
        DataType::Other => &["xml", "geometry"],
    }
}

fn typed_column() -> impl Strategy<Value = Column> {
    data_type().prop_flat_map(|ty| {
        proptest::sample::select(native_types(ty).to_vec()).prop_map(move |n| column(ty, n))
    })
}

fn my_value() -> impl Strategy<Value = mysql_async::Value> {
    use mysql_async::Value as My;
    prop_oneof![
        Just(My::NULL),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(My::Bytes),
        engine_text().prop_map(|s| My::Bytes(s.into_bytes())),
        any::<i64>().prop_map(My::Int),
        any::<u64>().prop_map(My::UInt),
        any::<f32>().prop_map(My::Float),
        float().prop_map(My::Double),
        (
            any::<u16>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>()
        )
            .prop_map(|(y, mo, d, h, mi, s, us)| My::Date(y, mo, d, h, mi, s, us)),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u32>()
        )
            .prop_map(|(neg, d, h, mi, s, us)| My::Time(neg, d, h, mi, s, us)),
    ]
}

fn sqlite_value() -> impl Strategy<Value = rusqlite::types::Value> {
    use rusqlite::types::Value as Lite;
    prop_oneof![
        Just(Lite::Null),
        any::<i64>().prop_map(Lite::Integer),
        float().prop_map(Lite::Real),
        engine_text().prop_map(Lite::Text),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Lite::Blob),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_of_any_shape_parses_or_is_refused(ty in data_type(), text in engine_text()) {
        let _ = Value::parse_text(ty, &text);
    }

    #[test]
    fn every_value_reads_back_from_its_own_text(v in value()) {
        let ty = match &v {
            Value::Null => return Ok(()),
            Value::Bool(_) => DataType::Bool,
            Value::Int(_) => DataType::Int,
            Value::Decimal(_) => DataType::Decimal,
            Value::Float(_) => DataType::Float,
            Value::Text(_) => DataType::Text,
            Value::Bytes(_) => DataType::Bytes,
            Value::Date(_) => DataType::Date,
            Value::Time(_) => DataType::Time,
            Value::Timestamp(_) => DataType::Timestamp,
            Value::TimestampTz(_) => DataType::TimestampTz,
            Value::Json(_) => DataType::Json,
            Value::Uuid(_) => DataType::Uuid,
        };
        let text = v.to_sql_text().expect("not NULL");
        let back = Value::parse_text(ty, &text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        match (&v, &back) {
            (Value::Float(a), Value::Float(b)) => prop_assert!(a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(), "{a} became {b}"),
            _ => prop_assert_eq!(&back, &v, "{}", text),
        }
    }

    #[test]
    fn keys_round_trip_through_their_stored_form(values in prop::collection::vec(value(), 1..4)) {
        let key = Key(values);
        let back = Key::decode(&key.encode())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Floats: NaN is not equal to itself, so compare the stored form.
        prop_assert_eq!(back.encode(), key.encode());
    }

    #[test]
    fn a_damaged_stored_key_is_an_error(text in ".*") {
        let _ = Key::decode(&text);
    }

    #[test]
    fn captured_keys_of_any_shape_convert_or_are_refused(
        types in prop::collection::vec(data_type(), 1..4),
        captured in json(),
    ) {
        let _ = Key::from_captured(&types, &captured);
    }

    #[test]
    fn fingerprints_are_stable_and_see_every_change(
        row in prop::collection::btree_map("[a-z]{1,8}", value(), 1..6),
        replacement in value(),
    ) {
        let row: Row = row;
        let first = Fingerprint::of(&row);
        prop_assert_eq!(first, Fingerprint::of(&row.clone()));
        // Through the stored form (as a dead letter or a link keeps a row).
        let stored: Row = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        prop_assert_eq!(first, Fingerprint::of(&stored));
        let (name, old) = row.iter().next().map(|(k, v)| (k.clone(), v.clone())).unwrap();
        let same = Fingerprint::of(&Row::from_iter(row.clone().into_iter().map(|(k, v)| if k == name { (k, replacement.clone()) } else { (k, v) })));
        let identical = match (&old, &replacement) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (a, b) => a == b && a.type_name() == b.type_name(),
        };
        prop_assert_eq!(same == first, identical, "{:?} -> {:?}", old, replacement);
    }

    #[test]
    fn mysql_values_convert_or_are_refused(ty in data_type(), v in my_value(), canonical in value()) {
        if let Ok(read) = crate::mysql::types::from_mysql(ty, v) {
            let _ = crate::mysql::types::normalize(ty, &read);
        }
        let _ = crate::mysql::types::to_mysql(ty, &canonical);
        let _ = crate::mysql::types::normalize(ty, &canonical);
    }

    #[test]
    fn sqlite_values_convert_or_are_refused(ty in data_type(), v in sqlite_value(), canonical in value()) {
        let _ = crate::sqlite::types::from_sqlite(ty, v);
        let _ = crate::sqlite::types::to_sqlite(ty, &canonical);
        let _ = crate::sqlite::types::key_forms(ty, &canonical);
    }

    #[test]
    fn postgres_values_convert_or_are_refused(column in typed_column(), text in engine_text(), canonical in value()) {
        let table = TableName::new(None, "t");
        let _ = crate::postgres::types::read_value(&table, &column, Some(&text));
        let _ = crate::postgres::types::write_text(&table, &column, &canonical);
    }

    #[test]
    fn mssql_values_convert_or_are_refused(column in typed_column(), canonical in value()) {
        let table = TableName::new(None, "t");
        if let Ok(data) = crate::mssql::types::to_sql(&column, &canonical) {
            let _ = crate::mssql::types::from_sql(column.data_type, data);
        }
        let _ = crate::mssql::types::write_value(&table, &column, &canonical);
    }
}

#[test]
fn keys_of_floats_that_json_cannot_write_still_round_trip() {
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
        let key = Key(vec![Value::Float(f)]);
        let back = Key::decode(&key.encode()).expect("decodes");
        assert_eq!(back.encode(), key.encode(), "{f}");
    }
}
