//! `test-server`: the workload of the real-node tests. It listens on `$PORT` (the operator
//! injects it), answers `GET /` with 200 and its pod name, reports ready on `GET /healthz` only
//! `READY_DELAY_SECONDS` after start (so rollout gates meet a real readiness delay), and burns
//! CPU on `GET /burn?ms=N` (so the HPA sees real usage). Not part of the operator.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;

/// Longest burn one request may ask for.
const MAX_BURN: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Shared {
    ready_at: Instant,
    pod: String,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let delay: u64 = std::env::var("READY_DELAY_SECONDS").ok().and_then(|d| d.parse().ok()).unwrap_or(0);
    let pod = std::env::var("HOSTNAME").unwrap_or_default();
    let shared = Shared { ready_at: Instant::now() + Duration::from_secs(delay), pod };
    let app = Router::new()
        .route("/", get(|State(s): State<Shared>| async move { format!("ok from {}\n", s.pod) }))
        .route("/healthz", get(healthz))
        .route("/burn", get(burn))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    eprintln!("test-server listening on :{port}, ready after {delay}s");
    axum::serve(listener, app).with_graceful_shutdown(terminated()).await?;
    Ok(())
}

async fn healthz(State(s): State<Shared>) -> (StatusCode, &'static str) {
    if Instant::now() >= s.ready_at {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Spins one core for `ms` milliseconds (at most [`MAX_BURN`]) on a blocking thread.
async fn burn(uri: Uri) -> String {
    let ms = uri.query().unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("ms=")?.parse().ok());
    let wanted = Duration::from_millis(ms.unwrap_or(100)).min(MAX_BURN);
    let spun = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut x: u64 = 0;
        while start.elapsed() < wanted {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        start.elapsed()
    })
    .await
    .unwrap_or_default();
    format!("burned {} ms\n", spun.as_millis())
}

async fn terminated() {
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        term.recv().await;
    }
}
