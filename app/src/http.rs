//! The REST API, probes, metrics and the headers every response carries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::catalog::{Cache, CacheUse, Catalog, Database, Failure};
use crate::course::{self, Invalid};
use crate::metrics::Metrics;

pub const VERSION_HEADER: &str = "x-course-version";
pub const POD_HEADER: &str = "x-course-pod";
pub const CACHE_HEADER: &str = "x-cache";

pub struct App<D, K> {
    pub catalog: Catalog<D, K>,
    pub metrics: Arc<Metrics>,
    pub version: String,
    pub pod: String,
    /// Set on SIGTERM: `/readyz` answers 503 and every response closes its connection, so
    /// keep-alive clients reconnect through the load balancer to a pod that stays.
    pub draining: AtomicBool,
}

pub fn router<D: Database, K: Cache>(app: Arc<App<D, K>>) -> Router {
    Router::new()
        .route("/courses", get(list::<D, K>).post(create::<D, K>))
        .route("/courses/{id}", get(read::<D, K>).put(update::<D, K>).delete(remove::<D, K>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::<D, K>))
        .route("/metrics", get(metrics::<D, K>))
        .fallback(|| async { error(StatusCode::NOT_FOUND, json!({"error": "no such route"})) })
        .layer(middleware::from_fn_with_state(app.clone(), observe::<D, K>))
        .with_state(app)
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn invalid(invalid: Invalid) -> Response {
    error(StatusCode::BAD_REQUEST, serde_json::to_value(invalid).unwrap_or_default())
}

fn failure(failure: Failure) -> Response {
    match failure {
        Failure::NotFound => error(StatusCode::NOT_FOUND, json!({"error": "course not found"})),
        // details are in the log; clients learn only what to do
        Failure::Unavailable(_) => {
            let mut response =
                error(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "database unavailable, retry later"}));
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

/// The 400 answer for a path id that cannot name a course.
fn bad_id(id: &str) -> Option<Response> {
    (!course::is_id(id))
        .then(|| invalid(Invalid { field: "id".into(), error: "must be 24 lowercase hexadecimal digits".into() }))
}

fn with_cache(mut response: Response, used: CacheUse) -> Response {
    response.headers_mut().insert(HeaderName::from_static(CACHE_HEADER), HeaderValue::from_static(used.as_str()));
    response
}

/// `?after=<id>` of the list: the page after that course.
#[derive(serde::Deserialize)]
struct Page {
    after: Option<String>,
}

async fn list<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>, Query(page): Query<Page>) -> Response {
    if let Some(after) = page.after {
        if !course::is_id(&after) {
            return invalid(Invalid {
                field: "after".into(),
                error: "must be a course id (24 lowercase hexadecimal digits)".into(),
            });
        }
        return match app.catalog.list_after(&after).await {
            Ok(courses) => with_cache(axum::Json(courses).into_response(), CacheUse::Bypass),
            Err(e) => failure(e),
        };
    }
    match app.catalog.list().await {
        Ok((courses, used)) => with_cache(axum::Json(courses).into_response(), used),
        Err(e) => failure(e),
    }
}

async fn read<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>, Path(id): Path<String>) -> Response {
    if let Some(response) = bad_id(&id) {
        return response;
    }
    match app.catalog.get(&id).await {
        Ok((course, used)) => with_cache(axum::Json(course).into_response(), used),
        Err(e) => failure(e),
    }
}

