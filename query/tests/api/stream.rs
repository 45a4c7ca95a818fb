//! `GET /v1/changes/stream` on the service: events in log order with ids
//! that resume exactly (also inside a commit of several changes), never
//! another user's change, at most `SSE_MAX_PER_USER` streams per user, and
//! bad resume points refused.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tasklog_events::domain::{Status, TaskPatch, TaskTitle};

use crate::helpers::{NewTask, TestApp, User, field, problem, spawn_app, spawn_app_with, user};

/// Only a guard against a hung test, never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// Reads events off a stream response, skipping comments.
pub struct SseReader {
    response: Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a heartbeat comment
                }
                return Some(SseEvent {
                    id,
                    event,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream went silent")
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn open(app: &TestApp, who: &User, query: &str, last_id: Option<&str>) -> Response {
    let mut request = app.get(who, &format!("/v1/changes/stream{query}"));
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.unwrap()
}

fn key(e: &SseEvent) -> (String, u64) {
    (
        e.data["task_id"].as_str().unwrap().to_owned(),
        e.data["version"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn a_stream_resumes_from_any_event_id_without_gap_or_repeat() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    let mut stream = SseReader::new(open(&app, &a, "?after=0", None).await);
    let (id, _) = app.create(&a, NewTask::titled("one")).await;
    app.create(&b, NewTask::titled("not yours")).await;
    let patch = TaskPatch {
        title: Some(TaskTitle::parse("renamed").unwrap()),
        status: Some(Status::Done),
        ..TaskPatch::default()
    };
    app.update(&a, id, patch, Utc::now()).await;
    app.create(&a, NewTask::titled("two")).await;
    app.project().await;

    let mut all = Vec::new();
    for _ in 0..4 {
        all.push(stream.next().await.unwrap());
    }
    let types: Vec<&str> = all.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        [
            "TaskCreated",
            "TaskTitleChanged",
            "TaskStatusChanged",
            "TaskCreated"
        ]
    );
    assert!(all.iter().all(|e| e.data["task_id"] != Value::Null));
    // The first change of the two-change commit cannot stand for the commit.
    assert!(all[1].id.contains('/'), "{:?}", all[1].id);
    assert!(!all[2].id.contains('/'), "{:?}", all[2].id);
    assert_eq!(all[2].id, all[2].data["position"].to_string());

    // Resuming after each event gives exactly the rest.
    for (i, seen) in all.iter().enumerate() {
        let mut again = SseReader::new(open(&app, &a, "", Some(&seen.id)).await);
        for expected in &all[i + 1..] {
            assert_eq!(
                key(&again.next().await.unwrap()),
                key(expected),
                "after {}",
                seen.id
            );
        }
    }
    // Another user's stream sees only theirs.
    let mut theirs = SseReader::new(open(&app, &b, "?after=0", None).await);
    let only = theirs.next().await.unwrap();
    assert_eq!(only.data["data"]["title"], "not yours");
}

#[tokio::test]
async fn streams_beyond_the_per_user_limit_are_429_and_bad_resume_points_400() {
    let app = spawn_app_with(&[("SSE_MAX_PER_USER", "2")]).await;
    let (a, b) = (user(), user());
    let first = open(&app, &a, "", None).await;
    let second = open(&app, &a, "", None).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(second.status(), StatusCode::OK);
    let third = open(&app, &a, "", None).await;
    let refused = problem(third, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(refused["status"], 429);
    assert_eq!(
        open(&app, &b, "", None).await.status(),
        StatusCode::OK,
        "per user"
    );
    drop(first);
    // The slot comes back once the server notices the closed connection.
    let mut reopened = None;
    for _ in 0..600 {
        let r = open(&app, &a, "", None).await;
        if r.status() == StatusCode::OK {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed stream gives its slot back");

    for (query, last_id, name) in [
        ("?after=x", None, "after"),
        ("", Some("12/"), "Last-Event-ID"),
        ("", Some("-1"), "Last-Event-ID"),
        ("?from=3", None, "from"),
    ] {
        let response = open(&app, &b, query, last_id).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(field(&body), name);
    }
    problem(
        app.anonymous("/v1/changes/stream").send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}
