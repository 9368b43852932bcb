//! How the applying transaction writes many rows per statement: the SQL of
//! the multi-row statements, and how a batch is cut into statements.
//!
//! A batch costs a fixed number of statements whatever its size, up to the
//! limits below. Rows that cannot share a statement start a new one: rows
//! writing other columns, and (for `UPDATE`) rows whose values would reach
//! the server as other types than they would one by one.
//!
//! Updates differ by flavour. MariaDB runs the one-row `UPDATE` once for
//! every row in one round trip (bulk execution): each row is written
//! exactly as by itself. MySQL has no bulk execution: one `UPDATE` sets
//! each column with a `CASE` on the key, whose cost grows with the square of
//! its rows, so it takes a few hundred rows at a time.

use std::collections::HashSet;
use std::ops::Range;

use mysql_async::Value as MyValue;

use super::apply::{key_match, keyed_table, keys_in};
use super::capture::placeholders;
use super::client::SQL;
use crate::connector::IdMapRow;
use crate::schema::{Column, DataType, TableSchema};

/// Most parameters of one prepared statement (the protocol counts them in
/// 16 bits).
pub const MAX_PARAMS: usize = 65_535;

/// Most bytes of values sent with one statement: far below any
/// `max_allowed_packet` a server is likely to run with (1 MiB at the
/// smallest in practice), so a batch never fails where its rows one by one
/// would not.
pub const MAX_BYTES: usize = 1 << 20;

/// Most keys in one `IN` list. Far beyond, the optimizer may prefer to scan
/// the whole table, and a locking read then locks every row.
pub const MAX_KEYS: usize = 5_000;

/// Most rows of one multi-row `UPDATE` (MySQL). Each row's new values are
/// picked by a `CASE` over every row of the statement, so the server's work
/// grows with the square of this (2,000 rows in one statement took longer
/// than 20 statements of 100 on MariaDB 10.11).
pub const MAX_UPDATE_ROWS: usize = 200;

/// The bytes a parameter adds to a statement (close enough for
/// [`MAX_BYTES`]).
pub fn weight(value: &MyValue) -> usize {
    match value {
        MyValue::Bytes(bytes) => bytes.len() + 9,
        _ => 9,
    }
}

/// Cuts items into consecutive ranges that each fit one statement: at most
/// `max_items` items, whose parameters (count and bytes, as `size` gives
/// them) stay within [`MAX_PARAMS`] and [`MAX_BYTES`] together with
/// `fixed_params` parameters every statement has. An item too big for a
/// statement of its own still gets one (the server then says what is wrong).
pub fn chunks(
    count: usize,
    fixed_params: usize,
    max_items: usize,
    mut size: impl FnMut(usize) -> (usize, usize),
) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let (mut params, mut bytes) = (fixed_params, 0);
    for i in 0..count {
        let (p, b) = size(i);
        let full = i - start >= max_items || params + p > MAX_PARAMS || bytes + b > MAX_BYTES;
        if i > start && full {
            ranges.push(start..i);
            start = i;
            (params, bytes) = (fixed_params, 0);
        }
        params += p;
        bytes += b;
    }
    if start < count {
        ranges.push(start..count);
    }
    ranges
}

/// Cuts `0..count` into consecutive runs whose items have equal `signature`.
pub fn runs<S: PartialEq>(
    count: usize,
    mut signature: impl FnMut(usize) -> S,
) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut current: Option<S> = None;
    for i in 0..count {
        let this = signature(i);
        match (&current, ranges.last_mut()) {
            (Some(s), Some(last)) if *s == this => last.end = i + 1,
            _ => {
                ranges.push(i..i + 1);
                current = Some(this);
            }
        }
    }
    ranges
}

/// How a parameter travels in the binary protocol, which is the type the
/// server gives it in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Integer,
    Text,
    Double,
    Float,
    DateTime,
    Time,
}

