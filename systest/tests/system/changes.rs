//! The change stream with the real binaries: through the nginx gateway a
//! client reconnecting with `Last-Event-ID` at random moments during a write
//! load receives exactly its changes, in order, no gap and no repeat, never
//! another user's; and a query instance told to stop (SIGTERM) ends its
//! streams at once, the client resuming on another instance exactly where
//! it was.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::json;
use tasklog_platform::testing::sse::{SseEvent, SseReader};
use tasklog_systest::{Api, Session};

use crate::gateway::Nginx;
use crate::start;

async fn open(base: &str, me: &Session, last_id: Option<&str>) -> SseReader {
    let mut request = reqwest::Client::new()
        .get(format!("{base}/v1/changes/stream?after=0"))
        .bearer_auth(&me.access_token);
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response)
}

/// Every change of the feed, walked by `next_after`, once it has reached `min`.
async fn feed(api: &Api, me: &Session, min: u64) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = api
            .get_at(&format!("/v1/changes?after={after}&limit=500"), me, min)
            .await
            .unwrap();
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let changes = page.body["changes"].as_array().unwrap().clone();
        if changes.is_empty() {
            return out;
        }
        out.extend(changes.iter().map(|c| {
            (
                c["task_id"].as_str().unwrap().to_owned(),
                c["version"].as_u64().unwrap(),
            )
        }));
        after = page.body["next_after"].as_u64().unwrap();
    }
}

/// Writes for both users: creations, and patches of two changes each.
/// Returns the position of the last write.
async fn write_load(api: Api, me: Session, other: Session, rounds: usize) -> u64 {
    let mut last = 0;
    for i in 0..rounds {
        let mine = api
            .post("/v1/tasks", &me, json!({"title": format!("mine {i}")}))
            .await
            .unwrap();
        assert_eq!(mine.status, StatusCode::CREATED, "{mine:?}");
        let theirs = api
            .post("/v1/tasks", &other, json!({"title": "theirs"}))
            .await
            .unwrap();
        assert_eq!(theirs.status, StatusCode::CREATED);
        // The later of the two: a test writing as one user for both sees
        // both in its feed.
        last = theirs.position().unwrap();
        if i % 3 == 0 {
            let id = mine.body["id"].as_str().unwrap();
            let patched = api
                .patch(
                    &format!("/v1/tasks/{id}"),
                    &me,
                    json!({"title": "renamed", "status": "done"}),
                )
                .await
                .unwrap();
            assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
            last = patched.position().unwrap();
        }
    }
    last
}

/// A small pseudo-random sequence: the moments of reconnection.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        1 + (self.0 >> 33) % sides
    }
}

#[tokio::test]
async fn through_the_gateway_random_reconnects_lose_and_repeat_nothing() {
    let system = start().await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    let api = Api::new(nginx.url(), nginx.url());
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(7, |d| d.as_secs());
    println!("reconnection seed {seed}");
    let mut dice = Dice(seed);

    // 30 creations and 10 patches of two changes each: 50 changes of mine.
    const MINE: usize = 50;
    let writer = tokio::spawn(write_load(api.clone(), me.clone(), other.clone(), 30));
    let mut seen: Vec<SseEvent> = Vec::new();
    while seen.len() < MINE {
        let last_id = seen.last().map(|e| e.id.clone());
        let mut stream = open(&nginx.url(), &me, last_id.as_deref()).await;
        for _ in 0..dice.roll(6) {
            let event = stream.next().await.unwrap().expect("the stream stays open");
            seen.push(event);
            if seen.len() == MINE {
                break;
            }
        }
        // Dropping the reader closes the connection, mid-stream.
    }
    let last = writer.await.unwrap();
    let all = feed(&api, &me, last).await;
    assert_eq!(all.len(), MINE);
    let keys: Vec<(String, u64)> = seen.iter().map(SseEvent::key).collect();
    assert_eq!(keys, all, "exactly the feed, in order, no gap, no repeat");
    assert!(seen.iter().all(|e| e.event.starts_with("Task")));
}

#[tokio::test]
async fn sigterm_ends_streams_and_another_instance_resumes_them_exactly() {
    let mut system = start().await;
    let second = system.another_query("query-2").await.unwrap();
    let api = system.api();
    let me = api.register().await.unwrap();
    let last = write_load(api.clone(), me.clone(), me.clone(), 6).await;
    let all = feed(&api, &me, last).await;

    let mut stream = open(&system.query.url(""), &me, None).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(stream.next().await.unwrap().unwrap());
    }
    // Drains at most 20 s by default; a stream left open would hold it there.
    assert!(
        system
            .query
            .terminate(Duration::from_secs(15))
            .await
            .unwrap(),
        "the query service exits cleanly with a stream open"
    );
    // What was sent before the stop is still read; then the stream ends.
    loop {
        match stream.next().await {
            Ok(Some(event)) => seen.push(event),
            Ok(None) => break,
            Err(e) => panic!("the stream ended with an error: {e:?}"),
        }
    }

    let from = seen.last().map(|e| e.id.clone());
    let mut resumed = open(&second.url(""), &me, from.as_deref()).await;
    while seen.len() < all.len() {
        seen.push(resumed.next().await.unwrap().unwrap());
    }
    let keys: Vec<(String, u64)> = seen.iter().map(SseEvent::key).collect();
    assert_eq!(keys, all);
}
