//! Observability: Prometheus metrics, liveness and readiness, the HTTP
//! endpoint that serves them (`[metrics] listen`), and the first sync's
//! progress bar.
//!
//! Metrics are recorded through the `metrics` facade: until
//! [`metrics::install`] runs (only when `[metrics] listen` is set), every
//! recording call is a no-op and the extra queries behind the backlog gauges
//! are skipped.

pub mod health;
pub mod http;
pub mod metrics;
pub mod progress;

pub use health::{health, Health};
