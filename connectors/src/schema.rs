//! What a connector knows about a table: columns, key, foreign keys.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The canonical category of a column's type; decides how values convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    /// Booleans.
    Bool,
    /// Integers up to 64 bits.
    Int,
    /// Exact decimals.
    Decimal,
    /// Binary floating point.
    Float,
    /// Character strings, enums.
    Text,
    /// Binary strings.
    Bytes,
    /// Dates.
    Date,
    /// Times of day.
    Time,
    /// Timestamps without zone.
    Timestamp,
    /// Timestamps with zone.
    TimestampTz,
    /// JSON documents.
    Json,
    /// UUIDs.
    Uuid,
    /// Anything else: carried as its text form.
    Other,
}

impl DataType {
    /// The lowercase name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int => "integer",
            DataType::Decimal => "decimal",
            DataType::Float => "float",
            DataType::Text => "text",
            DataType::Bytes => "bytes",
            DataType::Date => "date",
            DataType::Time => "time",
            DataType::Timestamp => "timestamp",
            DataType::TimestampTz => "timestamptz",
            DataType::Json => "json",
            DataType::Uuid => "uuid",
            DataType::Other => "other",
        }
    }
}

/// A table's name: the schema (PostgreSQL, SQL Server; `None` where the
/// connection's database is the namespace) and the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// Schema, when the engine has them.
    pub schema: Option<String>,
    /// Table name, as stored in the catalog (case kept).
    pub name: String,
}

impl TableName {
    /// A table name with an optional schema.
    pub fn new(schema: Option<&str>, name: &str) -> Self {
        Self {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Name as stored in the catalog.
    pub name: String,
    /// Canonical category.
    pub data_type: DataType,
    /// The engine's own type name (without length or precision), used to
    /// cast bound text parameters.
    pub native_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the engine generates the value (identity, serial,
    /// auto_increment, or a default such as `gen_random_uuid()`).
    pub generated: bool,
    /// Whether the engine refuses explicit values (PostgreSQL
    /// `GENERATED ALWAYS`, computed columns).
    pub always_generated: bool,
    /// Whether an insert that leaves the column out gets a default value
    /// (`DEFAULT ...`; generated columns aside).
    #[serde(default)]
    pub has_default: bool,
    /// What values the column can hold within its type, as far as the
    /// catalog says (`check` compares the two sides with it).
    #[serde(default)]
    pub capacity: Capacity,
}

/// The characters a text column can store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Charset {
    /// Every Unicode character (UTF-8 with 4-byte sequences, UTF-16).
    Unicode,
    /// Unicode's Basic Multilingual Plane only: MySQL's `utf8mb3` (alias
    /// `utf8`) and `ucs2`, which have no room for 4-byte UTF-8 such as
    /// emoji.
    Bmp,
    /// A single-byte or legacy character set, by the engine's name
    /// (`latin1`, a SQL Server code page, `SQL_ASCII`).
    Legacy(String),
}

impl Charset {
    /// Whether every character `other` can store fits here, as far as can
    /// be told: Unicode holds everything; the BMP holds all but the
    /// characters beyond it; two legacy sets are not judged (their names
    /// do not say whether they are one encoding).
    pub fn holds(&self, other: &Charset) -> bool {
        matches!(
            (self, other),
            (Charset::Unicode, _)
                | (Charset::Bmp, Charset::Bmp | Charset::Legacy(_))
                | (Charset::Legacy(_), Charset::Legacy(_))
        )
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Charset::Unicode => f.write_str("Unicode"),
            Charset::Bmp => f.write_str("utf8mb3"),
            Charset::Legacy(name) => f.write_str(name),
        }
    }
}

/// Limits of a column within its type; `None` where the type sets none
/// (or the catalog does not tell).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Longest text, in characters (`varchar(n)`, `char(n)`).
    pub max_chars: Option<u32>,
    /// The characters a text column can store.
    pub charset: Option<Charset>,
    /// Smallest and largest integer (`smallint`, `int unsigned`, ...).
    pub int_range: Option<(i128, i128)>,
    /// A decimal's precision and scale (`numeric(12, 2)`: 12 digits, 2
    /// after the point).
    pub digits: Option<(u32, u32)>,
}

impl Capacity {
    /// The range of a signed integer of `bytes` bytes.
    pub fn signed(bytes: u32) -> (i128, i128) {
        let bits = bytes * 8 - 1;
        (-(1i128 << bits), (1i128 << bits) - 1)
    }

    /// The range of an unsigned integer of `bytes` bytes.
    pub fn unsigned(bytes: u32) -> (i128, i128) {
        (0, (1i128 << (bytes * 8)) - 1)
    }
}

impl Column {
    /// A nullable column the engine does not generate.
    pub fn new(name: &str, data_type: DataType, native_type: &str) -> Column {
        Column {
            name: name.to_owned(),
            data_type,
            native_type: native_type.to_owned(),
            nullable: true,
            generated: false,
            always_generated: false,
            has_default: false,
            capacity: Capacity::default(),
        }
    }

    /// The same column with a default value.
    pub fn with_default(mut self) -> Column {
        self.has_default = true;
        self
    }

    /// The same column, NOT NULL.
    pub fn not_null(mut self) -> Column {
        self.nullable = false;
        self
    }
}

/// A foreign key from some columns of this table to another table's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Referencing columns, in order.
    pub columns: Vec<String>,
    /// The referenced table.
    pub referenced_table: TableName,
    /// The referenced columns, in the same order.
    pub referenced_columns: Vec<String>,
}

/// Everything the agent needs to know about one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// The table.
    pub name: TableName,
    /// Columns in catalog order.
    pub columns: Vec<Column>,
    /// Primary-key column names, in key order. Empty when the table has none.
    pub primary_key: Vec<String>,
    /// Declared foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
}

impl TableSchema {
    /// A table with `columns` keyed by `primary_key`, without foreign keys.
    pub fn new(name: TableName, columns: Vec<Column>, primary_key: Vec<String>) -> TableSchema {
        TableSchema {
            name,
            columns,
            primary_key,
            foreign_keys: Vec::new(),
        }
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key columns, in key order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.primary_key
            .iter()
            .filter_map(move |name| self.column(name))
    }

    /// Canonical types of the key columns, in key order.
    pub fn key_types(&self) -> Vec<DataType> {
        self.key_columns().map(|c| c.data_type).collect()
    }

    /// Whether the engine generates the key of a new row (a single generated
    /// key column), so an inserted copy gets its own key.
    pub fn key_is_generated(&self) -> bool {
        matches!(self.primary_key.as_slice(), [only] if self.column(only).is_some_and(|c| c.generated))
    }

    /// Whether every key column belongs to a foreign key (a link table of a
    /// many-to-many relation), so a copy's key is the translated references.
    pub fn key_is_references(&self) -> bool {
        !self.primary_key.is_empty()
            && self.primary_key.iter().all(|k| {
                self.foreign_keys
                    .iter()
                    .any(|fk| fk.columns.iter().any(|c| c == k))
            })
    }

    /// The same table described by its key columns alone: a scan of it
    /// reads keys only.
    pub fn key_only(&self) -> TableSchema {
        TableSchema {
            name: self.name.clone(),
            columns: self.key_columns().cloned().collect(),
            primary_key: self.primary_key.clone(),
            foreign_keys: Vec::new(),
        }
    }

    /// The key of `row`, when it holds every key column.
    pub fn key_of(&self, row: &crate::Row) -> Option<crate::Key> {
        self.primary_key
            .iter()
            .map(|k| row.get(k).cloned())
            .collect::<Option<Vec<_>>>()
            .map(crate::Key)
    }
}
