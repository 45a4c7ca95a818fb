//! What the public gateway lets through: the API, liveness, a plain
//! readiness and the OpenAPI document; not metrics, not which dependency
//! failed, and not a client's own `X-Forwarded-For`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::gateway::Nginx;
use crate::{start, start_with};

async fn get(url: String) -> (StatusCode, String) {
    let reply = reqwest::get(url).await.unwrap();
    (reply.status(), reply.text().await.unwrap())
}

#[tokio::test]
async fn metrics_and_readiness_detail_stay_inside() {
    let system = start().await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    let outside = |path: &str| get(format!("{}{path}", nginx.url()));

    let (status, _) = outside("/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for service in [&system.query, &system.command] {
        let (status, body) = get(service.url("/metrics")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{} scraped on its own port",
            service.name()
        );
        assert!(body.contains("http_requests_total"), "{body}");
    }
    assert_eq!(outside("/health/live").await.0, StatusCode::OK);
    assert_eq!(outside("/openapi.json").await.0, StatusCode::OK);
    let (status, body) = outside("/health/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );
    // A client cannot ask for the inside's answer.
    let reply = reqwest::Client::new()
        .get(format!("{}/health/ready", nginx.url()))
        .header("x-tasklog-gateway", "")
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );

    system.postgres.down();
    let (status, body) = outside("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "down"}),
        "no dependency named, no error text"
    );
    let (status, body) = get(system.query.url("/health/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let detail: Value = serde_json::from_str(&body).unwrap();
    assert!(
        detail["checks"]["postgres"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{detail}"
    );
    system.postgres.up();
}

#[tokio::test]
async fn a_forged_forwarded_for_does_not_escape_the_login_limit() {
    // The services trust the gateway (127.0.0.1), as deployments do.
    let system = start_with(&[("RATE_LIMIT_AUTH", "3"), ("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for n in 1..=5 {
        let reply = http
            .post(format!("{}/v1/auth/login", nginx.url()))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .json(&json!({"email": "nobody@example.com", "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        statuses.push(reply.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "every attempt counts against the one real client address"
    );
}

#[tokio::test]
async fn the_session_endpoints_reach_the_command_service_through_the_gateway() {
    let system = start().await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    let api = tasklog_systest::Api::new(nginx.url(), nginx.url());
    let me = api.register().await.unwrap();
    // A GET, but the command service's.
    let listed = api.get("/v1/auth/sessions", &me).await.unwrap();
    assert_eq!(listed.status, StatusCode::OK, "{listed:?}");
    assert_eq!(
        listed.body["sessions"].as_array().map(Vec::len),
        Some(1),
        "{listed:?}"
    );
    assert_eq!(listed.header("cache-control"), Some("no-store"));
    let ended = api
        .post("/v1/auth/logout-all", &me, json!({}))
        .await
        .unwrap();
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{ended:?}");
    let listed = api.get("/v1/auth/sessions", &me).await.unwrap();
    assert_eq!(listed.body["sessions"], json!([]), "{listed:?}");
}