async fn create<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>, body: Bytes) -> Response {
    let fields = match course::parse(&body) {
        Ok(fields) => fields,
        Err(e) => return invalid(e),
    };
    let id = mongodb::bson::oid::ObjectId::new().to_hex();
    match app.catalog.create(id, fields).await {
        Ok(course) => {
            let location = HeaderValue::from_str(&format!("/courses/{}", course.id)).ok();
            let mut response = (StatusCode::CREATED, axum::Json(course)).into_response();
            if let Some(location) = location {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => failure(e),
    }
}

async fn update<D: Database, K: Cache>(
    State(app): State<Arc<App<D, K>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(response) = bad_id(&id) {
        return response;
    }
    let fields = match course::parse(&body) {
        Ok(fields) => fields,
        Err(e) => return invalid(e),
    };
    match app.catalog.update(&id, fields).await {
        Ok(course) => axum::Json(course).into_response(),
        Err(e) => failure(e),
    }
}

async fn remove<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>, Path(id): Path<String>) -> Response {
    if let Some(response) = bad_id(&id) {
        return response;
    }
    match app.catalog.delete(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

async fn ready<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>) -> Response {
    if app.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>) -> Response {
    let mut response = app.metrics.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

/// Counts every answer by route and status and stamps the version, pod and (while draining)
/// `Connection: close` on it.
async fn observe<D: Database, K: Cache>(State(app): State<Arc<App<D, K>>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = request.method().clone();
    let mut response = next.run(request).await;
    if !matches!(route.as_str(), "/metrics" | "/healthz" | "/readyz") || method != Method::GET {
        app.metrics.request(&route, method.as_str(), response.status().as_u16());
    }
    let headers = response.headers_mut();
    if let Ok(version) = HeaderValue::from_str(&app.version) {
        headers.insert(HeaderName::from_static(VERSION_HEADER), version);
    }
    if let Ok(pod) = HeaderValue::from_str(&app.pod) {
        headers.insert(HeaderName::from_static(POD_HEADER), pod);
    }
    if app.draining.load(Ordering::SeqCst) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Tuning;
    use crate::catalog::fakes::{FakeCache, FakeDb};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::time::Duration;
    use tower::ServiceExt;

    type FakeApp = Arc<App<Arc<FakeDb>, Arc<FakeCache>>>;

    fn app() -> (Router, FakeApp, Arc<FakeDb>) {
        let db = Arc::new(FakeDb::default());
        let metrics = Arc::new(Metrics::new("v9", "pod-1"));
        let catalog = Catalog::new(
            db.clone(),
            Some(Arc::new(FakeCache::default())),
            Tuning::with_ttl(Duration::from_secs(300)),
            metrics.clone(),
        );
        let app = Arc::new(App {
            catalog,
            metrics,
            version: "v9".into(),
            pod: "pod-1".into(),
            draining: AtomicBool::new(false),
        });
        (router(app.clone()), app, db)
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let request = Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, value)
    }

    const COURSE: &str = r#"{"title":"Rust","description":"ownership","durationMinutes":60}"#;

    #[tokio::test]
    async fn the_course_lifecycle_over_http() {
        let (router, _, _) = app();
        let (status, headers, created) = call(&router, "POST", "/courses", COURSE).await;
        assert_eq!(status, StatusCode::CREATED);
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(headers[header::LOCATION], format!("/courses/{id}"));
        assert_eq!((headers[VERSION_HEADER].to_str().unwrap(), headers[POD_HEADER].to_str().unwrap()), ("v9", "pod-1"));

        let (status, headers, read) = call(&router, "GET", &format!("/courses/{id}"), "").await;
        assert_eq!((status, &headers[CACHE_HEADER]), (StatusCode::OK, &HeaderValue::from_static("miss")));
        assert_eq!(read, created);
        let (_, headers, _) = call(&router, "GET", &format!("/courses/{id}"), "").await;
        assert_eq!(headers[CACHE_HEADER], "hit");

        let (status, _, updated) = call(
            &router,
            "PUT",
            &format!("/courses/{id}"),
            r#"{"title":"Rust 2","description":"","durationMinutes":5}"#,
        )
        .await;
        assert_eq!((status, updated["title"].as_str()), (StatusCode::OK, Some("Rust 2")));
        let (_, headers, list) = call(&router, "GET", "/courses", "").await;
        assert_eq!((headers[CACHE_HEADER].to_str().unwrap(), list[0]["title"].as_str()), ("miss", Some("Rust 2")));

        assert_eq!(call(&router, "DELETE", &format!("/courses/{id}"), "").await.0, StatusCode::NO_CONTENT);
        assert_eq!(call(&router, "GET", &format!("/courses/{id}"), "").await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&router, "DELETE", &format!("/courses/{id}"), "").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_input_is_a_400_naming_the_field() {
        let (router, _, _) = app();
        let (status, _, body) =
            call(&router, "POST", "/courses", r#"{"title":"","description":"","durationMinutes":5}"#).await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("title")));
        let (status, _, body) = call(&router, "GET", "/courses/not-an-id", "").await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
        let (status, _, body) = call(&router, "PUT", "/courses/65a1b2c3d4e5f60718293a4b", "{}").await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("title")));
        let (status, _, body) = call(&router, "GET", "/courses?after=zzz", "").await;
        assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("after")));
    }

    #[tokio::test]
    async fn a_dead_database_is_a_503_with_retry_after() {
        let (router, _, db) = app();
        db.down.store(true, Ordering::SeqCst);
        let (status, headers, body) = call(&router, "POST", "/courses", COURSE).await;
        assert_eq!(
            (status, &headers[header::RETRY_AFTER]),
            (StatusCode::SERVICE_UNAVAILABLE, &HeaderValue::from_static("1"))
        );
        assert!(!body["error"].as_str().unwrap().contains("no primary"), "internal details leaked: {body}");
    }

    #[tokio::test]
    async fn draining_fails_readiness_and_closes_connections_but_still_serves() {
        let (router, app, _) = app();
        assert_eq!(call(&router, "GET", "/readyz", "").await.0, StatusCode::OK);
        app.draining.store(true, Ordering::SeqCst);
        assert_eq!(call(&router, "GET", "/readyz", "").await.0, StatusCode::SERVICE_UNAVAILABLE);
        let (status, headers, _) = call(&router, "GET", "/courses", "").await;
        assert_eq!((status, &headers[header::CONNECTION]), (StatusCode::OK, &HeaderValue::from_static("close")));
        assert_eq!(call(&router, "GET", "/healthz", "").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_count_requests_by_route_and_status_and_reads_by_cache_use() {
        let (router, _, _) = app();
        call(&router, "POST", "/courses", COURSE).await;
        call(&router, "GET", "/courses", "").await;
        call(&router, "GET", "/courses", "").await;
        call(&router, "GET", "/courses/zzz", "").await;
        let request = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
        let body = router.clone().oneshot(request).await.unwrap().into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        for line in [
            r#"course_app_http_requests_total{route="/courses",method="POST",status="201"} 1"#,
            r#"course_app_http_requests_total{route="/courses",method="GET",status="200"} 2"#,
            r#"course_app_http_requests_total{route="/courses/{id}",method="GET",status="400"} 1"#,
            r#"course_app_cache_reads_total{result="hit"} 1"#,
            r#"course_app_cache_reads_total{result="miss"} 1"#,
            r#"course_app_breaker_state{dependency="cache"} 0"#,
            r#"course_app_build_info{version="v9",pod="pod-1"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.contains(r#"course_app_database_call_seconds_count{op="insert"} 1"#), "{text}");
    }
}
