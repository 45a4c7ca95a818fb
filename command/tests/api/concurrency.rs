//! Many writers on one task: blind writes all land, conditional ones have one winner.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, start, unique_email};

const WRITERS: usize = 20;

#[tokio::test]
async fn concurrent_blind_updates_all_land_and_the_version_counts_them() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = app.create_task(&user, json!({"title": "start"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writes = (0..WRITERS).map(|i| {
        let app = &app;
        let user = &user;
        let id = &id;
        async move {
            app.patch_task(user, id, &json!({"title": format!("writer {i}")}))
                .await
        }
    });
    let responses = futures::future::join_all(writes).await;
    let mut versions = BTreeSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let ack: Value = response.json().await.unwrap();
        versions.insert(ack["version"].as_u64().unwrap());
    }
    // Every writer got its own version: none overwrote another's append.
    assert_eq!(versions, (1..=WRITERS as u64).collect());

    let events = app.stream(&id).await;
    assert_eq!(events.len(), WRITERS + 1);
    assert_eq!(events.last().unwrap().version, WRITERS as u64);
    let titles: BTreeSet<_> = events[1..]
        .iter()
        .map(|e| e.data["title"].to_string())
        .collect();
    assert_eq!(titles.len(), WRITERS, "each writer's title is in the log");
}

#[tokio::test]
async fn with_if_match_exactly_one_concurrent_writer_wins_and_the_rest_get_412() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = app.create_task(&user, json!({"title": "start"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let writes = (0..WRITERS).map(|i| {
        app.request(Method::PATCH, &format!("/v1/tasks/{id}"))
            .bearer_auth(&user.token)
            .header("if-match", "\"0\"")
            .json(&json!({"title": format!("writer {i}")}))
            .send()
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|r| r.unwrap().status())
        .collect();
    let wins = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((wins, refused), (1, WRITERS - 1), "{statuses:?}");
    assert_eq!(app.stream(&id).await.len(), 2);
}

/// Two instances on one log: each remembers the tasks it wrote, and a
/// change decided on a remembered state that another instance has moved
/// past is decided again on the stream, never appended, never refused for
/// the remembered version alone.
#[tokio::test]
async fn a_task_moved_by_another_instance_is_changed_as_it_now_stands() {
    let a = spawn_app().await;
    let b = start(a.db.clone(), a.db.url().to_owned(), Vec::new()).await;
    let user = a.register(&unique_email()).await;
    let id = a.create_task(&user, json!({"title": "start"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let version = |r: Value| r["version"].as_u64().unwrap();
    let patch = |app: &TestApp, if_match: Option<u64>, body: Value| {
        let mut request = app
            .request(Method::PATCH, &format!("/v1/tasks/{id}"))
            .bearer_auth(&user.token);
        if let Some(v) = if_match {
            request = request.header("if-match", format!("\"{v}\""));
        }
        request.json(&body).send()
    };
    // A remembers the task at version 1; B moves it to 2.
    let r = patch(&a, None, json!({"title": "by a"})).await.unwrap();
    assert_eq!(version(r.json().await.unwrap()), 1);
    let r = patch(&b, None, json!({"title": "by b"})).await.unwrap();
    assert_eq!(version(r.json().await.unwrap()), 2);

    // A blind change on A lands after B's.
    let r = patch(&a, None, json!({"status": "done"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version(r.json().await.unwrap()), 3);

    // B moves it to 4. On A, If-Match "4" is met (A remembers 3), "3" is not.
    let r = patch(&b, None, json!({"title": "by b again"}))
        .await
        .unwrap();
    assert_eq!(version(r.json().await.unwrap()), 4);
    let r = patch(&a, Some(4), json!({"priority": "high"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version(r.json().await.unwrap()), 5);
    let r = patch(&a, Some(4), json!({"priority": "low"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);

    // B deletes it; A, which remembers it live, answers 404 and writes nothing.
    assert_eq!(b.delete_task(&user, &id).await.status(), StatusCode::OK);
    let r = patch(&a, None, json!({"title": "too late"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let events = a.stream(&id).await;
    let titles: Vec<_> = events
        .iter()
        .filter_map(|e| e.data.get("title").and_then(Value::as_str))
        .collect();
    assert_eq!(titles, ["start", "by a", "by b", "by b again"]);
    assert_eq!(events.len(), 7, "created, 5 changes, deleted");
}
