//! Requests retried with their `Idempotency-Key` after the first run appended
//! its events but died before its answer was kept (simulated by clearing the
//! kept answer): a restore answers as the first time (not a 409), and a batch
//! answers every command as the first time, appending nothing more (its
//! creates make no second task, its patches change nothing twice).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, User, spawn_app, unique_email};

/// What a crash between the append and keeping the answer leaves.
async fn forget_answer(app: &TestApp, user: &User, key: &str) {
    let forgotten = sqlx::query(
        "UPDATE accounts.idempotency_keys SET response = NULL WHERE user_id = $1 AND key = $2",
    )
    .bind(user.id)
    .bind(key)
    .execute(app.pool())
    .await
    .unwrap();
    assert_eq!(forgotten.rows_affected(), 1);
}

#[tokio::test]
async fn a_restore_retried_after_a_crash_answers_as_the_first_time() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let created = app.create_task(&user, json!({"title": "Back"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    app.delete_task(&user, &id).await;
    let key = format!("restore-{}", Uuid::new_v4());
    let restore = || {
        app.request(Method::POST, &format!("/v1/tasks/{id}/restore"))
            .bearer_auth(&user.token)
            .header("idempotency-key", &key)
    };
    let first = restore().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    forget_answer(&app, &user, &key).await;

    let again = restore().send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "not a 409: the restore happened"
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.stream(&id).await.len(), 3, "one TaskRestored only");
}

#[tokio::test]
async fn a_batch_retried_after_a_crash_answers_as_the_first_time_and_appends_nothing() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let patched = app.create_task(&user, json!({"title": "Patch me"})).await;
    let patched_id = patched["id"].as_str().unwrap().to_owned();
    let deleted = app.create_task(&user, json!({"title": "Delete me"})).await;
    let deleted_id = deleted["id"].as_str().unwrap().to_owned();
    let body = json!({"commands": [
        {"op": "create", "body": {"title": "Made once"}},
        {"op": "patch", "id": patched_id, "body": {"title": "Patched once", "status": "done"}},
        {"op": "delete", "id": deleted_id},
        {"op": "create", "body": {"title": "Made once too"}},
        {"op": "patch", "id": Uuid::now_v7(), "body": {"title": "nobody's"}},
    ]});
    let key = format!("batch-{}", Uuid::new_v4());
    let send = || {
        app.request(Method::POST, "/v1/tasks/batch")
            .bearer_auth(&user.token)
            .header("idempotency-key", &key)
            .json(&body)
    };
    let first = send().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let statuses: Vec<u64> = first["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 200, 200, 201, 404]);
    let logged = app.events_in_log().await;
    forget_answer(&app, &user, &key).await;

    let again = send().send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(
        again.headers().get("idempotent-replayed").is_none(),
        "it ran again"
    );
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.events_in_log().await, logged, "nothing appended twice");
    assert_eq!(
        app.events_of_type("TaskCreated").await,
        4,
        "two tasks before, two by the batch"
    );
}
