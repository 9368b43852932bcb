//! The conflict decision: whether a change may overwrite the other side's
//! copy, made in one place for inserts, updates and deletes alike.

use tandem_connectors::{Fingerprint, Row};

use crate::config::{ConflictPolicy, Side};
use crate::state::Link;

/// What a change does to the record it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// The record was inserted or updated on its side.
    Upsert,
    /// The record was deleted on its side.
    Delete,
}

/// What becomes of a change whose copy was read (and locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    /// The copy changed since the last sync too: both sides were edited.
    pub conflict: bool,
    /// The change is written; otherwise it is dropped and the copy's
    /// version stands.
    pub write: bool,
}

/// Decides a change of the record `link` names, made on `origin`, against
/// its copy on the other side as it is now (`None`: there is none).
///
/// A copy whose fingerprint is not what was last synced there changed
/// too: a conflict, settled by `policy` for the whole record. A copy
/// deleted while its record was updated is a conflict as well; a copy
/// already gone when its record was deleted is not (both sides agree).
pub(super) fn decide(
    policy: ConflictPolicy,
    origin: Side,
    change: Change,
    link: &Link,
    copy: Option<&Row>,
) -> Decision {
    let conflict = match copy {
        Some(copy) => !link.unchanged(origin.other(), &Fingerprint::of(copy)),
        None => change == Change::Upsert,
    };
    let wins = match policy {
        ConflictPolicy::SourceWins => origin == Side::Source,
        ConflictPolicy::TargetWins => origin == Side::Target,
    };
    Decision {
        conflict,
        write: !conflict || wins,
    }
}

#[cfg(test)]
mod tests {
    use tandem_connectors::{Key, Value};

    use super::*;

    fn row(email: &str) -> Row {
        let mut row = Row::new();
        row.insert("email".into(), Value::Text(email.into()));
        row
    }

    /// A link last synced with `synced` on the target.
    fn link(synced: &Row) -> Link {
        let mut link = Link::new(Key(vec![Value::Int(1)]), Key(vec![Value::Int(7)]));
        link.synced[Side::Target.index()] = Some(Fingerprint::of(synced));
        link
    }

    #[test]
    fn an_unchanged_copy_is_overwritten_by_either_side_under_any_policy() {
        let old = row("a@example.com");
        for policy in [ConflictPolicy::SourceWins, ConflictPolicy::TargetWins] {
            for change in [Change::Upsert, Change::Delete] {
                let d = decide(policy, Side::Source, change, &link(&old), Some(&old));
                assert_eq!(
                    d,
                    Decision {
                        conflict: false,
                        write: true
                    },
                    "{policy} {change:?}"
                );
            }
        }
    }

    #[test]
    fn a_copy_changed_too_is_a_conflict_the_policy_settles() {
        let old = row("a@example.com");
        let edited = row("b@example.com");
        let source_wins = decide(
            ConflictPolicy::SourceWins,
            Side::Source,
            Change::Upsert,
            &link(&old),
            Some(&edited),
        );
        assert_eq!(
            source_wins,
            Decision {
                conflict: true,
                write: true
            }
        );
        let target_wins = decide(
            ConflictPolicy::TargetWins,
            Side::Source,
            Change::Delete,
            &link(&old),
            Some(&edited),
        );
        assert_eq!(
            target_wins,
            Decision {
                conflict: true,
                write: false
            }
        );
    }

    #[test]
    fn a_vanished_copy_conflicts_with_an_update_but_not_with_a_delete() {
        let old = row("a@example.com");
        let update = decide(
            ConflictPolicy::TargetWins,
            Side::Source,
            Change::Upsert,
            &link(&old),
            None,
        );
        assert_eq!(
            update,
            Decision {
                conflict: true,
                write: false
            }
        );
        let delete = decide(
            ConflictPolicy::TargetWins,
            Side::Source,
            Change::Delete,
            &link(&old),
            None,
        );
        assert_eq!(
            delete,
            Decision {
                conflict: false,
                write: true
            }
        );
    }

    #[test]
    fn a_link_rebuilt_without_fingerprints_never_invents_a_conflict() {
        let rebuilt = Link::new(Key(vec![Value::Int(1)]), Key(vec![Value::Int(7)]));
        let d = decide(
            ConflictPolicy::TargetWins,
            Side::Source,
            Change::Upsert,
            &rebuilt,
            Some(&row("b@example.com")),
        );
        assert_eq!(
            d,
            Decision {
                conflict: false,
                write: true
            }
        );
    }
}
