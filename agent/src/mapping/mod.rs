//! Mapping between different structures: what each column of the side
//! written to receives, per direction.
//!
//! `rules` reads the `[tables.to_target]` / `[tables.to_source]` sections of
//! the config (no I/O); `expr` compiles and evaluates expressions with CEL;
//! `lookup` keeps the reference tables that lookups read from; `names`
//! matches names of the two sides.

pub mod expr;
pub mod lookup;
pub mod names;
pub mod rules;

pub use expr::Expression;
pub use lookup::LookupCache;
pub use names::NameMatching;
pub use rules::{DirectionConfig, FilterExit, LookupConfig, RuleConfig, SplitConfig};
