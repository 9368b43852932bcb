//! How each SQL engine spells the pieces every statement is built from:
//! identifiers, table names, literals, parameters, column lists, key
//! matches and key lists.
//!
//! The engines build their statements from these pieces, so a quoting rule
//! lives in one place and a name can never reach the server unquoted. What
//! only one engine has (hints, `OUTPUT`, `RETURNING`, arrays, casts) stays
//! in that engine's module.

use crate::schema::{TableName, TableSchema};

/// One SQL engine's spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `"name"`, `$1`, tables in schemas (`public` by default).
    Postgres,
    /// MySQL and MariaDB: `` `name` ``, `?`, tables in the connection's
    /// database.
    MySql,
    /// SQLite: `"name"`, `?`, tables in the connection's database.
    Sqlite,
    /// SQL Server: `[name]`, `@P1`, tables in schemas (`dbo` by default).
    SqlServer,
}

impl Dialect {
    /// Quotes an identifier, its closing quote doubled, so that any name
    /// (spaces, quotes, keywords) stays one identifier.
    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
            Dialect::MySql => format!("`{}`", name.replace('`', "``")),
            Dialect::SqlServer => format!("[{}]", name.replace(']', "]]")),
        }
    }

    /// The schema a table without one is in, on engines with schemas.
    pub const fn default_schema(self) -> Option<&'static str> {
        match self {
            Dialect::Postgres => Some("public"),
            Dialect::SqlServer => Some("dbo"),
            Dialect::MySql | Dialect::Sqlite => None,
        }
    }

    /// The table as a statement names it: `"schema"."table"` where the
    /// engine has schemas (the default one written out, so the name does
    /// not depend on the search path), else the name alone (the
    /// connection's database).
    pub fn table(self, table: &TableName) -> String {
        match self.default_schema() {
            Some(default) => format!(
                "{}.{}",
                self.ident(table.schema.as_deref().unwrap_or(default)),
                self.ident(&table.name)
            ),
            None => self.ident(&table.name),
        }
    }

    /// A string literal, for the few places a value cannot be bound
    /// (catalog queries in scripts, `DEFAULT` clauses).
    pub fn literal(self, text: &str) -> String {
        match self {
            // `E'...'` reads backslashes the same whatever
            // `standard_conforming_strings` is.
            Dialect::Postgres if text.contains('\\') => {
                format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
            }
            Dialect::Postgres | Dialect::Sqlite => format!("'{}'", text.replace('\'', "''")),
            // Hex bytes: no `sql_mode` (backslashes, ANSI quotes) can
            // change how they read.
            Dialect::MySql => format!(
                "CONVERT(X'{}' USING utf8mb4)",
                hex::encode_upper(text.as_bytes())
            ),
            // `N`: Unicode, whatever the database's collation.
            Dialect::SqlServer => format!("N'{}'", text.replace('\'', "''")),
        }
    }

    /// Parameter number `n` (from 1): `$n`, `@Pn`, or `?` where parameters
    /// are bound by position.
    pub fn param(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
            Dialect::SqlServer => format!("@P{n}"),
        }
    }

    /// `count` parameters from number `first`: `?, ?` or `$3, $4`.
    pub fn params(self, first: usize, count: usize) -> String {
        comma((first..first + count).map(|n| self.param(n)))
    }

    /// The column as a statement names it, behind `alias` if any:
    /// `t."name"`.
    pub fn column(self, alias: Option<&str>, name: &str) -> String {
        match alias {
            Some(alias) => format!("{alias}.{}", self.ident(name)),
            None => self.ident(name),
        }
    }

    /// The quoted names, comma-separated: `"a", "b"`.
    pub fn columns<'a>(self, names: impl IntoIterator<Item = &'a str>) -> String {
        comma(names.into_iter().map(|name| self.ident(name)))
    }

    /// Every column of `table`, in catalog order: the select list that
    /// rows are read with.
    pub fn select_list(self, table: &TableSchema) -> String {
        self.columns(table.columns.iter().map(|c| c.name.as_str()))
    }

    /// The key columns of `table`, in key order.
    pub fn key_list(self, table: &TableSchema) -> String {
        self.columns(table.primary_key.iter().map(String::as_str))
    }

    /// Each column set to a parameter, numbered from `first`:
    /// `"a" = $1, "b" = $2`.
    pub fn assignments<'a>(self, names: impl IntoIterator<Item = &'a str>, first: usize) -> String {
        comma(
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| format!("{} = {}", self.ident(name), self.param(first + i))),
        )
    }

    /// Each column equal to a parameter, numbered from `first`:
    /// `"a" = $1 AND "b" = $2`.
    pub fn key_match<'a>(self, names: impl IntoIterator<Item = &'a str>, first: usize) -> String {
        names
            .into_iter()
            .enumerate()
            .map(|(i, name)| format!("{} = {}", self.ident(name), self.param(first + i)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The key equal to any of `count` keys, parameters numbered from
    /// `first` key by key: `"k" IN (?, ?)`, or for a composite key the row
    /// value `("a", "b") IN ((?, ?), (?, ?))`.
    pub fn keys_in<S: AsRef<str>>(self, names: &[S], count: usize, first: usize) -> String {
        let width = names.len();
        let columns = self.columns(names.iter().map(AsRef::as_ref));
        if width == 1 {
            return format!("{columns} IN ({})", self.params(first, count));
        }
        let rows =
            comma((0..count).map(|row| format!("({})", self.params(first + row * width, width))));
        format!("({columns}) IN ({rows})")
    }

    /// The key after a key bound from `first`, in key order: `"k" > ?`,
    /// or for a composite key the row value `("a", "b") > (?, ?)`.
    pub fn after_key<S: AsRef<str>>(self, names: &[S], first: usize) -> String {
        let columns = self.columns(names.iter().map(AsRef::as_ref));
        let params = self.params(first, names.len());
        if names.len() == 1 {
            format!("{columns} > {params}")
        } else {
            format!("({columns}) > ({params})")
        }
    }

    /// The table the capture triggers write change rows to.
    pub fn changes_table(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::SqlServer => "tandem.changes",
            Dialect::MySql | Dialect::Sqlite => "tandem_changes",
        }
    }

    /// Deletes the change rows with `count` sequence numbers.
    pub fn delete_changes_sql(self, count: usize) -> String {
        format!(
            "DELETE FROM {} WHERE seq IN ({})",
            self.changes_table(),
            self.params(1, count)
        )
    }

    /// Reads change rows of `tables` tables, lowest sequence first, at
    /// most as many as the last parameter says (`LIMIT`: SQL Server reads
    /// with `TOP` and PostgreSQL with arrays, each in its own module).
    pub fn read_changes_sql(self, tables: usize) -> String {
        format!(
            "SELECT seq, table_name, op, pk, captured_at FROM {} \
             WHERE table_name IN ({}) ORDER BY seq LIMIT {}",
            self.changes_table(),
            self.params(1, tables),
            self.param(tables + 1)
        )
    }

    /// Counts the change rows of `tables` tables, per table.
    pub fn count_changes_sql(self, tables: usize) -> String {
        format!(
            "SELECT table_name, COUNT(*) FROM {} \
             WHERE table_name IN ({}) GROUP BY table_name ORDER BY table_name",
            self.changes_table(),
            self.params(1, tables)
        )
    }
}

/// The items, comma-separated.
pub fn comma(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::Dialect::{self, MySql, Postgres, SqlServer, Sqlite};
    use crate::schema::{Column, DataType, TableName, TableSchema};

    const ALL: [Dialect; 4] = [Postgres, MySql, Sqlite, SqlServer];

    fn name(schema: Option<&str>, name: &str) -> TableName {
        TableName {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    #[test]
    fn identifiers_double_their_closing_quote() {
        assert_eq!(Postgres.ident("we\"ird ü"), "\"we\"\"ird ü\"");
        assert_eq!(Sqlite.ident("we\"ird ü"), "\"we\"\"ird ü\"");
        assert_eq!(MySql.ident("we`ird ü"), "`we``ird ü`");
        assert_eq!(SqlServer.ident("we]ird ü"), "[we]]ird ü]");
        assert_eq!(SqlServer.ident("[x]"), "[[x]]]");
        // The other engines' quotes are plain characters.
        assert_eq!(MySql.ident("a\"b]"), "`a\"b]`");
        assert_eq!(Postgres.ident("a`b]"), "\"a`b]\"");
    }

    #[test]
    fn tables_are_qualified_where_there_are_schemas() {
        let plain = name(None, "t");
        let odd = name(Some("Sa\"l]es"), "o`d");
        assert_eq!(Postgres.table(&plain), "\"public\".\"t\"");
        assert_eq!(Postgres.table(&odd), "\"Sa\"\"l]es\".\"o`d\"");
        assert_eq!(SqlServer.table(&plain), "[dbo].[t]");
        assert_eq!(SqlServer.table(&odd), "[Sa\"l]]es].[o`d]");
        assert_eq!(MySql.table(&odd), "`o``d`");
        assert_eq!(Sqlite.table(&odd), "\"o`d\"");
    }

    #[test]
    fn literals_cannot_be_escaped() {
        assert_eq!(Postgres.literal("it's"), "'it''s'");
        assert_eq!(Postgres.literal("a\\'b"), "E'a\\\\''b'");
        assert_eq!(Sqlite.literal("a\\'b"), "'a\\''b'");
        assert_eq!(SqlServer.literal("it's ü"), "N'it''s ü'");
        assert_eq!(MySql.literal("a'\\"), "CONVERT(X'61275C' USING utf8mb4)");
    }

    #[test]
    fn parameters_are_numbered_where_the_engine_numbers_them() {
        assert_eq!(Postgres.params(2, 3), "$2, $3, $4");
        assert_eq!(SqlServer.params(2, 3), "@P2, @P3, @P4");
        assert_eq!(MySql.params(2, 3), "?, ?, ?");
        assert_eq!(Sqlite.params(1, 3), "?, ?, ?");
        for dialect in ALL {
            assert_eq!(dialect.params(1, 0), "");
        }
    }

    #[test]
    fn column_lists_quote_every_name() {
        assert_eq!(Postgres.columns(["a", "b c"]), "\"a\", \"b c\"");
        assert_eq!(MySql.columns(["a", "b c"]), "`a`, `b c`");
        assert_eq!(Sqlite.columns(["a"]), "\"a\"");
        assert_eq!(SqlServer.columns(["a", "b"]), "[a], [b]");
        assert_eq!(Postgres.column(Some("t"), "a"), "t.\"a\"");
        assert_eq!(SqlServer.column(None, "a"), "[a]");
        assert_eq!(MySql.assignments(["a", "b"], 1), "`a` = ?, `b` = ?");
        assert_eq!(SqlServer.assignments(["a", "b"], 2), "[a] = @P2, [b] = @P3");
    }

    #[test]
    fn tables_list_their_columns_and_keys() {
        let columns = ["a", "b c", "d"]
            .map(|n| Column::new(n, DataType::Int, "int"))
            .to_vec();
        let table = TableSchema::new(name(None, "t"), columns, vec!["d".into(), "a".into()]);
        assert_eq!(Sqlite.key_list(&table), "\"d\", \"a\"");
        assert_eq!(MySql.select_list(&table), "`a`, `b c`, `d`");
    }

    #[test]
    fn key_matches_bind_every_value() {
        assert_eq!(
            Postgres.key_match(["a", "b"], 3),
            "\"a\" = $3 AND \"b\" = $4"
        );
        assert_eq!(MySql.key_match(["a", "b"], 1), "`a` = ? AND `b` = ?");
        assert_eq!(Sqlite.key_match(["a"], 1), "\"a\" = ?");
        assert_eq!(
            SqlServer.key_match(["a", "b"], 1),
            "[a] = @P1 AND [b] = @P2"
        );
    }

    #[test]
    fn key_lists_are_row_values_for_composite_keys() {
        assert_eq!(MySql.keys_in(&["k"], 3, 1), "`k` IN (?, ?, ?)");
        assert_eq!(
            MySql.keys_in(&["a", "b"], 2, 1),
            "(`a`, `b`) IN ((?, ?), (?, ?))"
        );
        assert_eq!(
            Sqlite.keys_in(&["a", "b"], 1, 1),
            "(\"a\", \"b\") IN ((?, ?))"
        );
        assert_eq!(
            Postgres.keys_in(&["a", "b"], 2, 2),
            "(\"a\", \"b\") IN (($2, $3), ($4, $5))"
        );
        assert_eq!(SqlServer.keys_in(&["k"], 2, 1), "[k] IN (@P1, @P2)");
    }

    #[test]
    fn keys_after_a_key_compare_row_values() {
        assert_eq!(MySql.after_key(&["k"], 1), "`k` > ?");
        assert_eq!(Sqlite.after_key(&["a", "b"], 1), "(\"a\", \"b\") > (?, ?)");
        assert_eq!(
            Postgres.after_key(&["a", "b"], 2),
            "(\"a\", \"b\") > ($2, $3)"
        );
    }

    #[test]
    fn change_rows_are_read_and_deleted_by_sequence() {
        assert_eq!(
            MySql.read_changes_sql(2),
            "SELECT seq, table_name, op, pk, captured_at FROM tandem_changes \
             WHERE table_name IN (?, ?) ORDER BY seq LIMIT ?"
        );
        assert_eq!(
            Sqlite.count_changes_sql(1),
            "SELECT table_name, COUNT(*) FROM tandem_changes \
             WHERE table_name IN (?) GROUP BY table_name ORDER BY table_name"
        );
        assert_eq!(
            Sqlite.delete_changes_sql(2),
            "DELETE FROM tandem_changes WHERE seq IN (?, ?)"
        );
        assert_eq!(
            SqlServer.delete_changes_sql(2),
            "DELETE FROM tandem.changes WHERE seq IN (@P1, @P2)"
        );
    }
}
