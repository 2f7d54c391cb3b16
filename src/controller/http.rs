//! /metrics, /healthz and /readyz.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tracing::{error, info};

use super::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    leader: Arc<AtomicBool>,
}

/// Serves until the process ends. Readiness turns true once every cache has synced and the
/// leader Lease has been reached, on the leader and on standbys alike (a standby is ready to
/// take over).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, ready: Arc<AtomicBool>, leader: Arc<AtomicBool>) {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, ready, leader });
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            info!(%addr, "serving /metrics, /healthz, /readyz");
            if let Err(e) = axum::serve(listener, app).await {
                error!(error = %e, "HTTP server stopped");
            }
        }
        Err(e) => error!(%addr, error = %e, "cannot bind the metrics address"),
    }
}

async fn metrics_handler(State(shared): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], shared.metrics.encode())
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    let role = if shared.leader.load(Ordering::SeqCst) { "leader" } else { "standby" };
    if shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, format!("ready ({role})"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced or leader Lease not reached yet".to_owned())
    }
}
