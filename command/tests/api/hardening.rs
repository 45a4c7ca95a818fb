//! The production layers as wired into the command service: rate limits on
//! auth and per user (shared by two instances through Redis), security
//! headers, compression and `/metrics`. The layers themselves are tested in
//! `platform/tests/hardening`.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tasklog_platform::testing::redis_prefix;

use crate::helpers::{problem, spawn_app, spawn_app_with, start, unique_email};

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn logins_are_limited_per_client_ip_with_ratelimit_headers() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "2")]).await;
    let body = json!({"email": unique_email(), "password": "wrong password"});
    for remaining in ["1", "0"] {
        let response = app.post("/v1/auth/login", &body, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&response, "ratelimit-limit"), Some("2"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
    }
    let refused = app.post("/v1/auth/login", &body, None).await;
    assert!(header(&refused, "retry-after").is_some());
    problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn a_users_budget_is_shared_by_two_instances() {
    let prefix = redis_prefix();
    let a = spawn_app_with(&[("RATE_LIMIT_API", "3"), ("REDIS_PREFIX", &prefix)]).await;
    let b = start(
        a.db.clone(),
        a.db.url().to_owned(),
        vec![
            ("RATE_LIMIT_API".into(), "3".into()),
            ("REDIS_PREFIX".into(), prefix.clone()),
        ],
    )
    .await;
    let user = a.register(&unique_email()).await;
    let other = b.register(&unique_email()).await;

    a.create_task(&user, json!({"title": "one"})).await;
    b.create_task(&user, json!({"title": "two"})).await;
    let third = a
        .post("/v1/tasks", &json!({"title": "three"}), Some(&user.token))
        .await;
    assert_eq!(third.status(), StatusCode::CREATED);
    assert_eq!(header(&third, "ratelimit-remaining"), Some("0"));
    let refused = b
        .post("/v1/tasks", &json!({"title": "four"}), Some(&user.token))
        .await;
    problem(refused, StatusCode::TOO_MANY_REQUESTS).await;

    b.create_task(&other, json!({"title": "mine"})).await;
}

#[tokio::test]
async fn answers_carry_security_headers_and_compress_when_large() {
    let app = spawn_app().await;
    let missing = app
        .request(Method::GET, "/v1/nothing")
        .send()
        .await
        .unwrap();
    for name in [
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(header(&missing, name).is_some(), "{name}");
    }
    assert!(
        header(&missing, "strict-transport-security").is_none(),
        "development"
    );
    let doc = app
        .request(Method::GET, "/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&doc, "content-encoding"), Some("gzip"));
}

#[tokio::test]
async fn metrics_name_the_command_routes_and_the_pool() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let ack = app.create_task(&user, json!({"title": "measured"})).await;
    let id = ack["id"].as_str().unwrap();
    let patched = app.patch_task(&user, id, &json!({"title": "again"})).await;
    assert_eq!(patched.status(), StatusCode::OK);

    let text = app
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let has = |needle: &str| {
        text.lines()
            .any(|l| l.starts_with("http_requests_total{") && l.contains(needle))
    };
    assert!(has(r#"route="/v1/tasks/{id}",status="200""#), "{text}");
    assert!(has(r#"route="/v1/auth/register",status="201""#), "{text}");
    assert!(!text.contains(id), "task ids never become labels");
    assert!(
        text.contains(r#"db_pool_max_connections{pool="tasklog-command"}"#),
        "{text}"
    );
}
