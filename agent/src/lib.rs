//! `tandem-agent`: keeps two databases in step, in both directions.
//!
//! The binary's `main` only parses the command line; everything it does is
//! here so that tests drive the same code paths users run.

pub mod cli;
pub mod commands;
pub mod config;
pub mod crash;
pub mod mapping;
pub mod observe;
pub mod service;
pub mod state;
pub mod store;
pub mod sync;
