//! course-app: the MicroCourses catalogue the operator deploys. A REST API over courses in
//! MongoDB (or any Mongo-API database) with a Redis Sentinel cache-aside layer, configured by
//! the environment the operator injects. See docs/course-app.md.
#![forbid(unsafe_code)]

mod breaker;
mod catalog;
mod config;
mod course;
mod http;
mod metrics;
mod mongo;
mod redis_cache;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::catalog::{Catalog, Tuning};
use crate::config::Config;
use crate::http::App;
use crate::metrics::Metrics;

/// Bound of every database connection attempt and server selection.
const DATABASE_TIMEOUT: Duration = Duration::from_millis(1500);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "course-app stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let config = Config::from_lookup(|name| match name {
        // the container runtime sets HOSTNAME to the pod's name; the kernel knows it too
        "HOSTNAME" => std::env::var(name)
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned())),
        _ => std::env::var(name).ok(),
    })
    .map_err(|e| e.to_string())?;
    let metrics = Arc::new(Metrics::new(&config.version, &config.pod));
    // the driver's parse error never contains the password; the URI itself is never logged
    let database =
        mongo::Mongo::connect(&config.mongodb_uri, DATABASE_TIMEOUT).await.map_err(|e| format!("MONGODB_URI: {e}"))?;
    let cache = match &config.cache {
        Some(cache) => Some(
            redis_cache::SentinelCache::new(cache, Duration::from_millis(200))
                .map_err(|e| format!("CACHE_SENTINELS: {e}"))?,
        ),
        None => None,
    };
    let catalog = Catalog::new(database, cache, Tuning::with_ttl(config.ttl), metrics.clone());
    tracing::info!(
        version = %config.version,
        port = config.port,
        cache = catalog.cache_configured(),
        ttl_seconds = config.ttl.as_secs(),
        "course-app starting"
    );
    let app = Arc::new(App {
        catalog,
        metrics,
        version: config.version.clone(),
        pod: config.pod.clone(),
        draining: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .map_err(|e| format!("PORT {}: {e}", config.port))?;
    let shutdown = {
        let app = app.clone();
        let delay = config.shutdown_delay;
        async move {
            stopped().await;
            // keep serving (readiness failing, connections closed after each answer) until
            // every proxy has withdrawn this endpoint; then stop accepting and drain
            app.draining.store(true, Ordering::SeqCst);
            tracing::info!(delay_seconds = delay.as_secs(), "SIGTERM: draining");
            tokio::time::sleep(delay).await;
            tracing::info!("no longer accepting connections; finishing in-flight requests");
        }
    };
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving: {e}"))?;
    tracing::info!("course-app stopped cleanly");
    Ok(())
}

/// Resolves on SIGTERM (the kubelet) or SIGINT (a terminal).
async fn stopped() {
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "no SIGTERM handler; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
