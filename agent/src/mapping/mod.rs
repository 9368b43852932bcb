//! Mapping between different structures: what each column of the side
//! written to receives, per direction.
//!
//! `rules` reads the `[tables.to_target]` / `[tables.to_source]` sections of
//! the config (no I/O); `names` matches names of the two sides; `plan` turns
//! both sides' tables and the rules into the effective mapping of each pair
//! and maps rows by it; `split` writes and reads the extra tables a row is
//! split into; `expr` compiles and evaluates expressions with CEL; `lookup`
//! keeps the reference tables that lookups read from.

pub mod expr;
pub mod lookup;
pub mod names;
pub mod plan;
pub mod rules;
pub mod split;

pub use expr::Expression;
pub use lookup::LookupCache;
pub use names::NameMatching;
pub use rules::{DirectionConfig, FilterExit, LookupConfig, RuleConfig, SplitConfig};