impl Wire {
    fn of(value: &MyValue) -> Option<Wire> {
        Some(match value {
            MyValue::NULL => return None,
            MyValue::Int(_) | MyValue::UInt(_) => Wire::Integer,
            MyValue::Bytes(_) => Wire::Text,
            MyValue::Double(_) => Wire::Double,
            MyValue::Float(_) => Wire::Float,
            MyValue::Date(..) => Wire::DateTime,
            MyValue::Time(..) => Wire::Time,
        })
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Which parameter types one column's values may mix in a multi-row
/// `UPDATE` (whose `CASE` gives all of them one common type).
///
/// Mixed types are only allowed where the common type changes no value:
/// integers and decimal text meet as text, which an integer or decimal
/// column reads back exactly; integers and floats meet as a double, which a
/// float column would have made of them anyway. Anything else (a double
/// turned into text, a date turned into text) could be rounded or
/// reformatted, so such rows go to a statement of their own.
#[derive(Debug, Clone)]
pub struct WireMix {
    types: Vec<DataType>,
    seen: Vec<u8>,
}

impl WireMix {
    /// An empty mix for these columns.
    pub fn new(columns: &[&Column]) -> WireMix {
        WireMix {
            types: columns.iter().map(|c| c.data_type).collect(),
            seen: vec![0; columns.len()],
        }
    }

    /// Adds a row's values (one per column) when they mix with those
    /// already added; `false` (and nothing added) when they do not.
    pub fn admit(&mut self, values: &[MyValue]) -> bool {
        let mut seen = self.seen.clone();
        for ((seen, ty), value) in seen.iter_mut().zip(&self.types).zip(values) {
            if let Some(wire) = Wire::of(value) {
                *seen |= wire.bit();
            }
            if !mixable(*ty, *seen) {
                return false;
            }
        }
        self.seen = seen;
        true
    }
}

fn mixable(ty: DataType, seen: u8) -> bool {
    let within = |allowed: &[Wire]| seen & !allowed.iter().fold(0, |all, w| all | w.bit()) == 0;
    seen.count_ones() <= 1
        || match ty {
            DataType::Int | DataType::Decimal => within(&[Wire::Integer, Wire::Text]),
            DataType::Float => within(&[Wire::Integer, Wire::Double, Wire::Float]),
            _ => false,
        }
}

/// Whether rows can share one bulk execution (MariaDB's
/// `COM_STMT_BULK_EXECUTE`), which declares each parameter's type once for
/// every row: each row must send each parameter as the same type (or NULL),
/// the type it would have been sent as on its own.
#[derive(Debug, Clone, Default)]
pub struct BulkTypes {
    types: Vec<Option<u8>>,
}

impl BulkTypes {
    /// Adds a row's parameters when their types agree with those already
    /// added; `false` (and nothing added) when they do not.
    pub fn admit<'v>(&mut self, values: impl IntoIterator<Item = &'v MyValue>) -> bool {
        let mut types = self.types.clone();
        for (i, value) in values.into_iter().enumerate() {
            let ty = match value {
                MyValue::NULL => None,
                MyValue::Bytes(_) => Some(0),
                MyValue::Int(_) => Some(1),
                // Unsigned is a flag of the declared type: a signed value
                // sent under it would be read as unsigned.
                MyValue::UInt(_) => Some(2),
                MyValue::Float(_) => Some(3),
                MyValue::Double(_) => Some(4),
                MyValue::Date(..) => Some(5),
                MyValue::Time(..) => Some(6),
            };
            if i == types.len() {
                types.push(ty);
            }
            match (types[i], ty) {
                (Some(declared), Some(ty)) if declared != ty => return false,
                (None, Some(ty)) => types[i] = Some(ty),
                _ => {}
            }
        }
        self.types = types;
        true
    }
}

/// `INSERT` of `rows` rows of `columns`; with `returning`, every column of
/// each written row comes back (MariaDB), in the order of the rows.
pub fn insert_many_sql(
    table: &TableSchema,
    columns: &[&Column],
    rows: usize,
    returning: bool,
) -> String {
    let tuple = format!("({})", placeholders(columns.len()));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        SQL.table(&table.name),
        SQL.columns(columns.iter().map(|c| c.name.as_str())),
        vec![tuple; rows].join(", ")
    );
    if returning {
        sql.push_str(" RETURNING ");
        sql.push_str(&SQL.select_list(table));
    }
    sql
}

/// `UPDATE` of `columns` of `rows` rows, each found by its key: every
/// column is set by a `CASE` that picks the row's value by its key, the same
/// comparison `WHERE key = ?` makes. Parameters: for each column, for each
/// row, the key then the value; then the keys of the `IN` list.
pub fn update_many_sql(table: &TableSchema, columns: &[&Column], rows: usize) -> String {
    let condition = if table.primary_key.len() == 1 {
        key_match(table)
    } else {
        format!("({})", key_match(table))
    };
    let case = format!(
        "CASE {} END",
        vec![format!("WHEN {condition} THEN ?"); rows].join(" ")
    );
    let sets: Vec<String> = columns
        .iter()
        .map(|c| format!("{} = {case}", SQL.ident(&c.name)))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE {}",
        keyed_table(table),
        sets.join(", "),
        keys_in(table, rows)
    )
}

/// `DELETE` of the rows with any of `count` keys. A composite key's uses
/// the multi-table form, the one that takes an index hint (see
/// [`keyed_table`]).
pub fn delete_many_sql(table: &TableSchema, count: usize) -> String {
    if table.primary_key.len() == 1 {
        return format!(
            "DELETE FROM {} WHERE {}",
            SQL.table(&table.name),
            keys_in(table, count)
        );
    }
    format!(
        "DELETE tandem_row FROM {} AS tandem_row FORCE INDEX (PRIMARY) WHERE {}",
        SQL.table(&table.name),
        keys_in(table, count)
    )
}

