//! Many writers on one task: blind writes all land, conditional ones have one winner.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{spawn_app, unique_email};

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
