//! `pause`: the pod sandbox process of the local real nodes (the kubelets' `sandbox_image`).
//! It holds the pod's namespaces, reaps nothing (pods here do not share a PID namespace) and
//! exits on SIGTERM or SIGINT. Not part of the operator.
#![forbid(unsafe_code)]

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        std::process::exit(1);
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
