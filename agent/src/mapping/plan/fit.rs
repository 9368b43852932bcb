//! Whether values fit where they go: kinds of values (a date into a
//! number column), and what a column can hold (a longer text into a
//! shorter one, an emoji into MySQL's `utf8mb3`), judged before anything
//! is written.

use tandem_connectors::{Charset, Column, DataType, Row, TableName, TableSchema, Value};

use crate::mapping::Expression;

/// Whether `expression` plainly gives a value of a kind a column of `to`
/// cannot hold, judged on a sample row of `from`: the expression runs once
/// at start-up on neutral values (0, "0", false, the epoch). Text results
/// and failed trial runs are not judged: text may well parse, and the
/// sample may simply not suit the expression.
pub(super) fn misfit(
    expression: &Expression,
    from: &TableSchema,
    to: DataType,
) -> Option<&'static str> {
    use chrono::DateTime;
    let epoch = DateTime::UNIX_EPOCH;
    let sample: Row = from
        .columns
        .iter()
        .map(|c| {
            let value = match c.data_type {
                DataType::Bool => Value::Bool(false),
                DataType::Int => Value::Int(0),
                DataType::Decimal => Value::Decimal("0".into()),
                DataType::Float => Value::Float(0.0),
                DataType::Date => Value::Date(epoch.date_naive()),
                DataType::Time => Value::Time(epoch.time()),
                DataType::Timestamp => Value::Timestamp(epoch.naive_utc()),
                DataType::TimestampTz => Value::TimestampTz(epoch),
                DataType::Json => Value::Json(serde_json::json!({})),
                DataType::Uuid => Value::Uuid(uuid::Uuid::nil()),
                DataType::Bytes => Value::Bytes(Vec::new()),
                DataType::Text | DataType::Other => Value::Text("0".into()),
            };
            (c.name.clone(), value)
        })
        .collect();
    let result = expression.evaluate(&sample).ok()?;
    let kind = match &result {
        Value::Null | Value::Text(_) => return None,
        Value::Bool(_) => DataType::Bool,
        Value::Int(_) => DataType::Int,
        Value::Decimal(_) => DataType::Decimal,
        Value::Float(_) => DataType::Float,
        Value::Bytes(_) => DataType::Bytes,
        Value::Date(_) => DataType::Date,
        Value::Time(_) => DataType::Time,
        Value::Timestamp(_) => DataType::Timestamp,
        Value::TimestampTz(_) => DataType::TimestampTz,
        Value::Json(_) => DataType::Json,
        Value::Uuid(_) => DataType::Uuid,
    };
    (!compatible(kind, to)).then(|| result.type_name())
}

/// Whether a value of `from` can be written to a column of `to` as it is.
pub(super) fn compatible(from: DataType, to: DataType) -> bool {
    use DataType::*;
    from == to
        || matches!(to, Text | Other)
        || matches!(
            (from, to),
            (Int | Decimal | Float | Bool, Int | Decimal | Float | Bool)
        )
        || matches!(
            (from, to),
            (
                Date | Timestamp | TimestampTz,
                Date | Timestamp | TimestampTz
            )
        )
        || matches!(
            (from, to),
            (Text, Json | Uuid) | (Uuid, Text) | (Json, Text)
        )
}

