//! The `postgres` engine (placeholder until the connector lands).

use std::sync::Arc;

use crate::connector::{Connector, EndpointConfig};
use crate::error::{ConnectorError, Result};

/// Connects to Postgres and returns the connector.
pub async fn connect(_config: &EndpointConfig) -> Result<Arc<dyn Connector>> {
    Err(ConnectorError::internal(
        "the postgres connector is not built yet",
    ))
}
