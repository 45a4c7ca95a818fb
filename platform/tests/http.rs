//! The shared layers and health endpoints, through a real router.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use tasklog_platform::health::Health;
use tasklog_platform::http::{IdPath, RequestId, with_common_layers};
use tasklog_platform::json::ApiJson;
use tower::ServiceExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    text: String,
}

/// A newtype of a UUID, as `TaskId` is.
struct Thing(uuid::Uuid);

impl From<uuid::Uuid> for Thing {
    fn from(id: uuid::Uuid) -> Self {
        Self(id)
    }
}

fn app(health: &Health) -> Router {
    with_common_layers(
        Router::new()
            .route(
                "/echo",
                post(|id: RequestId, ApiJson(e): ApiJson<Echo>| async move {
                    format!("{}:{}", id.0, e.text)
                }),
            )
            .route(
                "/things/{id}",
                get(|IdPath(id): IdPath<Thing>| async move { id.0.to_string() }),
            )
            .merge(health.router()),
    )
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn post_json(body: impl Into<Body>, content_type: &str) -> Request<Body> {
    Request::post("/echo")
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn a_request_id_is_kept_when_sent_and_made_when_not() {
    let health = Health::new();
    let req = Request::post("/echo")
        .header("content-type", "application/json")
        .header("x-request-id", "abc-123")
        .body(Body::from(r#"{"text":"hi"}"#))
        .unwrap();
    let (status, headers, body) = send(app(&health), req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-request-id"], "abc-123");
    assert_eq!(body, "abc-123:hi");

    let (_, headers, body) = send(
        app(&health),
        post_json(r#"{"text":"x"}"#, "application/json"),
    )
    .await;
    let made = headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    assert_eq!(body, format!("{made}:x"));
}

#[tokio::test]
async fn bad_bodies_get_problem_json_with_the_contract_status() {
    let health = Health::new();
    let cases = [
        (
            post_json(r#"{"text":"#, "application/json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            post_json(r#"{"text":"a"}"#, "text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post_json(r#"{"text":1}"#, "application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post_json(
                format!(r#"{{"text":"{}"}}"#, "x".repeat(70_000)),
                "application/json",
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (req, want) in cases {
        let (status, headers, body) = send(app(&health), req).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(headers["content-type"], "application/problem+json");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], want.as_u16());
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let health = Health::new();
    let (status, headers, _) = send(
        app(&health),
        Request::get("/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) = send(
        app(&health),
        Request::get("/echo").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_path_id_is_a_uuid_or_names_nothing() {
    let health = Health::new();
    let id = "0190c1c2-7c3a-7d2e-9f00-0123456789ab";
    let get = |path: String| Request::get(path).body(Body::empty()).unwrap();
    let (status, _, body) = send(app(&health), get(format!("/things/{id}"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, id));
    for bad in ["not-a-uuid", "0190c1c2", "%20"] {
        let (status, headers, _) = send(app(&health), get(format!("/things/{bad}"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn readiness_names_the_failing_dependency_and_turns_503_while_draining() {
    let get = |p: &str| Request::get(p).body(Body::empty()).unwrap();
    let healthy = Health::new().check("postgres", || async { Ok(()) });
    let (status, _, _) = send(app(&healthy), get("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);

    let broken = Health::new()
        .check("postgres", || async { Ok(()) })
        .check("redis", || async { Err("connection refused".to_owned()) });
    let (status, _, body) = send(app(&broken), get("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "down: connection refused");

    healthy.start_draining();
    let (status, _, body) = send(app(&healthy), get("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("draining"));
    let (status, _, _) = send(app(&healthy), get("/health/live")).await;
    assert_eq!(status, StatusCode::OK);
}
