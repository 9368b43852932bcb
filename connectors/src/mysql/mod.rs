//! The `mysql` engine (placeholder until the connector lands).

use crate::connector::EndpointConfig;
use crate::error::{ConnectorError, Result};

/// Connector for mysql.
pub struct MysqlConnector;

impl MysqlConnector {
    /// Connects.
    pub async fn connect(_config: &EndpointConfig) -> Result<Self> {
        Err(ConnectorError::internal("not yet"))
    }
}