/// `DELETE` of one pair's mapping rows naming any of `count` source or
/// target keys. Parameters: the pair, the source keys, the target keys.
pub fn forget_links_sql(count: usize) -> String {
    let list = placeholders(count);
    format!(
        "DELETE FROM tandem_id_map WHERE pair = ? AND (source_key IN ({list}) OR target_key IN ({list}))"
    )
}

/// `INSERT` of `count` mapping rows, each taking over the row that shares
/// its source or target key.
pub fn insert_links_sql(count: usize) -> String {
    format!(
        "INSERT INTO tandem_id_map (pair, source_key, target_key) VALUES {} \
         ON DUPLICATE KEY UPDATE source_key = VALUES(source_key), \
         target_key = VALUES(target_key), created_at = CURRENT_TIMESTAMP(6)",
        vec!["(?, ?, ?)"; count].join(", ")
    )
}

/// The links that remain once `links` are recorded one after the other,
/// each first removing its pair's rows that share its source or target key
/// (see `record_link`): a link is gone when a later one of its pair shares a
/// key with it.
pub fn surviving_links(links: &[IdMapRow]) -> Vec<&IdMapRow> {
    let mut sources = HashSet::new();
    let mut targets = HashSet::new();
    let mut kept = Vec::new();
    for link in links.iter().rev() {
        let source = (link.pair.as_str(), link.source_key.as_str());
        let target = (link.pair.as_str(), link.target_key.as_str());
        if !sources.contains(&source) && !targets.contains(&target) {
            kept.push(link);
        }
        sources.insert(source);
        targets.insert(target);
    }
    kept.reverse();
    kept
}

