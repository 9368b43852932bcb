//! Tandem's connectors: everything that talks to one database engine.
//!
//! Each engine lives in a module of its own with the same file set
//! (`client`, `install`, `capture`, `apply`, `types`), so knowing one means
//! knowing all. The agent only sees the [`Connector`] and [`Transaction`]
//! traits, the canonical [`Value`], and the [`TableSchema`] a connector
//! describes.

pub mod connector;
pub mod engine;
pub mod error;
#[cfg(feature = "faults")]
pub mod faults;
pub mod http;
pub mod mssql;
pub mod mysql;
pub mod postgres;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod template;
mod tls;
pub mod upgrade;
pub mod value;

#[cfg(test)]
mod properties;

pub use connector::{
    CapturedChange, ChangeOp, Connector, CopyOf, EndpointConfig, Finding, IdMapRow, Installation,
    RowCount, TlsConfig, TlsMode, Transaction,
};
pub use engine::{connect, Engine};
pub use error::{ConnectorError, ErrorKind, Result};
pub use schema::{Capacity, Charset, Column, DataType, ForeignKey, TableName, TableSchema};
/// The type of a password or token, and the one way to read it.
pub use secrecy::{ExposeSecret, SecretString};
pub use value::{Fingerprint, Key, Row, Value};
