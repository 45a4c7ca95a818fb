//! `POST /v1/tasks/{id}/restore` and `/revert`: what they append, and what
//! they refuse.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tasklog_events::domain::{TaskEvent, TaskState, evolve};

use crate::helpers::{TestApp, User, problem, spawn_app, unique_email};

async fn post(app: &TestApp, user: &User, path: &str, body: Option<Value>) -> Response {
    let mut req = app.request(Method::POST, path).bearer_auth(&user.token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn restore(app: &TestApp, user: &User, id: &str) -> Response {
    post(app, user, &format!("/v1/tasks/{id}/restore"), None).await
}

async fn revert(app: &TestApp, user: &User, id: &str, to: Value) -> Response {
    let body = json!({ "to_version": to });
    post(app, user, &format!("/v1/tasks/{id}/revert"), Some(body)).await
}

fn id_of(ack: &Value) -> String {
    ack["id"].as_str().unwrap().to_owned()
}

/// The events of a stream, decoded, with their metadata's `reverted_to`.
async fn events(app: &TestApp, id: &str) -> Vec<(TaskEvent, Option<u64>)> {
    app.stream(id)
        .await
        .into_iter()
        .map(|r| {
            let event = TaskEvent::decode(&r.event_type, r.schema_version, r.data).unwrap();
            (event, r.metadata.reverted_to)
        })
        .collect()
}

fn fold_to(events: &[(TaskEvent, Option<u64>)], version: usize) -> TaskState {
    events[..=version]
        .iter()
        .fold(TaskState::Absent, |s, (e, _)| evolve(s, e))
}

#[tokio::test]
async fn restoring_a_deleted_task_appends_task_restored_and_a_second_restore_is_409() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let ack = app
        .create_task(
            &user,
            json!({"title": "Keep me", "tags": ["a"], "priority": "high"}),
        )
        .await;
    let id = id_of(&ack);
    assert_eq!(app.delete_task(&user, &id).await.status(), StatusCode::OK);

    let response = restore(&app, &user, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["version"], 2);

    let stream = events(&app, &id).await;
    let TaskEvent::Restored(restored) = &stream[2].0 else {
        panic!("expected TaskRestored, got {:?}", stream[2].0);
    };
    assert_eq!(restored.title.as_str(), "Keep me");
    assert_eq!(restored.tags.to_strings(), vec!["a"]);
    // Live again: it can be changed.
    let patched = app.patch_task(&user, &id, &json!({"title": "Back"})).await;
    assert_eq!(patched.status(), StatusCode::OK);

    let again = restore(&app, &user, &id).await;
    problem(again, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn a_restore_of_another_users_or_a_missing_task_is_404_and_if_match_is_kept() {
    let app = spawn_app().await;
    let (ann, bob) = (
        app.register(&unique_email()).await,
        app.register(&unique_email()).await,
    );
    let id = id_of(&app.create_task(&ann, json!({"title": "Ann's"})).await);
    app.delete_task(&ann, &id).await;
    problem(restore(&app, &bob, &id).await, StatusCode::NOT_FOUND).await;
    let missing = uuid::Uuid::now_v7().to_string();
    problem(restore(&app, &ann, &missing).await, StatusCode::NOT_FOUND).await;

    let stale = app
        .request(Method::POST, &format!("/v1/tasks/{id}/restore"))
        .bearer_auth(&ann.token)
        .header("if-match", "\"0\"")
        .send()
        .await
        .unwrap();
    problem(stale, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(
        app.stream(&id).await.len(),
        2,
        "a refused restore appends nothing"
    );
}

#[tokio::test]
async fn a_restore_retried_with_its_idempotency_key_replays_the_first_answer() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = id_of(&app.create_task(&user, json!({"title": "Twice"})).await);
    app.delete_task(&user, &id).await;
    let keyed = || {
        app.request(Method::POST, &format!("/v1/tasks/{id}/restore"))
            .bearer_auth(&user.token)
            .header("idempotency-key", "restore-1")
    };
    let first = keyed().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let second = keyed().send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert!(second.headers().get("idempotent-replayed").is_some());
    assert_eq!(second.json::<Value>().await.unwrap(), first);
    assert_eq!(app.stream(&id).await.len(), 3, "one TaskRestored only");
}

#[tokio::test]
async fn reverting_to_each_earlier_version_gives_that_versions_fields() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = id_of(
        &app.create_task(&user, json!({"title": "v0", "description": "first"}))
            .await,
    );
    let patches = [
        json!({"title": "v1"}),
        json!({"status": "done", "priority": "urgent"}),
        json!({"tags": ["x", "y"], "due_at": "2031-01-01T00:00:00Z"}),
        json!({"description": "changed", "status": "in_progress"}),
        json!({"due_at": null, "tags": []}),
    ];
    for patch in &patches {
        assert_eq!(
            app.patch_task(&user, &id, patch).await.status(),
            StatusCode::OK
        );
    }
    let history_len = app.stream(&id).await.len();
    for to in 0..history_len as u64 {
        let response = revert(&app, &user, &id, json!(to)).await;
        assert_eq!(response.status(), StatusCode::OK, "revert to {to}");
        let stream = events(&app, &id).await;
        let TaskState::Live(now) = fold_to(&stream, stream.len() - 1) else {
            panic!("live after a revert")
        };
        let TaskState::Live(then) = fold_to(&stream, to as usize) else {
            panic!("live at {to}")
        };
        assert_eq!(
            (
                &now.title,
                &now.description,
                now.status,
                now.priority,
                now.due_at,
                &now.tags
            ),
            (
                &then.title,
                &then.description,
                then.status,
                then.priority,
                then.due_at,
                &then.tags
            ),
            "revert to {to}"
        );
    }
    // Every event a revert appended says which version it brought back.
    let stream = events(&app, &id).await;
    assert!(stream[history_len..].iter().all(|(_, r)| r.is_some()));
    assert!(stream[..history_len].iter().all(|(_, r)| r.is_none()));
}

#[tokio::test]
async fn a_revert_that_changes_nothing_appends_nothing() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = id_of(&app.create_task(&user, json!({"title": "Same"})).await);
    app.patch_task(&user, &id, &json!({"title": "Other"})).await;
    app.patch_task(&user, &id, &json!({"title": "Same"})).await;
    let response = revert(&app, &user, &id, json!(0)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["version"], 2);
    assert_eq!(app.stream(&id).await.len(), 3);
}

#[tokio::test]
async fn reverting_a_deleted_task_restores_it_first() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = id_of(&app.create_task(&user, json!({"title": "Old"})).await);
    app.patch_task(&user, &id, &json!({"title": "New"})).await;
    app.delete_task(&user, &id).await;
    let response = revert(&app, &user, &id, json!(0)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stream = events(&app, &id).await;
    assert!(matches!(stream[3], (TaskEvent::Restored(_), Some(0))));
    let TaskEvent::TitleChanged(t) = &stream[4].0 else {
        panic!("expected a title change, got {:?}", stream[4].0)
    };
    assert_eq!(t.title.as_str(), "Old");
}

#[tokio::test]
async fn bad_revert_targets_are_422_and_a_strangers_task_is_404() {
    let app = spawn_app().await;
    let (ann, bob) = (
        app.register(&unique_email()).await,
        app.register(&unique_email()).await,
    );
    let id = id_of(&app.create_task(&ann, json!({"title": "Mine"})).await);
    app.delete_task(&ann, &id).await;
    for bad in [json!(2), json!(1), json!(-1), json!("0"), json!(null)] {
        problem(
            revert(&app, &ann, &id, bad.clone()).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    // A stranger learns nothing, not even that the version is out of range.
    problem(
        revert(&app, &bob, &id, json!(9)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.stream(&id).await.len(), 2);
}
