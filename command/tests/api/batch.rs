//! `POST /v1/tasks/batch`: per-command results in order, exactly the events
//! expected, one bad command failing alone, and the whole batch idempotent.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, User, problem, spawn_app, unique_email};

async fn batch(app: &TestApp, user: &User, body: &Value, key: Option<&str>) -> Response {
    let mut req = app
        .request(Method::POST, "/v1/tasks/batch")
        .bearer_auth(&user.token)
        .json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.send().await.unwrap()
}

async fn results(response: Response) -> Vec<Value> {
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_batch_of_100_mixed_commands_gives_each_its_result_and_exactly_its_events() {
    let app = spawn_app().await;
    let (ann, bob) = (
        app.register(&unique_email()).await,
        app.register(&unique_email()).await,
    );
    // 20 tasks to patch, 10 to delete, 10 deleted ones to restore.
    let mut ids = Vec::new();
    for i in 0..40 {
        let ack = app
            .create_task(&ann, json!({ "title": format!("t{i}") }))
            .await;
        ids.push(ack["id"].as_str().unwrap().to_owned());
    }
    for id in &ids[30..40] {
        assert_eq!(app.delete_task(&ann, id).await.status(), StatusCode::OK);
    }
    let bobs = app.create_task(&bob, json!({"title": "Bob's"})).await;
    let before = app.events_in_log().await;

    let mut commands = Vec::new();
    let mut expected: Vec<u16> = Vec::new();
    // 40 creates (one with a bad title), 20 patches (two with a stale
    // if_match), 10 deletes, 10 restores, then the conflicts: a restore of
    // a live task, a patch of Bob's task, an unknown op, and 17 patches of
    // the same task in order.
    for i in 0..40 {
        let title = if i == 7 {
            String::new()
        } else {
            format!("new {i}")
        };
        commands.push(json!({"op": "create", "body": {"title": title, "priority": "high"}}));
        expected.push(if i == 7 { 422 } else { 201 });
    }
    for (n, id) in ids[0..20].iter().enumerate() {
        let if_match = if n < 2 { json!(5) } else { json!(0) };
        commands.push(
            json!({"op": "patch", "id": id, "if_match": if_match, "body": {"status": "done"}}),
        );
        expected.push(if n < 2 { 412 } else { 200 });
    }
    for id in &ids[20..30] {
        commands.push(json!({"op": "delete", "id": id}));
        expected.push(200);
    }
    for id in &ids[30..40] {
        commands.push(json!({"op": "restore", "id": id}));
        expected.push(200);
    }
    commands.push(json!({"op": "restore", "id": ids[2]}));
    expected.push(409);
    commands.push(json!({"op": "patch", "id": bobs["id"], "body": {"title": "mine"}}));
    expected.push(404);
    commands.push(json!({"op": "archive", "id": ids[3]}));
    expected.push(422);
    for i in 0..17 {
        commands.push(json!({"op": "patch", "id": ids[4], "body": {"title": format!("step {i}")}}));
        expected.push(200);
    }
    assert_eq!(commands.len(), 100);

    let got = results(batch(&app, &ann, &json!({ "commands": commands }), None).await).await;
    let statuses: Vec<u16> = got
        .iter()
        .map(|r| r["status"].as_u64().unwrap() as u16)
        .collect();
    assert_eq!(statuses, expected);
    assert_eq!(got[7]["body"]["errors"][0]["field"], "title");
    // The same task's patches ran in the order given: versions 2..=18
    // (its earlier patch to done made version 1).
    let versions: Vec<u64> = got[83..100]
        .iter()
        .map(|r| r["body"]["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (2..=18).collect::<Vec<_>>());
    let stream = app.stream(&ids[4]).await;
    assert_eq!(stream.last().unwrap().data["title"], "step 16");

    // 39 creates + 18 patches + 10 deletes + 10 restores + 17 titles.
    assert_eq!(app.events_in_log().await - before, 39 + 18 + 10 + 10 + 17);
    for r in got.iter().filter(|r| r["status"] == 201) {
        let id = r["body"]["id"].as_str().unwrap();
        assert_eq!(app.stream(id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_malformed_batch_is_400_and_changes_nothing() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let before = app.events_in_log().await;
    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"op": "create", "body": {"title": "x"}}))
        .collect();
    for body in [
        json!([]),
        json!({}),
        json!({"commands": []}),
        json!({"commands": "create"}),
        json!({"commands": too_many}),
        json!({"commands": [{"op": "create", "body": {"title": "x"}}], "extra": 1}),
    ] {
        problem(
            batch(&app, &user, &body, None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    assert_eq!(app.events_in_log().await, before);
}

#[tokio::test]
async fn bad_commands_fail_alone_with_422() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let body = json!({"commands": [
        {"op": "create", "body": {"title": "ok"}},
        {"op": "patch", "body": {"title": "no id"}},
        {"op": "delete", "id": "not-a-uuid"},
        {"op": "create", "body": {"title": "x", "colour": "red"}},
        {"op": "create", "id": "0193e0a0-0000-7000-8000-000000000000", "body": {"title": "x"}},
        "create",
        {"op": "create", "body": {"title": "also ok"}, "surprise": true},
    ]});
    let got = results(batch(&app, &user, &body, None).await).await;
    let statuses: Vec<u64> = got.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![201, 422, 422, 422, 422, 422, 422]);
    assert_eq!(got[3]["body"]["errors"][0]["field"], "colour");
}

#[tokio::test]
async fn a_batch_retried_with_its_key_replays_the_results_and_appends_nothing_more() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let body = json!({"commands": [
        {"op": "create", "body": {"title": "a"}},
        {"op": "create", "body": {"title": "b"}},
    ]});
    let first = results(batch(&app, &user, &body, Some("batch-1")).await).await;
    let after_first = app.events_in_log().await;
    let again = batch(&app, &user, &body, Some("batch-1")).await;
    assert!(again.headers().get("idempotent-replayed").is_some());
    assert_eq!(results(again).await, first);
    assert_eq!(app.events_in_log().await, after_first);

    let other = json!({"commands": [{"op": "create", "body": {"title": "c"}}]});
    problem(
        batch(&app, &user, &other, Some("batch-1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
}
