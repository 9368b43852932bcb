//! The `mssql` engine (SQL Server): being built; `connect` says so.

use std::sync::Arc;

use crate::connector::{Connector, EndpointConfig};
use crate::error::{ConnectorError, Result};

/// Connects to SQL Server and returns the connector.
pub async fn connect(_config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Err(ConnectorError::config(
        "the mssql endpoint kind is not available in this build yet",
    ))
}
