//! Postgres (the read model and the log) going away and coming back: 503
//! problems meanwhile, readiness saying which, recovery after.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{NewTask, TestApp, problem, spawn_app_behind_proxy, user};

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn while_postgres_is_unreachable_reads_are_503_and_then_recover() {
    // Without the list cache: a kept page may be served until the listener
    // notices the cut (cache.rs), and this test is about every read path.
    let app = spawn_app_behind_proxy(&[
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "300"),
        ("LIST_CACHE_MB", "0"),
    ])
    .await;
    let alice = user();
    let (id, _) = app.create(&alice, NewTask::titled("t")).await;
    app.project().await;
    let paths = [
        "/v1/tasks".to_owned(),
        "/v1/tasks?page=1".to_owned(),
        format!("/v1/tasks/{id}"),
        format!("/v1/tasks/{id}?as_of=2099-01-01T00:00:00Z"),
        format!("/v1/tasks/{id}/history"),
        "/v1/stats".to_owned(),
    ];
    for path in &paths {
        let response = app.get(&alice, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    let proxy = app.proxy.as_ref().unwrap();
    proxy.down();
    for path in &paths {
        let response = app.get(&alice, path).send().await.unwrap();
        assert!(response.headers().contains_key("retry-after"), "{path}");
        assert!(
            response.headers().contains_key("x-projection-position"),
            "{path}"
        );
        problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["checks"]["postgres"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );
    assert!(
        body["checks"]["event_store"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );

    proxy.up();
    for path in &paths {
        let response = app.get(&alice, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path} after recovery");
    }
    assert_eq!(ready(&app).await.0, StatusCode::OK);

    // The projection listener reconnected too: a read-your-writes wait is woken.
    let (id, ack) = app.create(&alice, NewTask::titled("after")).await;
    app.project().await;
    let response = app
        .get(&alice, &format!("/v1/tasks/{id}"))
        .header("x-min-position", ack.position.commit.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
