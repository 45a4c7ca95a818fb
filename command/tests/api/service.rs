//! Health, the OpenAPI document, unknown routes and start-up refusals.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tasklog_command::Settings;
#[cfg(not(feature = "eventstoredb"))]
use tasklog_command::{Application, StartError};
use tasklog_platform::config::Env;
use tasklog_platform::testing::{TestDb, repeated_operation_ids};

#[cfg(not(feature = "eventstoredb"))]
use crate::helpers::settings;
use crate::helpers::{TestApp, problem, spawn_app, start};

#[tokio::test]
async fn live_and_ready_answer_200_with_each_dependency_named() {
    let app = spawn_app().await;
    let live = app
        .request(Method::GET, "/health/live")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app
        .request(Method::GET, "/health/ready")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["event_store"], "ok");
}

async fn openapi_document(app: &TestApp) -> Value {
    app.request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_describes_every_command_endpoint() {
    let doc = openapi_document(&spawn_app().await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/refresh", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/auth/me", "get"),
        ("/v1/tasks", "post"),
        ("/v1/tasks/{id}", "patch"),
        ("/v1/tasks/{id}", "delete"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks", "get"),
        ("/v1/webhooks/{id}", "get"),
        ("/v1/webhooks/{id}", "delete"),
        ("/v1/webhooks/{id}/deliveries", "get"),
        ("/v1/webhooks/{id}/replay", "post"),
        ("/v1/webhooks/{id}/rotate-secret", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    let refusal = &doc["paths"]["/v1/tasks"]["post"]["responses"]["422"]["content"];
    assert!(refusal["application/problem+json"].is_object(), "{refusal}");
    let schemas = &doc["components"]["schemas"];
    for name in [
        "Ack",
        "Session",
        "User",
        "NewTask",
        "TaskPatch",
        "Problem",
        "Webhook",
        "CreatedWebhook",
        "RotateSecret",
        "DeliveryAttempt",
        "DeliveryPage",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// What a fuzzer generates from the document is what the service accepts,
/// so its stateful phase gets real ids to follow: each operation id names
/// one operation (the links name them; `create` and `delete` were the
/// tasks' and the webhooks' both), and an `Idempotency-Key` it sends is
/// one the service takes (an empty one was a 422 for most creates).
#[tokio::test]
async fn the_openapi_document_names_each_operation_once_and_bounds_idempotency_keys() {
    let doc = openapi_document(&spawn_app().await).await;
    let repeated = repeated_operation_ids(&doc);
    assert!(
        repeated.is_empty(),
        "operation ids given twice: {repeated:?}"
    );
    let links = &doc["paths"]["/v1/tasks"]["post"]["responses"]["201"]["links"];
    assert_eq!(links["delete"]["operationId"], "delete", "{links}");
    assert_eq!(
        doc["paths"]["/v1/tasks/{id}"]["delete"]["operationId"],
        "delete"
    );
    for (path, method) in [
        ("/v1/tasks", "post"),
        ("/v1/tasks/batch", "post"),
        ("/v1/tasks/{id}/restore", "post"),
    ] {
        let key = doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .unwrap_or_else(|| panic!("{method} {path} documents Idempotency-Key"));
        assert_eq!(
            key["schema"]["type"], "string",
            "{method} {path}: not nullable"
        );
        assert_eq!(key["schema"]["minLength"], 1, "{method} {path}");
        assert_eq!(key["schema"]["maxLength"], 255, "{method} {path}");
        assert!(key["schema"]["pattern"].is_string(), "{method} {path}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    problem(
        app.request(Method::GET, "/v1/nothing")
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.request(Method::PUT, "/v1/tasks").send().await.unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

#[cfg(not(feature = "eventstoredb"))]
#[tokio::test]
async fn an_event_store_url_is_refused_in_a_build_without_the_adapter() {
    let db = Arc::new(TestDb::new().await.unwrap());
    let env = vec![(
        "EVENT_STORE_URL".to_owned(),
        "esdb://127.0.0.1:2113".to_owned(),
    )];
    let Err(e) = Application::build(settings(db.url(), &env)).await else {
        panic!("built with an adapter that was not compiled in");
    };
    assert!(matches!(e, StartError::EventStore(_)));
    assert!(e.to_string().contains("eventstoredb"), "{e}");
}

/// No EventStoreDB server exists here: the service still starts (the client
/// connects lazily) and readiness names the event store as down.
#[cfg(feature = "eventstoredb")]
#[tokio::test]
async fn an_esdb_url_selects_the_eventstoredb_log_and_readiness_reports_it() {
    let db = Arc::new(TestDb::new().await.unwrap());
    let env = vec![(
        "EVENT_STORE_URL".to_owned(),
        "esdb://127.0.0.1:1?tls=false&maxDiscoverAttempts=1&discoveryInterval=10".to_owned(),
    )];
    let url = db.url().to_owned();
    let app = start(db, url, env).await;
    let ready = app
        .request(Method::GET, "/health/ready")
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert!(
        body["checks"]["event_store"]
            .as_str()
            .is_some_and(|s| s.starts_with("down")),
        "{body}"
    );
}

#[test]
fn an_unsupported_event_store_url_refuses_to_start() {
    let env = Env::from_pairs([("EVENT_STORE_URL", "tcp://host:1113")]);
    let Err(e) = Settings::from_env(&env) else {
        panic!("accepted an unsupported EVENT_STORE_URL");
    };
    assert_eq!(e.name, "EVENT_STORE_URL");
    assert!(e.to_string().contains("tcp"), "{e}");
}
