//! Runs a canary analysis check: one HTTP GET with a deadline, judged by the pure
//! `rollout::analysis` module. Plain `http://` endpoints (in-cluster Prometheus and the like).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::api::Analysis;
use crate::rollout::analysis::{Verdict, judge};

/// Longest a check may take; a slow endpoint counts as a failed check.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches `analysis.url` and judges the answer.
pub async fn check(analysis: &Analysis) -> Verdict {
    match tokio::time::timeout(TIMEOUT, fetch(&analysis.url)).await {
        Ok(Ok(body)) => judge(analysis, &body),
        Ok(Err(why)) => Verdict::unreachable(format!("GET {}: {why}", analysis.url)),
        Err(_) => Verdict::unreachable(format!("GET {}: no answer within {TIMEOUT:?}", analysis.url)),
    }
}

async fn fetch(url: &str) -> Result<String, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// analysis endpoints are supported".into());
    }
    let host = uri.host().ok_or("no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, format!("{host}:{port}"))
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
}
