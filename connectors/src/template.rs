//! Fills the SQL files under `sql/` with quoted names.
//!
//! The installed SQL lives as files so a DBA can read it; the per-table parts
//! carry `{{placeholders}}` that a connector fills with identifiers it has
//! already quoted for its engine. Nothing user-supplied reaches SQL any other
//! way.

/// Replaces every `{{name}}` in `template` by its value. Panics on a
/// placeholder left unfilled: that is a bug in the connector, caught by its
/// unit tests.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        panic!(
            "SQL template placeholder {} left unfilled",
            &out[start..end]
        );
    }
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
    #[should_panic(expected = "{{b}}")]
    fn unfilled_placeholder_is_a_bug() {
        fill("{{a}} {{b}}", &[("a", "x")]);
    }
}
