//! A replica's reads and polls go through its own read pool: cut off, it
//! leaves the rotation while reads go on at the primary; back, its pool
//! connects again by itself and it rejoins.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{NewTask, TestApp, spawn_app_with_replica, user};

async fn in_rotation(app: &TestApp) -> bool {
    let body: Value = app
        .anonymous("/health/ready")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["replicas"]
        .as_object()
        .and_then(|m| m.values().next().cloned())
        .is_some_and(|r| r["in_rotation"] == Value::Bool(true))
}

async fn eventually(app: &TestApp, wanted: bool, what: &str) {
    for _ in 0..300 {
        if in_rotation(app).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 15 s: {what}");
}

#[tokio::test]
async fn a_replica_cut_off_leaves_the_rotation_and_rejoins_when_back() {
    let app = spawn_app_with_replica().await;
    let replica = app.replica.as_ref().unwrap();
    let alice = user();
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    eventually(&app, true, "the replica joins the rotation").await;
    let page = app.json(&alice, "/v1/tasks?limit=5").await;
    assert_eq!(page["tasks"][0]["title"], "one");

    replica.down();
    eventually(&app, false, "the cut-off replica leaves the rotation").await;
    for page in 1..=5 {
        let response = app
            .get(&alice, &format!("/v1/tasks?page={page}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "read at the primary");
    }

    replica.up();
    eventually(&app, true, "the replica rejoins").await;
    let stats: Value = app.json(&alice, "/v1/stats").await;
    assert_eq!(stats["total"], 1);
}
