//! Authentication, health, readiness and the OpenAPI document.

use reqwest::StatusCode;
use serde_json::Value;
use tasklog_platform::auth::{JwtKeys, KeyUse};
use tasklog_platform::config::{Env, Environment};
use tasklog_platform::testing::repeated_operation_ids;

use crate::helpers::{NewTask, problem, spawn_app, user};

#[tokio::test]
async fn every_endpoint_needs_a_valid_token() {
    let app = spawn_app().await;
    let alice = user();
    let (id, _) = app.create(&alice, NewTask::titled("t")).await;
    app.project().await;
    let foreign = JwtKeys::from_env(
        &Env::from_pairs([("JWT_SECRET", "another-secret-that-is-long-enough-1234")]),
        Environment::Development,
        KeyUse::SignAndVerify,
    )
    .unwrap()
    .signer
    .unwrap()
    .issue(alice.id)
    .unwrap()
    .token;
    for path in [
        "/v1/tasks".to_owned(),
        format!("/v1/tasks/{id}"),
        format!("/v1/tasks/{id}/history"),
        "/v1/stats".to_owned(),
    ] {
        let url = format!("{}{path}", app.address);
        for request in [
            app.client.get(&url),
            app.client.get(&url).bearer_auth("not-a-jwt"),
            app.client.get(&url).bearer_auth(&foreign),
            app.client
                .get(&url)
                .header("authorization", format!("Basic {}", alice.token)),
        ] {
            let response = request.send().await.unwrap();
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{path}");
            problem(response, StatusCode::UNAUTHORIZED).await;
        }
    }
}

#[tokio::test]
async fn health_readiness_and_the_openapi_document() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();
    assert_eq!(get("/health/live").await.unwrap().status(), StatusCode::OK);
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["event_store"], "ok");

    let doc: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/tasks",
        "/v1/tasks/{id}",
        "/v1/tasks/{id}/history",
        "/v1/stats",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    // Links walk a fuzzer from a list to a detail and a history.
    let links = &doc["paths"]["/v1/tasks"]["get"]["responses"]["200"]["links"];
    assert_eq!(links["show"]["operationId"], "show", "{links}");
    assert_eq!(
        links["history"]["parameters"]["id"],
        "$response.body#/tasks/0/id"
    );
    let links = &doc["paths"]["/v1/tasks/{id}"]["get"]["responses"]["200"]["links"];
    assert_eq!(links["history"]["operationId"], "history", "{links}");
    for op in ["list", "show", "history"] {
        assert!(
            doc.to_string()
                .contains(&format!("\"operationId\":\"{op}\"")),
            "{op}"
        );
    }
    let params: Vec<&str> = doc["paths"]["/v1/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "status",
        "priority",
        "tag",
        "q",
        "due_before",
        "due_after",
        "sort",
        "limit",
        "cursor",
        "page",
    ] {
        assert!(params.contains(&name), "{name}");
    }
}

#[tokio::test]
async fn a_missing_read_model_is_a_503_and_not_ready_never_a_500() {
    let app = spawn_app().await;
    let alice = user();
    sqlx::raw_sql("DROP SCHEMA readmodel CASCADE")
        .execute(app.db.pool())
        .await
        .unwrap();
    for path in ["/v1/tasks", "/v1/tasks?page=1", "/v1/stats"] {
        let response = app.get(&alice, path).send().await.unwrap();
        problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let response = app
        .get(&alice, &format!("/v1/tasks/{}", uuid::Uuid::now_v7()))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let ready = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert!(
        body["checks"]["postgres"]
            .as_str()
            .unwrap()
            .contains("readmodel.tasks"),
        "{body}"
    );
}

#[tokio::test]
async fn the_production_stack_limits_rates_and_sets_security_headers() {
    let app = crate::helpers::spawn_app_with(&[("RATE_LIMIT_API", "3")]).await;
    let alice = user();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = app.get(&alice, "/v1/tasks").send().await.unwrap();
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(response.headers().contains_key("x-projection-position"));
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another user has a budget of their own.
    assert_eq!(
        app.get(&user(), "/v1/tasks").send().await.unwrap().status(),
        StatusCode::OK
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
}

/// A fuzzer's list requests are ones the service takes (almost none were,
/// so its stateful phase never followed a link from the list), and each
/// operation id names one operation (the links name them).
#[tokio::test]
async fn the_list_parameters_are_documented_as_strictly_as_they_are_checked() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let params = doc["paths"]["/v1/tasks"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let schema = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap_or_else(|| panic!("{name} is documented"))
    };
    assert_eq!(schema("limit")["minimum"], 1);
    assert_eq!(schema("limit")["maximum"], 100);
    assert_eq!(schema("page")["minimum"], 1);
    assert_eq!(schema("q")["maxLength"], 200);
    for name in ["sort", "status", "priority"] {
        assert!(schema(name)["pattern"].is_string(), "{name}");
    }
    // An optional header is absent or a number, never "null" (utoipa
    // makes an optional header nullable unless told).
    assert_eq!(schema("X-Min-Position")["type"], "integer");
    let repeated = repeated_operation_ids(&doc);
    assert!(
        repeated.is_empty(),
        "operation ids given twice: {repeated:?}"
    );
}
