//! The `sqlite` engine (SQLite): being built; `connect` says so.

use std::sync::Arc;

use crate::connector::{Connector, EndpointConfig};
use crate::error::{ConnectorError, Result};

/// Connects to SQLite and returns the connector.
pub async fn connect(_config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Err(ConnectorError::config(
        "the sqlite endpoint kind is not available in this build yet",
    ))
}
