//! Fills the SQL files under `sql/` with quoted names.
//!
//! The installed SQL lives as files so a DBA can read it; the per-table parts
//! carry `{{placeholders}}` that a connector fills with identifiers it has
//! already quoted for its engine. Nothing user-supplied reaches SQL any other
//! way.

/// Replaces every `{{name}}` in `template` by its value, in one pass: text
/// that a value brings in is never scanned for placeholders again (a table
/// may well be called `{{table}}`). Panics on a placeholder without a value:
/// that is a bug in the connector, caught by its unit tests.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or_else(|| {
            panic!(
                "SQL template has an unclosed placeholder at {:?}",
                &rest[start..]
            )
        });
        let name = &after[..end];
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("SQL template placeholder {{{{{name}}}}} left unfilled"));
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a SQL file into statements at lines that hold only `-- ;;`.
///
/// Function bodies contain semicolons, so statements are separated by an
/// explicit marker rather than by parsing SQL.
pub fn statements(script: &str) -> Vec<String> {
    script
        .split("\n-- ;;")
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.lines().any(|l| !l.trim_start().starts_with("--")))
        .map(str::to_owned)
        .collect()
}

/// Splits `script` into statements first, then fills each: a name can
/// never forge a statement separator.
pub fn fill_statements(script: &str, values: &[(&str, &str)]) -> Vec<String> {
    statements(script).iter().map(|s| fill(s, values)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_and_splits() {
        let script = fill(
            "CREATE {{a}};\n-- ;;\n-- only a comment\n-- ;;\nDROP {{a}};",
            &[("a", "\"t\"")],
        );
        assert_eq!(statements(&script), vec!["CREATE \"t\";", "DROP \"t\";"]);
    }

    #[test]
    fn names_cannot_forge_statements() {
        let filled = fill_statements("DROP {{t}};\n-- ;;\nSELECT 1;", &[("t", "\"x\n-- ;;\ny\"")]);
        assert_eq!(filled.len(), 2, "{filled:?}");
    }

    #[test]
    fn values_are_not_filled_again() {
        assert_eq!(fill("[{{a}}]", &[("a", "{{a}}")]), "[{{a}}]");
    }

    #[test]
    #[should_panic(expected = "{{b}}")]
    fn unfilled_placeholder_is_a_bug() {
        fill("{{a}} {{b}}", &[("a", "x")]);
    }
}
