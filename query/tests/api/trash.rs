//! `GET /v1/trash`: the caller's deleted tasks, newest deletion first, each as
//! it was when deleted, cursor-paged; a restored task leaves the trash and is
//! back in the list and the counts, and `verify` finds nothing to report.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use tasklog_events::domain::{TaskPatch, TaskTitle};

use crate::helpers::{NewTask, TestApp, User, field, ids, problem, spawn_app, user};

/// Every trashed task of a cursor walk, `limit` at a time, waiting for the
/// change feed to reach `position` first.
async fn trash(app: &TestApp, who: &User, limit: u32, position: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            None => format!("/v1/trash?limit={limit}"),
            Some(c) => format!("/v1/trash?limit={limit}&cursor={c}"),
        };
        let response = app
            .get(who, &path)
            .header("x-min-position", position.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let page: Value = response.json().await.unwrap();
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.len() <= limit as usize);
        out.extend(tasks.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("more than 100 pages");
}

#[tokio::test]
async fn deleted_tasks_are_in_the_trash_newest_first_as_they_were_until_restored() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    let t0 = Utc::now() - Duration::minutes(10);
    let at = |m: i64| t0 + Duration::minutes(m);
    let mut described = NewTask::titled("first");
    described.description = "with words".into();
    described.tags = vec!["home".into()];
    let (first, _) = app.create(&a, described).await;
    let (second, _) = app.create(&a, NewTask::titled("second")).await;
    let (kept, _) = app.create(&a, NewTask::titled("kept")).await;
    let (theirs, _) = app.create(&b, NewTask::titled("not yours")).await;
    let renamed = TaskPatch {
        title: Some(TaskTitle::parse("first, renamed").unwrap()),
        ..TaskPatch::default()
    };
    app.update(&a, first, renamed, at(1)).await;
    app.delete(&a, first, at(2)).await;
    app.delete(&a, second, at(3)).await;
    app.delete(&b, theirs, at(4)).await;
    let position = app.project().await.unwrap().commit;

    let all = trash(&app, &a, 20, position).await;
    assert_eq!(ids(&all), vec![second.to_string(), first.to_string()]);
    let was = &all[1];
    assert_eq!(was["title"], "first, renamed");
    assert_eq!(was["description"], "with words");
    assert_eq!(was["tags"], serde_json::json!(["home"]));
    assert_eq!(was["status"], "todo");
    assert_eq!(was["version"], 2, "the stream's version: its deletion's");
    assert!(was["deleted_at"].as_str().is_some());
    assert!(all[0]["deleted_at"].as_str() >= all[1]["deleted_at"].as_str());
    assert_eq!(ids(&trash(&app, &a, 1, position).await), ids(&all));
    assert_eq!(
        ids(&trash(&app, &b, 20, position).await),
        vec![theirs.to_string()]
    );

    app.restore(&a, first, at(5)).await;
    let position = app.project().await.unwrap().commit;
    assert_eq!(
        ids(&trash(&app, &a, 20, position).await),
        vec![second.to_string()]
    );
    let listed = app.walk(&a, "sort=created_at").await;
    assert_eq!(ids(&listed), vec![first.to_string(), kept.to_string()]);
    assert_eq!(listed[0]["title"], "first, renamed");
    let stats = app.json(&a, "/v1/stats").await;
    assert_eq!(stats["total"], 2);
    let report = app.verify().await;
    assert!(report.is_empty(), "{report:?}");

    // Deleted again: back in the trash, on top.
    app.delete(&a, first, at(6)).await;
    let position = app.project().await.unwrap().commit;
    assert_eq!(
        ids(&trash(&app, &a, 20, position).await),
        vec![first.to_string(), second.to_string()]
    );
}

#[tokio::test]
async fn bad_trash_parameters_are_400s_naming_them() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    for (id, _) in [
        app.create(&a, NewTask::titled("x")).await,
        app.create(&a, NewTask::titled("y")).await,
    ] {
        app.delete(&a, id, Utc::now()).await;
    }
    app.create(&a, NewTask::titled("live 1")).await;
    app.create(&a, NewTask::titled("live 2")).await;
    app.project().await;
    let page = app.json(&a, "/v1/trash?limit=1").await;
    let cursor = page["next_cursor"].as_str().expect("a second page");
    let listed = app.json(&a, "/v1/tasks?limit=1").await;
    let list_cursor = listed["next_cursor"].as_str().expect("a second list page");
    for (path, who, name) in [
        ("/v1/trash?limit=0".to_owned(), &a, "limit"),
        ("/v1/trash?limit=101".to_owned(), &a, "limit"),
        ("/v1/trash?sort=title".to_owned(), &a, "sort"),
        ("/v1/trash?cursor=garbage".to_owned(), &a, "cursor"),
        (format!("/v1/trash?cursor={cursor}"), &b, "cursor"),
        (format!("/v1/trash?cursor={list_cursor}"), &a, "cursor"),
    ] {
        let body = problem(
            app.get(who, &path).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(field(&body), name, "{path}");
    }
    let anonymous = app.anonymous("/v1/trash").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
