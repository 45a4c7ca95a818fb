//! Error tracking: with `SENTRY_DSN` pointing at an envelope receiver in
//! this test, a 5xx from the real query service arrives as a Sentry event
//! carrying the request id, route, release, environment and the user's id,
//! and nothing else about the user.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::start_with;

type Received = Arc<Mutex<Vec<String>>>;

/// A Sentry ingest endpoint on a free port: keeps every envelope's text.
async fn envelope_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/api/{project}/envelope/",
            post(|State(received): State<Received>, body: Bytes| async move {
                received
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                "{}"
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://public@{addr}/1"), received)
}

/// The event of the envelope that mentions `request_id`, once it arrives.
async fn event_for(received: &Received, request_id: &str) -> (Value, String) {
    for _ in 0..300 {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|envelope| envelope.contains(request_id))
            .cloned();
        if let Some(envelope) = found {
            let event = envelope
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|item| item.get("tags").is_some())
                .expect("an event item in the envelope");
            return (event, envelope);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no envelope mentions {request_id}");
}

#[tokio::test]
async fn a_server_error_reaches_sentry_with_its_request_and_user_but_no_personal_data() {
    let (dsn, received) = envelope_receiver().await;
    let system = start_with(&[
        ("SENTRY_DSN", dsn.as_str()),
        ("SENTRY_RELEASE", "tasklog-systest@1"),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", "1000"),
    ])
    .await;
    let me = system.api().register().await.unwrap();

    system.postgres.down();
    let reply = reqwest::Client::new()
        .get(system.query.url("/v1/tasks"))
        .bearer_auth(&me.access_token)
        .header("x-request-id", "sentry-probe-1")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::SERVICE_UNAVAILABLE);
    system.postgres.up();

    let (event, envelope) = event_for(&received, "sentry-probe-1").await;
    assert_eq!(event["tags"]["request_id"], "sentry-probe-1", "{event}");
    assert_eq!(event["tags"]["route"], "/v1/tasks", "{event}");
    assert_eq!(event["tags"]["status"], "503", "{event}");
    assert_eq!(event["release"], "tasklog-systest@1", "{event}");
    assert_eq!(event["environment"], "development", "{event}");
    assert_eq!(event["user"], json!({"id": me.user_id}), "{event}");
    assert!(!envelope.contains("@example.com"), "no email: {envelope}");
    assert!(!envelope.contains(&me.access_token), "no token: {envelope}");
}