/// Why values of column `from` may not fit column `to` of table `table`
/// (on the other side), a phrase each; empty when every value does. Only
/// limits both catalogs declare are compared: a source without a declared
/// length or precision (`text`, `numeric`) is not judged.
pub(super) fn will_not_fit(from: &Column, to: &Column, table: &TableName) -> Vec<String> {
    let (f, t) = (&from.capacity, &to.capacity);
    let mut found = Vec::new();
    let texts = matches!(to.data_type, DataType::Text | DataType::Other);
    if texts {
        if let (Some(source), Some(dest)) = (&f.charset, &t.charset) {
            if !dest.holds(source) {
                let (limit, fix) = match dest {
                    Charset::Bmp => (
                        ", without 4-byte characters such as emoji",
                        format!("ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4"),
                    ),
                    _ => (
                        "",
                        "store it in a Unicode character set (utf8mb4)".to_owned(),
                    ),
                };
                found.push(format!(
                    "{} can hold characters that {} cannot store (its character set is {dest}{limit}); \
                     such values are dead-lettered: {fix}",
                    from.name, to.name
                ));
            }
        }
        if let (Some(source), Some(dest)) = (f.max_chars, t.max_chars) {
            if source > dest {
                found.push(format!(
                    "{} holds up to {source} characters, {} {dest}: longer values are dead-lettered; \
                     widen {} to {source}",
                    from.name, to.name, to.name
                ));
            }
        }
    }
    if let (Some((low, high)), Some((min, max))) = (f.int_range, t.int_range) {
        if low < min || high > max {
            found.push(format!(
                "{} holds integers from {low} to {high}, {} from {min} to {max}: values beyond are \
                 dead-lettered; widen {}",
                from.name, to.name, to.name
            ));
        }
    }
    if let (Some((p1, s1)), Some((p2, s2))) = (f.digits, t.digits) {
        let (whole1, whole2) = (p1.saturating_sub(s1), p2.saturating_sub(s2));
        if whole1 > whole2 {
            found.push(format!(
                "{} holds {whole1} digits before the point, {} {whole2}: larger values are \
                 dead-lettered; widen {} to decimal({}, {})",
                from.name,
                to.name,
                to.name,
                whole1 + s2.max(s1),
                s2.max(s1)
            ));
        }
        if s1 > s2 {
            found.push(format!(
                "{} keeps {s1} digits after the point, {} {s2}: values are rounded on the way; \
                 widen {} to decimal({}, {s1})",
                from.name,
                to.name,
                to.name,
                whole1.max(whole2) + s1
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_connectors::Capacity;

    fn text(name: &str, max_chars: Option<u32>, charset: Charset) -> Column {
        let mut column = Column::new(name, DataType::Text, "varchar");
        column.capacity = Capacity {
            max_chars,
            charset: Some(charset),
            ..Capacity::default()
        };
        column
    }

    #[test]
    fn what_a_column_cannot_hold_is_named_with_the_fix() {
        let people = TableName::new(None, "People");
        let emoji = will_not_fit(
            &text("name", None, Charset::Unicode),
            &text("Name", None, Charset::Bmp),
            &people,
        );
        assert_eq!(
            emoji,
            [
                "name can hold characters that Name cannot store (its character set is utf8mb3, \
              without 4-byte characters such as emoji); such values are dead-lettered: \
              ALTER TABLE People CONVERT TO CHARACTER SET utf8mb4"
            ]
        );
        let long = will_not_fit(
            &text("code", Some(100), Charset::Unicode),
            &text("Code", Some(50), Charset::Unicode),
            &people,
        );
        assert_eq!(
            long,
            ["code holds up to 100 characters, Code 50: longer values are dead-lettered; widen Code to 100"]
        );
        assert!(
            will_not_fit(
                &text("code", None, Charset::Unicode),
                &text("Code", Some(50), Charset::Unicode),
                &people
            )
            .is_empty(),
            "an undeclared length is not judged"
        );
        let mut wide = Column::new("n", DataType::Int, "bigint");
        wide.capacity.int_range = Some(Capacity::signed(8));
        let mut narrow = Column::new("N", DataType::Int, "int");
        narrow.capacity.int_range = Some(Capacity::signed(4));
        assert_eq!(will_not_fit(&wide, &narrow, &people).len(), 1);
        assert!(will_not_fit(&narrow, &wide, &people).is_empty());
        let mut money = Column::new("price", DataType::Decimal, "numeric");
        money.capacity.digits = Some((12, 4));
        let mut less = Column::new("Price", DataType::Decimal, "decimal");
        less.capacity.digits = Some((10, 2));
        let found = will_not_fit(&money, &less, &people);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("rounded"), "{found:?}");
        less.capacity.digits = Some((6, 2));
        assert_eq!(will_not_fit(&money, &less, &people).len(), 2);
    }
}
