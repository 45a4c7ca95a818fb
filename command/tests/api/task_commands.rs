//! Creating, changing and deleting tasks, read back from the event log.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{fields, problem, spawn_app, unique_email};

#[tokio::test]
async fn create_answers_ack_location_and_etag_and_records_who_asked() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let response = app
        .request(Method::POST, "/v1/tasks")
        .bearer_auth(&user.token)
        .header("x-request-id", "req-create-1")
        .json(&json!({"title": "  Buy milk ", "tags": ["Home", "home", "SHOP"], "due_at": "2030-05-01T10:00:00Z", "priority": "high"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["etag"], "\"0\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let ack: Value = response.json().await.unwrap();
    let id = ack["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/tasks/{id}"));
    assert_eq!(ack["version"], 0);
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    let events = app.stream(id).await;
    assert_eq!(events.len(), 1);
    let created = &events[0];
    assert_eq!(ack["position"], created.position.commit);
    assert_eq!(created.event_type, "TaskCreated");
    assert_eq!(created.data["title"], "Buy milk");
    assert_eq!(created.data["tags"], json!(["home", "shop"]));
    assert_eq!(created.data["status"], "todo");
    assert_eq!(created.data["priority"], "high");
    assert_eq!(created.metadata.actor_id, Some(user.id));
    assert_eq!(created.metadata.owner_id, Some(user.id));
    assert_eq!(created.metadata.request_id.as_deref(), Some("req-create-1"));
    assert_eq!(created.metadata.causation_id, None);
}

#[tokio::test]
async fn patch_emits_one_event_per_changed_field_and_a_no_op_emits_none() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let ack = app
        .create_task(
            &user,
            json!({"title": "T", "due_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    let id = ack["id"].as_str().unwrap();

    let response = app
        .patch_task(
            &user,
            id,
            &json!({"title": "T2", "status": "done", "priority": "medium"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let changed: Value = response.json().await.unwrap();
    assert_eq!(
        changed["version"], 2,
        "title and status changed; priority was medium already"
    );
    assert!(changed["position"].as_u64() > ack["position"].as_u64());

    let response = app
        .patch_task(&user, id, &json!({"title": " T2 ", "status": "done"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let same: Value = response.json().await.unwrap();
    assert_eq!(
        same, changed,
        "a no-op answers the current version and position"
    );

    let cleared = app.patch_task(&user, id, &json!({"due_at": null})).await;
    assert_eq!(cleared.status(), StatusCode::OK);
    let events = app.stream(id).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "TaskCreated",
            "TaskTitleChanged",
            "TaskStatusChanged",
            "TaskDueDateChanged"
        ]
    );
    assert_eq!(events[3].data["due_at"], Value::Null);
    assert_eq!(events[2].data["from"], "todo");
    assert_eq!(events[3].metadata.owner_id, Some(user.id));
}

#[tokio::test]
async fn delete_ends_a_task_and_later_commands_are_404() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = app.create_task(&user, json!({"title": "T"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app.delete_task(&user, &id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(ack["version"], 1);
    assert_eq!(app.stream(&id).await[1].event_type, "TaskDeleted");

    problem(app.delete_task(&user, &id).await, StatusCode::NOT_FOUND).await;
    problem(
        app.patch_task(&user, &id, &json!({"title": "x"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.stream(&id).await.len(), 2);
}

#[tokio::test]
async fn absent_and_malformed_task_ids_are_404() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let absent = uuid::Uuid::now_v7().to_string();
    problem(
        app.patch_task(&user, &absent, &json!({"title": "x"})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(app.delete_task(&user, &absent).await, StatusCode::NOT_FOUND).await;
    problem(
        app.delete_task(&user, "not-a-uuid").await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn if_match_applies_at_the_named_version_only() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let id = app.create_task(&user, json!({"title": "T"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patch = |etag: &'static str, title: &'static str| {
        app.request(Method::PATCH, &format!("/v1/tasks/{id}"))
            .bearer_auth(&user.token)
            .header("if-match", etag)
            .json(&json!({"title": title}))
            .send()
    };
    assert_eq!(
        patch("\"0\"", "one").await.unwrap().status(),
        StatusCode::OK
    );
    let stale = problem(
        patch("\"0\"", "two").await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert!(stale["detail"].as_str().unwrap().contains("version 1"));
    problem(patch("1", "two").await.unwrap(), StatusCode::BAD_REQUEST).await;
    assert_eq!(patch("*", "two").await.unwrap().status(), StatusCode::OK);
    let delete = app
        .request(Method::DELETE, &format!("/v1/tasks/{id}"))
        .bearer_auth(&user.token)
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    problem(delete, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.stream(&id).await.len(), 3);
}

#[tokio::test]
async fn invalid_task_fields_are_422_naming_each_field() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let cases = [
        (json!({"title": "  "}), vec!["title"]),
        (json!({"title": "t".repeat(201)}), vec!["title"]),
        (
            json!({"title": "T", "description": "d".repeat(10_001)}),
            vec!["description"],
        ),
        (json!({"title": "T", "status": "blocked"}), vec!["status"]),
        (json!({"title": "T", "priority": "asap"}), vec!["priority"]),
        (
            json!({"title": "T", "tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            vec!["tags"],
        ),
        (
            json!({"title": "T", "tags": ["x".repeat(33)]}),
            vec!["tags"],
        ),
        (json!({"title": "T", "tags": [1]}), vec!["tags[0]"]),
        (json!({"title": "T", "due_at": "tomorrow"}), vec!["due_at"]),
        (json!({"title": "T", "colour": "red"}), vec!["colour"]),
        (json!({"description": "no title"}), vec!["title"]),
        (
            json!({"title": "", "status": "x", "priority": "y"}),
            vec!["title", "status", "priority"],
        ),
    ];
    for (body, want) in cases {
        let response = app.post("/v1/tasks", &body, Some(&user.token)).await;
        let p = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(fields(&p), want, "{body}");
    }
    let id = app.create_task(&user, json!({"title": "T"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, want) in [
        (json!({"title": null}), vec!["title"]),
        (json!({"owner": "me"}), vec!["owner"]),
        (json!({"status": "later"}), vec!["status"]),
    ] {
        let p = problem(
            app.patch_task(&user, &id, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(fields(&p), want, "{body}");
    }
    assert_eq!(
        app.stream(&id).await.len(),
        1,
        "a refused request changes nothing"
    );
}

#[tokio::test]
async fn bodies_that_are_not_json_too_big_or_malformed_get_their_status() {
    let app = spawn_app().await;
    let user = app.register(&unique_email()).await;
    let send = |content_type: &'static str, body: String| {
        app.request(Method::POST, "/v1/tasks")
            .bearer_auth(&user.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    problem(
        send("text/plain", r#"{"title":"T"}"#.into()).await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    problem(
        send("application/json", r#"{"title":"T""#.into())
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let big = format!(
        r#"{{"title":"T","description":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    problem(
        send("application/json", big).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let no_token = app.post("/v1/tasks", &json!({"title": "T"}), None).await;
    problem(no_token, StatusCode::UNAUTHORIZED).await;
}
