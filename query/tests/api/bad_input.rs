//! Every invalid parameter is a 400 problem naming it; cursors cannot be
//! forged, edited, reused under another sort or by another user.

use reqwest::StatusCode;

use crate::helpers::{NewTask, field, problem, spawn_app, user};

#[tokio::test]
async fn each_invalid_list_parameter_is_a_400_naming_it() {
    let app = spawn_app().await;
    let alice = user();
    let cases = [
        ("status=blocked", "status"),
        ("status=todo,,done", "status"),
        ("priority=critical", "priority"),
        ("tag=", "tag"),
        ("tag=a-tag-of-thirty-three-characterss", "tag"),
        ("q=%00", "q"),
        ("due_before=tomorrow", "due_before"),
        ("due_after=2030-02-30T00:00:00Z", "due_after"),
        ("sort=name", "sort"),
        ("sort=title&sort=title", "sort"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("page=0", "page"),
        ("page=-2", "page"),
        ("page=1&cursor=x", "page"),
        ("cursor=", "cursor"),
        ("cursor=not-a-cursor", "cursor"),
        ("frobnicate=1", "frobnicate"),
    ];
    for (query, name) in cases {
        let response = app
            .get(&alice, &format!("/v1/tasks?{query}"))
            .send()
            .await
            .unwrap();
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field(&body), name, "?{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(name),
            "?{query}: {body}"
        );
    }
    let long = "x".repeat(201);
    let response = app
        .get(&alice, &format!("/v1/tasks?q={long}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        field(&problem(response, StatusCode::BAD_REQUEST).await),
        "q"
    );
}

#[tokio::test]
async fn tampered_foreign_and_cross_sort_cursors_are_400s() {
    let app = spawn_app().await;
    let alice = user();
    for i in 0..3 {
        app.create(&alice, NewTask::titled(&format!("t{i}"))).await;
    }
    app.project().await;
    let page = app.json(&alice, "/v1/tasks?sort=title&limit=1").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    // The cursor works as issued.
    let next = app
        .json(
            &alice,
            &format!("/v1/tasks?sort=title&limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(next["tasks"][0]["title"], "t1");

    let (payload, tag) = cursor.split_once('.').unwrap();
    let mut flipped = payload.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let bad = [
        format!("{flipped}.{tag}"),
        format!("{payload}.{}", tag.chars().rev().collect::<String>()),
        payload.to_owned(),
        format!("{cursor}%00"),
        "%FF%FE".to_owned(),
    ];
    for c in bad {
        let response = app
            .get(&alice, &format!("/v1/tasks?sort=title&limit=1&cursor={c}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            field(&problem(response, StatusCode::BAD_REQUEST).await),
            "cursor",
            "{c}"
        );
    }
    // Another sort, or another user, cannot use it.
    let response = app
        .get(
            &alice,
            &format!("/v1/tasks?sort=-title&limit=1&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(field(&body), "cursor");
    assert!(
        body["detail"].as_str().unwrap().contains("sort=title"),
        "{body}"
    );
    let response = app
        .get(
            &user(),
            &format!("/v1/tasks?sort=title&limit=1&cursor={cursor}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        field(&problem(response, StatusCode::BAD_REQUEST).await),
        "cursor"
    );
}

#[tokio::test]
async fn bad_as_of_and_unknown_detail_parameters_are_400s_and_a_non_uuid_id_is_a_404() {
    let app = spawn_app().await;
    let alice = user();
    let (id, _) = app.create(&alice, NewTask::titled("t")).await;
    app.project().await;
    for (query, name) in [
        ("as_of=yesterday", "as_of"),
        ("as_of=2030-01-01", "as_of"),
        (
            "as_of=2030-01-01T00:00:00Z&as_of=2030-01-01T00:00:00Z",
            "as_of",
        ),
        ("version=3", "version"),
    ] {
        let response = app
            .get(&alice, &format!("/v1/tasks/{id}?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            field(&problem(response, StatusCode::BAD_REQUEST).await),
            name,
            "{query}"
        );
    }
    for path in [
        "/v1/tasks/not-a-uuid",
        "/v1/tasks/not-a-uuid/history",
        "/v1/nothing",
    ] {
        let response = app.get(&alice, path).send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND).await;
    }
}
