//! `GET /v1/changes/stream` on the service: events in log order with ids
//! that resume exactly (also inside a commit of several changes), never
//! another user's change, at most `SSE_MAX_PER_USER` streams per user, and
//! bad resume points refused.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Response, StatusCode};
use serde_json::Value;
use tasklog_events::domain::{Status, TaskPatch, TaskTitle};
use tasklog_platform::testing::sse::{SseEvent, SseReader};

use crate::helpers::{
    NewTask, TestApp, User, field, problem, spawn_app, spawn_app_behind_proxy, spawn_app_with, user,
};

/// Only a guard against a hung test, never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A stream that opened: 200, as `text/event-stream`.
fn reader(response: Response) -> SseReader {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    SseReader::new(response)
}

/// The next event of a stream that stays open.
async fn next(stream: &mut SseReader) -> SseEvent {
    stream.next().await.unwrap().expect("the stream stays open")
}

async fn open(app: &TestApp, who: &User, query: &str, last_id: Option<&str>) -> Response {
    let mut request = app.get(who, &format!("/v1/changes/stream{query}"));
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn a_stream_resumes_from_any_event_id_without_gap_or_repeat() {
    let app = spawn_app().await;
    let (a, b) = (user(), user());
    let mut stream = reader(open(&app, &a, "?after=0", None).await);
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
        all.push(next(&mut stream).await);
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
        let mut again = reader(open(&app, &a, "", Some(&seen.id)).await);
        for expected in &all[i + 1..] {
            assert_eq!(
                next(&mut again).await.key(),
                expected.key(),
                "after {}",
                seen.id
            );
        }
    }
    // Another user's stream sees only theirs.
    let mut theirs = reader(open(&app, &b, "?after=0", None).await);
    let only = next(&mut theirs).await;
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

/// `sse_slow_clients_disconnected_total` as `/metrics` shows it (the
/// recorder is the test process's, shared by every test in it).
async fn slow_clients_cut(app: &TestApp) -> u64 {
    let text = app
        .anonymous("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("sse_slow_clients_disconnected_total "))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// `count` changes of about 10 kB each by `user`, projected.
async fn large_changes(app: &TestApp, user: &User, count: usize) {
    let mut task = NewTask::titled("large");
    task.description = "x".repeat(10_000);
    for _ in 0..count {
        app.create(user, task.clone()).await;
    }
    app.project().await;
}

/// The service's address.
fn server_address(app: &TestApp) -> std::net::SocketAddr {
    app.address.trim_start_matches("http://").parse().unwrap()
}

/// `user`'s change stream from the start, asked for over a socket with a
/// tiny receive window, nothing read yet.
async fn unread_stream(app: &TestApp, user: &User) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = server_address(app);
    let mut conn = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/changes/stream?after=0 HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
        user.token
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, request.as_bytes())
        .await
        .unwrap();
    conn
}

/// A client that opens a stream and then reads nothing: once its socket,
/// the server's write buffer and the stream's `BUFFER` of events are full,
/// the stream waits `SSE_SLOW_CLIENT_MS` and is cut off. Its task ends (the
/// per-user slot comes back while the stalled connection is still open),
/// and what the client finds when it reads at last is a prefix of its
/// changes, in order, then the end: the rest was never buffered for it.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_not_buffered_for() {
    let app = spawn_app_with(&[("SSE_SLOW_CLIENT_MS", "200"), ("SSE_MAX_PER_USER", "1")]).await;
    let a = user();
    // About 12 MB of changes: more than the client's socket, the server's
    // (at most 4 MB on Linux), hyper's write buffer and BUFFER events hold.
    const CHANGES: usize = 1200;
    large_changes(&app, &a, CHANGES).await;
    let before = slow_clients_cut(&app).await;

    // A tiny receive window, and never a read until the cut-off is seen.
    let mut conn = unread_stream(&app, &a).await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while slow_clients_cut(&app).await <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a client that reads nothing is never cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its slot is free again although the client has not read a byte.
    let mut reopened = false;
    while tokio::time::Instant::now() < deadline {
        let r = open(&app, &a, "", None).await;
        if r.status() == StatusCode::OK {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "the cut-off stream gives its slot back");

    // Reading now: what was in flight, then the end of the response.
    let mut raw = Vec::new();
    tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut raw),
    )
    .await
    .expect("the cut-off stream ends")
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    // Each event is one chunk, so its lines are whole.
    let positions: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| {
            serde_json::from_str::<Value>(d.trim()).unwrap()["position"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(!positions.is_empty(), "the client got the first changes");
    assert!(
        positions.len() < CHANGES,
        "{} of {CHANGES} changes were held for a client that did not read",
        positions.len()
    );
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in log order");
}

/// Whether the server holds a TCP connection from `client`, as the kernel
/// lists it (`/proc/net/tcp`).
fn server_holds_connection_from(app: &TestApp, client: std::net::SocketAddr) -> bool {
    let server = server_address(app);
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| port(f[1]) == server.port() && port(f[2]) == client.port())
}

/// A client that asks for a stream and then takes nothing, not even the
/// first changes that fit in the kernel's buffers: once its window has been
/// shut for `SEND_STALL_TIMEOUT_MS`, the server's kernel drops the
/// connection, instead of holding it and its buffers until the client reads.
#[tokio::test]
async fn a_connection_that_takes_nothing_is_dropped_after_the_send_stall_timeout() {
    let app = spawn_app_with(&[("SEND_STALL_TIMEOUT_MS", "1000")]).await;
    let a = user();
    // About 1 MB of changes: far more than the client's window.
    large_changes(&app, &a, 100).await;

    let conn = unread_stream(&app, &a).await;
    let client = conn.local_addr().unwrap();
    assert!(server_holds_connection_from(&app, client));

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server_holds_connection_from(&app, client) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection that takes nothing is held for ever"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The change listener's connection dies without a reset (an idle NAT
/// drop, a failover): no notice ever arrives on it again. Its heartbeat
/// notices, it connects again and wakes every stream, so an open stream
/// still gets the next change instead of waiting for ever.
#[tokio::test]
async fn a_stream_gets_changes_after_the_listener_connection_went_silent() {
    let app = spawn_app_behind_proxy(&[("DATABASE_ACQUIRE_TIMEOUT_MS", "300")]).await;
    let a = user();
    app.create(&a, NewTask::titled("one")).await;
    app.project().await;
    let mut stream = reader(open(&app, &a, "?after=0", None).await);
    assert_eq!(next(&mut stream).await.data["data"]["title"], "one");

    // Every connection open now hears nothing more; new ones work. Pooled
    // connections idle this long are checked before use (and dropped), so
    // the stream's next read does not hang on one of them.
    app.proxy.as_ref().unwrap().silence_open();
    tokio::time::sleep(Duration::from_secs(6)).await;
    app.create(&a, NewTask::titled("two")).await;
    app.project_unheard().await;
    // Heartbeat comments keep the stream busy, so a bound of its own
    // (liveness only: the listener is back within seconds).
    let two = tokio::time::timeout(Duration::from_secs(30), next(&mut stream))
        .await
        .expect("the change after the silence arrives");
    assert_eq!(two.data["data"]["title"], "two");
}
