//! Names of the two sides, matched: equal after folding case and dropping
//! `_`, `-` and spaces (`order_line_id` ~ `OrderLineId`), an exact match
//! first. A name that matches nothing gets the closest candidate offered.

use serde::{Deserialize, Serialize};

/// How names of the two sides (and of the config) are matched: `[sync]
/// names`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NameMatching {
    /// Equal after [`fold`], an exact match first (the default).
    #[default]
    Fold,
    /// Equal as written.
    Exact,
}

impl NameMatching {
    /// Whether `a` and `b` name the same thing.
    pub fn same(self, a: &str, b: &str) -> bool {
        a == b || (self == NameMatching::Fold && fold(a) == fold(b))
    }
}

/// `name` in lower case without `_`, `-` and spaces: the form two names
/// must share to match.
pub fn fold(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why a name matched nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// Several candidates match equally (none exactly).
    Ambiguous(Vec<String>),
    /// None matches; the closest candidate, when one is close.
    Unknown(Option<String>),
}

impl Miss {
    /// What to say after "no such ...": the candidates or a suggestion,
    /// starting with a space; empty when there is nothing to add.
    pub fn hint(&self) -> String {
        match self {
            Miss::Ambiguous(names) => format!(
                " ({} all match: name one exactly)",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
            Miss::Unknown(Some(closest)) => format!(" (did you mean `{closest}`?)"),
            Miss::Unknown(None) => String::new(),
        }
    }
}

/// The candidate `wanted` names: the one spelled the same, else (folding)
/// the only one equal after [`fold`].
pub fn find<'a, I>(wanted: &str, candidates: I, matching: NameMatching) -> Result<&'a str, Miss>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let candidates = candidates.into_iter();
    if let Some(exact) = candidates.clone().find(|c| *c == wanted) {
        return Ok(exact);
    }
    if matching == NameMatching::Fold {
        let folded = fold(wanted);
        let same: Vec<&str> = candidates.clone().filter(|c| fold(c) == folded).collect();
        match same.as_slice() {
            [one] => return Ok(one),
            [] => {}
            several => {
                return Err(Miss::Ambiguous(
                    several.iter().map(|s| (*s).to_owned()).collect(),
                ))
            }
        }
    }
    Err(Miss::Unknown(closest(wanted, candidates)))
}

/// How alike two names are, from 0 (nothing in common) to 1 (the same
/// after folding).
pub fn likeness(a: &str, b: &str) -> f64 {
    let (a, b) = (fold(a), fold(b));
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let edits = strsim::normalized_damerau_levenshtein(&a, &b);
    let prefix = strsim::jaro_winkler(&a, &b);
    // An abbreviation keeps the letters of the word in order (`qty` of
    // `quantity`, `cust_no` of `customer_number`), starting alike.
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let mut letters = long.chars();
    let abbreviates = short.chars().count() >= 3
        && short.chars().next() == long.chars().next()
        && short.chars().all(|c| letters.any(|l| l == c));
    edits
        .max(prefix - 0.1)
        .max(if abbreviates { 0.75 } else { 0.0 })
}

/// The least a candidate must score ([`likeness`]) to be offered.
const CLOSE_ENOUGH: f64 = 0.7;

/// The candidate most like `wanted`, when one is alike enough to offer.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (likeness(wanted, c), c))
        .filter(|(score, _)| *score >= CLOSE_ENOUGH)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_styles_fold_to_one_name() {
        for (a, b) in [
            ("order_line_id", "OrderLineId"),
            ("order_line", "OrderLine"),
            ("Order Line", "order-line"),
            ("ÉTÉ", "été"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} ~ {b}");
            assert!(NameMatching::Fold.same(a, b));
            assert!(!NameMatching::Exact.same(a, b));
        }
        assert_ne!(fold("order_id"), fold("orders_id"));
    }

    #[test]
    fn an_exact_match_wins_and_two_folded_ones_are_named() {
        let tables = ["order_line", "OrderLine", "customer"];
        assert_eq!(
            find("OrderLine", tables, NameMatching::Fold),
            Ok("OrderLine")
        );
        assert_eq!(
            find("orderline", tables, NameMatching::Fold),
            Err(Miss::Ambiguous(vec![
                "order_line".into(),
                "OrderLine".into()
            ]))
        );
        assert_eq!(find("Customer", tables, NameMatching::Fold), Ok("customer"));
        assert_eq!(
            find("Customer", tables, NameMatching::Exact),
            Err(Miss::Unknown(Some("customer".into())))
        );
    }

    #[test]
    fn a_near_miss_gets_the_closest_name_and_nothing_far_is_offered() {
        let tables = ["OrderLine", "Customer", "Product", "ProductSupplier"];
        assert_eq!(
            find("OrdrLine", tables, NameMatching::Fold)
                .unwrap_err()
                .hint(),
            " (did you mean `OrderLine`?)"
        );
        assert_eq!(closest("custmer", tables), Some("Customer".into()));
        assert_eq!(closest("products", tables), Some("Product".into()));
        assert_eq!(
            closest("qty", ["Quantity", "UnitPrice"]),
            Some("Quantity".into())
        );
        assert_eq!(closest("invoice", tables), None);
        assert_eq!(closest("x", tables), None);
    }
}
