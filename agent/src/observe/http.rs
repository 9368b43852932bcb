//! The local HTTP endpoint (`[metrics] listen`): `/health`, `/ready` and
//! Prometheus `/metrics`. Plain HTTP/1.1, GET and HEAD only, meant for a
//! loopback or otherwise private address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

use super::Health;

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// How long open connections get to finish once the agent stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The content type of the Prometheus text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound listener, not serving yet.
pub struct Endpoint {
    listener: TcpListener,
}

/// Binds `listen` (`host:port`).
pub async fn bind(listen: &str) -> std::io::Result<Endpoint> {
    Ok(Endpoint {
        listener: TcpListener::bind(listen).await?,
    })
}

impl Endpoint {
    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true (or its sender is gone), then
    /// stops accepting and gives open connections a moment to finish.
    pub async fn serve(
        self,
        metrics: PrometheusHandle,
        health: &'static Health,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if let Ok(address) = self.listener.local_addr() {
            info!(%address, "serving /health, /ready and /metrics");
        }
        let graceful = GracefulShutdown::new();
        let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
        while !*shutdown.borrow() {
            let accepted = tokio::select! {
                changed = shutdown.changed() => match changed {
                    Ok(()) => continue,
                    Err(_) => break, // the agent is gone
                },
                _ = upkeep.tick() => {
                    metrics.run_upkeep();
                    continue;
                }
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    debug!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &metrics, health);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(%peer, error = %e, "metrics endpoint: connection ended");
                }
            });
        }
        drop(self.listener);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
        debug!("metrics endpoint stopped");
    }
}

/// The answer to one request.
fn respond<B>(
    request: &Request<B>,
    metrics: &PrometheusHandle,
    health: &Health,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match request.uri().path() {
        "/health" => match health.liveness() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        "/ready" => match health.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /health, /ready or /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, health: &Health) -> (StatusCode, String) {
        let handle = super::super::metrics::builder().build_recorder().handle();
        let request = Request::get(path).body(()).expect("a request");
        let response = respond(&request, &handle, health);
        let status = response.status();
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .expect("a body")
                .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn health_ready_and_unknown_paths() {
        let health = Health::default();
        assert_eq!(get("/health", &health), (StatusCode::OK, "ok\n".into()));
        let (status, body) = get("/ready", &health);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("not ready: starting"), "{body}");
        assert_eq!(body.lines().count(), 1, "{body}");
        health.started(true);
        health.pass_succeeded(true);
        assert_eq!(get("/ready", &health), (StatusCode::OK, "ready\n".into()));
        assert_eq!(get("/nope", &health).0, StatusCode::NOT_FOUND);
        assert_eq!(get("/metrics", &health).0, StatusCode::OK);
    }
}