/// The step between the keys a multi-row `INSERT` generates, when they are
/// sure to be consecutive: InnoDB hands a simple multi-row insert one block
/// of values unless `innodb_autoinc_lock_mode` is 2 (interleaved, MySQL 8's
/// default), where concurrent inserts may take values in between. `None`:
/// not sure, insert one row at a time.
pub fn consecutive_step(
    lock_mode: Option<i64>,
    increment: Option<i64>,
    engine: Option<&str>,
) -> Option<u64> {
    let innodb = engine.is_some_and(|e| e.eq_ignore_ascii_case("InnoDB"));
    let step = u64::try_from(increment?).ok().filter(|s| *s > 0)?;
    (innodb && matches!(lock_mode, Some(0 | 1))).then_some(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::TableName;

    fn table(key: &[&str], other: &[&str]) -> TableSchema {
        TableSchema::new(
            TableName::new(None, "t`x"),
            key.iter()
                .chain(other)
                .map(|n| Column::new(n, DataType::Int, "int"))
                .collect(),
            key.iter().map(|k| (*k).to_owned()).collect(),
        )
    }

    #[test]
    fn statements_bind_every_value_and_quote_every_name() {
        let t = table(&["id"], &["a", "b`"]);
        let cols: Vec<&Column> = t.columns[1..].iter().collect();
        assert_eq!(
            insert_many_sql(&t, &cols, 2, true),
            "INSERT INTO `t``x` (`a`, `b```) VALUES (?, ?), (?, ?) RETURNING `id`, `a`, `b```"
        );
        assert_eq!(
            insert_many_sql(&t, &[], 2, false),
            "INSERT INTO `t``x` () VALUES (), ()"
        );
        assert_eq!(
            update_many_sql(&t, &cols[..1], 2),
            "UPDATE `t``x` SET `a` = CASE WHEN `id` = ? THEN ? WHEN `id` = ? THEN ? END WHERE `id` IN (?, ?)"
        );
        let pair = table(&["k1", "k2"], &["v"]);
        assert_eq!(
            update_many_sql(&pair, &[&pair.columns[2]], 1),
            "UPDATE `t``x` FORCE INDEX (PRIMARY) SET `v` = CASE WHEN (`k1` = ? AND `k2` = ?) THEN ? END \
             WHERE (`k1`, `k2`) IN ((?, ?))"
        );
        assert_eq!(
            delete_many_sql(&pair, 2),
            "DELETE tandem_row FROM `t``x` AS tandem_row FORCE INDEX (PRIMARY) \
             WHERE (`k1`, `k2`) IN ((?, ?), (?, ?))"
        );
        assert_eq!(
            forget_links_sql(2),
            "DELETE FROM tandem_id_map WHERE pair = ? AND (source_key IN (?, ?) OR target_key IN (?, ?))"
        );
        assert_eq!(
            insert_links_sql(2),
            "INSERT INTO tandem_id_map (pair, source_key, target_key) VALUES (?, ?, ?), (?, ?, ?) \
             ON DUPLICATE KEY UPDATE source_key = VALUES(source_key), \
             target_key = VALUES(target_key), created_at = CURRENT_TIMESTAMP(6)"
        );
    }

    #[test]
    fn chunks_respect_items_params_and_bytes() {
        assert_eq!(chunks(5, 0, 2, |_| (1, 1)), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks(0, 0, 2, |_| (1, 1)), Vec::<Range<usize>>::new());
        // 65,535 parameters at most, the fixed ones included
        let ranges = chunks(70_000, 1, usize::MAX, |_| (1, 0));
        assert_eq!(ranges, vec![0..65_534, 65_534..70_000]);
        // a megabyte of values at most; a bigger row still gets a statement
        let big = MAX_BYTES / 2;
        assert_eq!(
            chunks(4, 0, 100, |i| (1, if i == 2 { 3 * big } else { big })),
            vec![0..2, 2..3, 3..4]
        );
    }

    #[test]
    fn runs_group_neighbours_only() {
        let signs = ["a", "a", "b", "a", "a"];
        assert_eq!(runs(5, |i| signs[i]), vec![0..2, 2..3, 3..5]);
        assert_eq!(runs(0, |i| signs[i]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn values_mix_only_where_no_value_changes() {
        let col = |ty| Column::new("c", ty, "x");
        let (int, dec, float, text) = (
            col(DataType::Int),
            col(DataType::Decimal),
            col(DataType::Float),
            col(DataType::Text),
        );
        let bytes = || MyValue::Bytes(b"1.5".to_vec());
        let mut mix = WireMix::new(&[&dec, &float]);
        assert!(mix.admit(&[MyValue::Int(1), MyValue::Double(1.5)]));
        assert!(mix.admit(&[bytes(), MyValue::Int(2)]));
        assert!(mix.admit(&[MyValue::NULL, MyValue::NULL]));
        // a double would become text in a decimal column's CASE
        assert!(!mix.admit(&[MyValue::Double(0.1), MyValue::NULL]));
        // a refused row changed nothing
        assert!(mix.admit(&[MyValue::UInt(u64::MAX), MyValue::Float(1.0)]));
        let mut ints = WireMix::new(&[&int]);
        assert!(ints.admit(&[MyValue::Int(-1)]));
        assert!(ints.admit(&[bytes()]));
        assert!(!ints.admit(&[MyValue::Double(1.0)]));
        let mut texts = WireMix::new(&[&text]);
        assert!(texts.admit(&[bytes()]));
        assert!(!texts.admit(&[MyValue::Int(1)]));
        let mut dates = WireMix::new(&[&col(DataType::Timestamp)]);
        assert!(dates.admit(&[MyValue::Date(2024, 1, 1, 0, 0, 0, 0)]));
        assert!(!dates.admit(&[bytes()]));
    }

    #[test]
    fn bulk_rows_send_each_parameter_as_one_type() {
        let mut types = BulkTypes::default();
        assert!(types.admit(&[MyValue::NULL, MyValue::Int(1)]));
        assert!(types.admit(&[MyValue::Bytes(vec![]), MyValue::NULL]));
        assert!(types.admit(&[MyValue::Bytes(vec![1]), MyValue::Int(-1)]));
        assert!(!types.admit(&[MyValue::Bytes(vec![1]), MyValue::UInt(1)]));
        assert!(!types.admit(&[MyValue::Double(1.0), MyValue::Int(1)]));
        // a refused row changed nothing
        assert!(types.admit(&[MyValue::NULL, MyValue::Int(2)]));
    }

    #[test]
    fn later_links_replace_earlier_ones_sharing_a_key() {
        let link = |pair: &str, s: &str, t: &str| IdMapRow {
            pair: pair.into(),
            source_key: s.into(),
            target_key: t.into(),
        };
        let links = [
            link("p", "1", "10"),
            link("p", "1", "11"),
            link("p", "2", "11"),
            link("q", "2", "11"),
            link("p", "3", "13"),
        ];
        let kept: Vec<&IdMapRow> = surviving_links(&links);
        assert_eq!(kept, vec![&links[2], &links[3], &links[4]]);
    }

    #[test]
    fn generated_keys_are_trusted_consecutive_only_when_innodb_says_so() {
        let innodb = Some("InnoDB");
        assert_eq!(consecutive_step(Some(1), Some(1), innodb), Some(1));
        assert_eq!(consecutive_step(Some(0), Some(5), innodb), Some(5));
        assert_eq!(consecutive_step(Some(2), Some(1), innodb), None);
        assert_eq!(consecutive_step(None, Some(1), innodb), None);
        assert_eq!(consecutive_step(Some(1), Some(1), Some("ndbcluster")), None);
        assert_eq!(consecutive_step(Some(1), Some(1), None), None);
        assert_eq!(consecutive_step(Some(1), Some(0), innodb), None);
    }
}
