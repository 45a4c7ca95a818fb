//! `Idempotency-Key` on POST /v1/tasks: replays, refusals, restarts, races and
//! a crash between the append and storing the response.

use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, User, fields, problem, spawn_app, unique_email};

async fn post_with_key(app: &TestApp, user: &User, key: &str, raw_body: &str) -> Response {
    app.request(Method::POST, "/v1/tasks")
        .bearer_auth(&user.token)
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(raw_body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn created(response: Response) -> (Value, bool) {
    let status = response.status();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (body, replayed)
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_first_response() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let (first, replayed) =
        created(post_with_key(&app, &user, "key-1", r#"{"title": "Milk", "tags": ["a"]}"#).await)
            .await;
    assert!(!replayed);
    // Same body with other whitespace and key order.
    let retry = post_with_key(&app, &user, "key-1", r#"{"tags":["a"],"title":"Milk"}"#).await;
    assert_eq!(
        retry.headers()["location"].to_str().unwrap(),
        format!("/v1/tasks/{}", first["id"].as_str().unwrap())
    );
    let (second, replayed) = created(retry).await;
    assert!(replayed);
    assert_eq!(second, first);
    assert_eq!(app.events_in_log().await, 1);
    let events = app.stream(first["id"].as_str().unwrap()).await;
    assert_eq!(events[0].metadata.causation_id.as_deref(), Some("key-1"));
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_creates_nothing() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    created(post_with_key(&app, &user, "key-2", r#"{"title": "Milk"}"#).await).await;
    let other = post_with_key(&app, &user, "key-2", r#"{"title": "Bread"}"#).await;
    let p = problem(other, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(fields(&p), ["Idempotency-Key"]);
    assert_eq!(app.events_in_log().await, 1);
}

#[tokio::test]
async fn keys_are_bounded_to_255_characters() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let long = "k".repeat(256);
    let p = problem(
        post_with_key(&app, &user, &long, r#"{"title": "T"}"#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(fields(&p), ["Idempotency-Key"]);
    created(post_with_key(&app, &user, &"k".repeat(255), r#"{"title": "T"}"#).await).await;
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = spawn_app().await;
    let ann = app.register(&unique_email()).await;
    let bob = app.register(&unique_email()).await;
    let (a, _) = created(post_with_key(&app, &ann, "shared", r#"{"title": "T"}"#).await).await;
    let (b, replayed) =
        created(post_with_key(&app, &bob, "shared", r#"{"title": "T"}"#).await).await;
    assert!(!replayed);
    assert_ne!(a["id"], b["id"]);
    assert_eq!(app.events_in_log().await, 2);
}

#[tokio::test]
async fn a_replay_survives_a_restart_of_the_service() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let (first, _) =
        created(post_with_key(&app, &user, "restart", r#"{"title": "T"}"#).await).await;
    let app = app.restart().await;
    let (again, replayed) =
        created(post_with_key(&app, &user, "restart", r#"{"title": "T"}"#).await).await;
    assert!(replayed);
    assert_eq!(again, first);
    assert_eq!(app.events_in_log().await, 1);
}

#[tokio::test]
async fn identical_requests_racing_create_one_task_and_all_get_its_ack() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let answers = futures::future::join_all(
        (0..8).map(|_| post_with_key(&app, &user, "race", r#"{"title": "Once"}"#)),
    )
    .await;
    let mut acks = Vec::new();
    for response in answers {
        acks.push(created(response).await.0);
    }
    assert!(acks.iter().all(|a| *a == acks[0]), "{acks:?}");
    assert_eq!(app.events_in_log().await, 1);
}

#[tokio::test]
async fn a_crash_after_the_append_before_storing_the_response_is_answered_with_the_original() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let (first, _) = created(post_with_key(&app, &user, "crash", r#"{"title": "T"}"#).await).await;
    // What a crash right after the append leaves: the claim, no response.
    sqlx::query("UPDATE accounts.idempotency_keys SET response = NULL")
        .execute(app.pool())
        .await
        .unwrap();
    let (again, _) = created(post_with_key(&app, &user, "crash", r#"{"title": "T"}"#).await).await;
    assert_eq!(again, first, "same id, version and position");
    assert_eq!(app.events_in_log().await, 1);
    let stored: Option<Value> =
        sqlx::query_scalar("SELECT response FROM accounts.idempotency_keys")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, Some(first), "the re-run stored the response");
}
