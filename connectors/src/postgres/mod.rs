//! The `postgres` engine (placeholder until the connector lands).

use crate::connector::EndpointConfig;
use crate::error::{ConnectorError, Result};

/// Connector for postgres.
pub struct PostgresConnector;

impl PostgresConnector {
    /// Connects.
    pub async fn connect(_config: &EndpointConfig) -> Result<Self> {
        Err(ConnectorError::internal("not yet"))
    }
}
