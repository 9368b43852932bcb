//! The `mysql` engine (placeholder until the connector lands).

use std::sync::Arc;

use crate::connector::{Connector, EndpointConfig};
use crate::error::{ConnectorError, Result};

/// Connects to Mysql and returns the connector.
pub async fn connect(_config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Err(ConnectorError::internal(
        "the mysql connector is not built yet",
    ))
}
