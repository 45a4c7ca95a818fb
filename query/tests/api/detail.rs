//! One task: now (with ETag and If-None-Match), as of an instant (folded from
//! the log), its history (after deletion too), and nothing of anyone else's.

use chrono::{Duration, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::json;
use tasklog_events::domain::{Priority, Status, Tags, TaskPatch, TaskTitle};

use crate::helpers::{NewTask, problem, spawn_app, user};

#[tokio::test]
async fn a_task_comes_with_its_version_as_etag_and_if_none_match_gives_304() {
    let app = spawn_app().await;
    let alice = user();
    let mut spec = NewTask::titled("Buy milk");
    spec.tags = vec!["Home".into()];
    spec.priority = Priority::Urgent;
    let (id, _) = app.create(&alice, spec).await;
    let patch = TaskPatch {
        status: Some(Status::Done),
        ..TaskPatch::default()
    };
    app.update(&alice, id, patch, Utc::now()).await;
    app.project().await;

    let response = app
        .get(&alice, &format!("/v1/tasks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let task: serde_json::Value = response.json().await.unwrap();
    assert_eq!(task["id"], id.to_string());
    assert_eq!(task["title"], "Buy milk");
    assert_eq!(task["status"], "done");
    assert_eq!(task["priority"], "urgent");
    assert_eq!(task["tags"], json!(["home"]));
    assert_eq!(task["version"], 1);
    assert!(task["completed_at"].is_string());

    let response = app
        .get(&alice, &format!("/v1/tasks/{id}"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let response = app
        .get(&alice, &format!("/v1/tasks/{id}"))
        .header("if-none-match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn as_of_folds_the_log_up_to_the_instant() {
    let app = spawn_app().await;
    let alice = user();
    let t = |m: i64| Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap() + Duration::minutes(m);
    let mut spec = NewTask::titled("Draft");
    spec.at = t(0);
    let (id, _) = app.create(&alice, spec).await;
    let patch = TaskPatch {
        title: Some(TaskTitle::parse("Final").unwrap()),
        status: Some(Status::Done),
        ..TaskPatch::default()
    };
    app.update(&alice, id, patch, t(10)).await;
    let patch = TaskPatch {
        tags: Some(Tags::parse(&["x"]).unwrap()),
        due_at: Some(Some(t(100))),
        ..TaskPatch::default()
    };
    app.update(&alice, id, patch, t(20)).await;
    app.delete(&alice, id, t(30)).await;
    app.project().await;

    let at = |instant: chrono::DateTime<Utc>| {
        format!(
            "/v1/tasks/{id}?as_of={}",
            instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    };
    // Before creation, and after deletion: 404.
    for instant in [t(-1), t(30), t(31)] {
        let response = app.get(&alice, &at(instant)).send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }
    // Now: deleted.
    problem(
        app.get(&alice, &format!("/v1/tasks/{id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;

    let response = app.get(&alice, &at(t(0))).send().await.unwrap();
    assert_eq!(response.headers()["etag"], "\"0\"");
    let v0: serde_json::Value = response.json().await.unwrap();
    assert_eq!(v0["title"], "Draft");
    assert_eq!(v0["status"], "todo");
    assert_eq!(v0["version"], 0);
    assert_eq!(v0["created_at"], "2024-06-01T12:00:00Z");
    assert_eq!(v0["updated_at"], "2024-06-01T12:00:00Z");

    // Between patches: the title and status events of the first patch (versions 1, 2).
    let v2 = app.json(&alice, &at(t(15))).await;
    assert_eq!(v2["title"], "Final");
    assert_eq!(v2["status"], "done");
    assert_eq!(v2["completed_at"], "2024-06-01T12:10:00Z");
    assert_eq!(v2["updated_at"], "2024-06-01T12:10:00Z");
    assert_eq!(v2["tags"], json!([]));
    assert_eq!(v2["version"], 2);

    let v4 = app.json(&alice, &at(t(29))).await;
    assert_eq!(v4["tags"], json!(["x"]));
    assert_eq!(v4["due_at"], "2024-06-01T13:40:00Z");
    assert_eq!(v4["version"], 4);

    // An offset is an instant like any other.
    let with_offset = format!("/v1/tasks/{id}?as_of=2024-06-01T14:15:00%2B02:00");
    assert_eq!(app.json(&alice, &with_offset).await["version"], 2);

    // Someone else asking as of any time: 404.
    let response = app.get(&user(), &at(t(15))).send().await.unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn history_lists_every_event_oldest_first_even_after_deletion() {
    let app = spawn_app().await;
    let alice = user();
    let (id, created) = app.create(&alice, NewTask::titled("T")).await;
    let patch = TaskPatch {
        priority: Some(Priority::High),
        ..TaskPatch::default()
    };
    let changed = app.update(&alice, id, patch, Utc::now()).await;
    let deleted = app.delete(&alice, id, Utc::now()).await;
    app.project().await;

    let body = app.json(&alice, &format!("/v1/tasks/{id}/history")).await;
    let events = body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["TaskCreated", "TaskPriorityChanged", "TaskDeleted"]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["version"], i);
        assert_eq!(e["actor_id"], alice.id.to_string());
        assert!(e["recorded_at"].is_string());
    }
    assert_eq!(events[0]["position"], created.position.commit);
    assert_eq!(events[1]["position"], changed.position.commit);
    assert_eq!(events[2]["position"], deleted.position.commit);
    assert_eq!(events[0]["data"]["title"], "T");
    assert_eq!(events[0]["data"]["owner_id"], alice.id.to_string());
    assert_eq!(events[1]["data"]["from"], "medium");
    assert_eq!(events[1]["data"]["to"], "high");
    assert_eq!(events[2]["data"]["priority"], "high");

    let response = app
        .get(&user(), &format!("/v1/tasks/{id}/history"))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .get(
            &alice,
            &format!("/v1/tasks/{}/history", uuid::Uuid::now_v7()),
        )
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn another_users_task_is_a_404_on_every_endpoint() {
    let app = spawn_app().await;
    let alice = user();
    let mallory = user();
    let (id, _) = app.create(&alice, NewTask::titled("secret")).await;
    app.project().await;
    for path in [
        format!("/v1/tasks/{id}"),
        format!("/v1/tasks/{id}?as_of=2099-01-01T00:00:00Z"),
        format!("/v1/tasks/{id}/history"),
    ] {
        let response = app.get(&mallory, &path).send().await.unwrap();
        let body = problem(response, StatusCode::NOT_FOUND).await;
        assert!(!body.to_string().contains("secret"));
        // Alice sees it.
        assert_eq!(
            app.get(&alice, &path).send().await.unwrap().status(),
            StatusCode::OK,
            "{path}"
        );
    }
    let list = app.json(&mallory, "/v1/tasks?q=secret").await;
    assert_eq!(list["tasks"], json!([]));
    let stats = app.json(&mallory, "/v1/stats").await;
    assert_eq!(stats["total"], 0);
    assert_eq!(app.json(&alice, "/v1/stats").await["total"], 1);
}
