//! Webhooks with the real binaries and a receiver started by the test: every
//! change arrives, signed, in log order, exactly as the feed shows it; a
//! receiver answering 500 and then gone for a while still gets everything in
//! order under stable delivery ids; a killed delivery worker resumes from its
//! checkpoint, and a rebuild of the read model sends nothing again; retries
//! that run out pause the subscription until a replay; a webhook with a
//! backlog does not hold up another's delivery; a loopback URL is refused
//! unless private addresses are allowed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use tasklog_command::webhooks::signature::verify;
use tasklog_systest::{Api, Reply, Session};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gateway::Nginx;
use crate::{start, start_with};

/// Quick retries, so a test waits seconds, not hours.
const QUICK: &[(&str, &str)] = &[
    ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ("WEBHOOK_POLL_MS", "100"),
    ("WEBHOOK_BACKOFF_BASE_MS", "100"),
    ("WEBHOOK_BACKOFF_MAX_MS", "400"),
];

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    delivery_id: String,
    signature: String,
    raw: Bytes,
    body: Value,
    at_unix: i64,
    answered: u16,
}

#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<Received>>,
    /// The status to answer with.
    answer: AtomicU16,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
}

async fn hook(
    State(inbox): State<Arc<Inbox>>,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    let delay = inbox.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let answered = inbox.answer.load(Ordering::SeqCst);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    inbox.got.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        delivery_id: header("tasklog-delivery"),
        signature: header("tasklog-signature"),
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
        at_unix: chrono::Utc::now().timestamp(),
        answered,
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::OK)
}

/// A webhook receiver on a fixed port that can go away and come back.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    server: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Receiver {
    async fn start() -> Receiver {
        let inbox = Arc::new(Inbox::default());
        inbox.answer.store(200, Ordering::SeqCst);
        let mut receiver = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            inbox,
            server: None,
        };
        receiver.up();
        receiver
    }

    /// Listens again on the same port.
    fn up(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(1024).unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/{*path}", post(hook))
            .with_state(self.inbox.clone());
        let stop = CancellationToken::new();
        let signal = stop.clone();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { signal.cancelled().await })
                .await;
        });
        self.server = Some((stop, handle));
    }

    /// Stops listening and closes every connection: deliveries fail to connect.
    async fn down(&mut self) {
        if let Some((stop, handle)) = self.server.take() {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, status: u16) {
        self.inbox.answer.store(status, Ordering::SeqCst);
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Accepted deliveries to `path`, the first acceptance of each id, in
    /// arrival order.
    fn accepted(&self, path: &str) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.got()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .filter(|r| seen.insert(r.delivery_id.clone()))
            .collect()
    }
}

/// Waits (up to a minute) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn subscribe(api: &Api, me: &Session, body: Value) -> Reply {
    api.command(Method::POST, "/v1/webhooks", me, Some(body))
        .await
        .unwrap()
}

/// Creations and patches of `me`, and of `other` in between (never sent to
/// `me`'s webhook); returns the last position of `me`'s.
async fn write(api: &Api, me: &Session, other: &Session, rounds: usize) -> u64 {
    let mut last = 0;
    for i in 0..rounds {
        let mine = api
            .post("/v1/tasks", me, json!({"title": format!("task {i}")}))
            .await
            .unwrap();
        assert_eq!(mine.status, StatusCode::CREATED, "{mine:?}");
        last = mine.position().unwrap();
        let theirs = api
            .post("/v1/tasks", other, json!({"title": "not yours"}))
            .await
            .unwrap();
        assert_eq!(theirs.status, StatusCode::CREATED);
        if i % 2 == 0 {
            let id = mine.body["id"].as_str().unwrap();
            let patched = api
                .patch(&format!("/v1/tasks/{id}"), me, json!({"status": "done"}))
                .await
                .unwrap();
            assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
            last = patched.position().unwrap();
        }
    }
    last
}

/// `me`'s changes after `after` as the feed shows them, once it reached `min`.
async fn feed(api: &Api, me: &Session, after: u64, min: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = after;
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
        out.extend(changes);
        after = page.body["next_after"].as_u64().unwrap();
    }
}

fn changes_of(received: &[Received]) -> Vec<Value> {
    received.iter().map(|r| r.body["change"].clone()).collect()
}

fn assert_signed(received: &[Received], secret: &str) {
    for r in received {
        assert_eq!(
            verify(&r.signature, secret, &r.raw, r.at_unix, 300),
            Ok(()),
            "a bad signature on {r:?}"
        );
        assert_eq!(r.body["delivery_id"].as_str(), Some(r.delivery_id.as_str()));
    }
}

#[tokio::test]
async fn a_receiver_gets_every_change_signed_in_order_as_the_feed_shows_it() {
    let system = start_with(QUICK).await;
    let nginx = Nginx::start(&system);
    nginx.wait_ready().await;
    // Subscriptions through the gateway: GETs of /v1/webhooks are the command service's.
    let api = Api::new(nginx.url(), nginx.url());
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let receiver = Receiver::start().await;

    let all = subscribe(
        &api,
        &me,
        json!({"url": receiver.url("/all"), "description": "everything"}),
    )
    .await;
    assert_eq!(all.status, StatusCode::CREATED, "{all:?}");
    let secret = all.body["secret"].as_str().unwrap().to_owned();
    let id = all.body["id"].as_str().unwrap().to_owned();
    let start = all.body["position"].as_u64().unwrap();
    assert_eq!(all.body["status"], "active");
    let done_only = subscribe(
        &api,
        &me,
        json!({"url": receiver.url("/status"), "types": ["TaskStatusChanged"]}),
    )
    .await;
    assert_eq!(done_only.status, StatusCode::CREATED, "{done_only:?}");
    let done_secret = done_only.body["secret"].as_str().unwrap().to_owned();

    let last = write(&api, &me, &other, 12).await;
    let expected = feed(&api, &me, start, last).await;
    assert_eq!(expected.len(), 12 + 6);
    eventually("every change at /all", || {
        receiver.accepted("/all").len() >= expected.len()
    })
    .await;
    eventually("every status change at /status", || {
        receiver.accepted("/status").len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = receiver.accepted("/all");
    assert_signed(&got, &secret);
    assert_eq!(
        changes_of(&got),
        expected,
        "exactly the feed's changes, in order"
    );
    assert!(got.iter().all(|r| r.body["webhook_id"] == id.as_str()));
    let statuses = receiver.accepted("/status");
    assert_signed(&statuses, &done_secret);
    let want: Vec<Value> = expected
        .iter()
        .filter(|c| c["type"] == "TaskStatusChanged")
        .cloned()
        .collect();
    assert_eq!(changes_of(&statuses), want);
    // Nothing twice, and nothing of the other user's.
    assert_eq!(
        receiver.got().iter().filter(|r| r.path == "/all").count(),
        expected.len()
    );

    // The subscription, its list and its delivery log; the secret is not shown again.
    let shown = api.get(&format!("/v1/webhooks/{id}"), &me).await.unwrap();
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert!(shown.body.get("secret").is_none());
    assert_eq!(
        shown.body["position"].as_u64(),
        expected.last().and_then(|c| c["position"].as_u64())
    );
    let listed = api.get("/v1/webhooks", &me).await.unwrap();
    assert_eq!(
        listed.body["webhooks"].as_array().unwrap().len(),
        2,
        "{listed:?}"
    );
    let page = api
        .get(&format!("/v1/webhooks/{id}/deliveries?limit=5"), &me)
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let attempts = page.body["deliveries"].as_array().unwrap();
    assert_eq!(attempts.len(), 5);
    assert_eq!(
        attempts[0]["delivery_id"].as_str(),
        got.last().map(|r| r.delivery_id.as_str())
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["status_code"] == 200 && a["error"].is_null())
    );
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let older = api
        .get(
            &format!("/v1/webhooks/{id}/deliveries?limit=200&cursor={cursor}"),
            &me,
        )
        .await
        .unwrap();
    let older = older.body["deliveries"].as_array().unwrap().clone();
    assert_eq!(older.len(), expected.len() - 5);
    let ids: HashSet<&str> = attempts
        .iter()
        .chain(&older)
        .filter_map(|a| a["delivery_id"].as_str())
        .collect();
    assert_eq!(ids.len(), expected.len(), "pages without gaps or repeats");
    let oldest = older.last().unwrap();
    assert_eq!(
        oldest["delivery_id"].as_str(),
        got.first().map(|r| r.delivery_id.as_str())
    );

    // Another user's subscription does not exist for them.
    for path in [
        format!("/v1/webhooks/{id}"),
        format!("/v1/webhooks/{id}/deliveries"),
    ] {
        let theirs = api.get(&path, &other).await.unwrap();
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{path}: {theirs:?}");
    }
    let replayed = api
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &other,
            json!({"after": 0}),
        )
        .await
        .unwrap();
    assert_eq!(replayed.status, StatusCode::NOT_FOUND);
    let deleted = api
        .delete(&format!("/v1/webhooks/{id}"), &other)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::NOT_FOUND);

    // Bad input: a clear problem, nothing changed.
    for (body, field) in [
        (
            json!({"url": receiver.url("/x"), "types": ["TaskExploded"]}),
            "types[0]",
        ),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "ftp://example.com/"}), "url"),
        (
            json!({"url": receiver.url("/x"), "secret": "mine"}),
            "secret",
        ),
    ] {
        let refused = subscribe(&api, &me, body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {refused:?}"
        );
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        assert!(
            refused.body.to_string().contains(field),
            "{body}: {refused:?}"
        );
    }
    let bad_after = api
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            &me,
            json!({"after": "yesterday"}),
        )
        .await
        .unwrap();
    assert_eq!(
        bad_after.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{bad_after:?}"
    );
    let bad_cursor = api
        .get(&format!("/v1/webhooks/{id}/deliveries?cursor=soon"), &me)
        .await
        .unwrap();
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST, "{bad_cursor:?}");
    let listed = api.get("/v1/webhooks", &me).await.unwrap();
    assert_eq!(listed.body["webhooks"].as_array().unwrap().len(), 2);

    // Deleted: nothing more is sent.
    let deleted = api
        .delete(&format!("/v1/webhooks/{id}"), &me)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted:?}");
    let before = receiver.got().len();
    let last = write(&api, &me, &other, 2).await;
    eventually("the status webhook still working", || {
        receiver.accepted("/status").len() >= 7
    })
    .await;
    let _ = last;
    assert!(receiver.got()[before..].iter().all(|r| r.path == "/status"));
}

/// Whether `secret` verifies the delivery.
fn signed_with(r: &Received, secret: &str) -> bool {
    verify(&r.signature, secret, &r.raw, r.at_unix, 300).is_ok()
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_until_it_expires() {
    let system = start_with(QUICK).await;
    let api = Api::new(system.command.url(""), system.query.url(""));
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let receiver = Receiver::start().await;
    let created = subscribe(&api, &me, json!({"url": receiver.url("/r")})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let first = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    let rotate_path = format!("/v1/webhooks/{id}/rotate-secret");
    let rotate = |who: &Session, body: Value| {
        let (api, path, who) = (&api, rotate_path.clone(), who.clone());
        async move {
            api.command(Method::POST, &path, &who, Some(body))
                .await
                .unwrap()
        }
    };
    let one_change = |n: usize| {
        let (api, me) = (&api, me.clone());
        async move {
            let made = api
                .post("/v1/tasks", &me, json!({"title": format!("change {n}")}))
                .await
                .unwrap();
            assert_eq!(made.status, StatusCode::CREATED, "{made:?}");
        }
    };
    let inbox = &receiver;
    let delivered = |n: usize| {
        eventually("the change's delivery", move || {
            inbox.accepted("/r").len() >= n
        })
    };

    one_change(1).await;
    delivered(1).await;
    assert!(signed_with(&receiver.accepted("/r")[0], &first));

    // Refused, changing nothing: another user's webhook, a window over 7
    // days, an unknown field.
    assert_eq!(
        rotate(&other, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    let too_long = rotate(&me, json!({"keep_previous_secs": 604_801})).await;
    assert_eq!(
        too_long.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{too_long:?}"
    );
    assert!(
        too_long.body.to_string().contains("keep_previous_secs"),
        "{too_long:?}"
    );
    let unknown = rotate(&me, json!({"secret": "mine"})).await;
    assert!(unknown.status.is_client_error(), "{unknown:?}");

    // Rotated with the default window: the new secret once, the window shown.
    let rotated = rotate(&me, json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
    let second = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let until = rotated.body["previous_secret_expires_at"].as_str().unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
    let in_a_day = chrono::Utc::now() + chrono::Duration::hours(24);
    assert!(
        (in_a_day - until.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 60,
        "{until}"
    );
    let shown = api
        .command(Method::GET, &format!("/v1/webhooks/{id}"), &me, None)
        .await
        .unwrap();
    assert!(shown.body.get("secret").is_none(), "{shown:?}");
    assert_eq!(
        shown.body["previous_secret_expires_at"],
        rotated.body["previous_secret_expires_at"]
    );

    // While the window is open a delivery verifies with either secret.
    one_change(2).await;
    delivered(2).await;
    let during = receiver.accepted("/r")[1].clone();
    assert!(
        signed_with(&during, &second) && signed_with(&during, &first),
        "{during:?}"
    );

    // Rotated again with no window: only the newest secret signs.
    let now_only = rotate(&me, json!({"keep_previous_secs": 0})).await;
    assert_eq!(now_only.status, StatusCode::OK, "{now_only:?}");
    assert!(now_only.body["previous_secret_expires_at"].is_null());
    let third = now_only.body["secret"].as_str().unwrap().to_owned();
    one_change(3).await;
    delivered(3).await;
    let after = receiver.accepted("/r")[2].clone();
    assert!(signed_with(&after, &third), "{after:?}");
    assert!(!signed_with(&after, &second) && !signed_with(&after, &first));
}

#[tokio::test]
async fn a_failing_then_absent_receiver_still_gets_everything_in_order_with_stable_ids() {
    let system = start_with(QUICK).await;
    let api = system.api();
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let mut receiver = Receiver::start().await;
    let created = subscribe(&api, &me, json!({"url": receiver.url("/hook")})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    let start = created.body["position"].as_u64().unwrap();

    // Answering 500 while changes are made: retried, none skipped.
    receiver.answer(500);
    write(&api, &me, &other, 4).await;
    eventually("a few failed attempts", || receiver.got().len() >= 3).await;
    // Then gone: connections refused while more changes are made.
    receiver.down().await;
    let failed_before = receiver.got().len();
    write(&api, &me, &other, 4).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let shown = api
        .command(Method::GET, &format!("/v1/webhooks/{id}"), &me, None)
        .await
        .unwrap();
    assert_eq!(shown.body["status"], "active", "still retrying: {shown:?}");
    assert!(shown.body["last_error"].is_string(), "{shown:?}");
    // Back, and well.
    receiver.answer(200);
    receiver.up();
    let last = write(&api, &me, &other, 4).await;
    let expected = feed(&api, &me, start, last).await;
    assert_eq!(expected.len(), 18);
    eventually("everything, once back", || {
        receiver.accepted("/hook").len() >= expected.len()
    })
    .await;

    let got = receiver.accepted("/hook");
    assert_signed(&receiver.got(), &secret);
    assert_eq!(
        changes_of(&got),
        expected,
        "every change, in order, none skipped"
    );
    // Stable ids: every failed attempt's id was later accepted for the same change.
    let accepted: HashMap<String, Value> = got
        .iter()
        .map(|r| (r.delivery_id.clone(), r.body["change"].clone()))
        .collect();
    let failed: Vec<Received> = receiver.got()[..failed_before].to_vec();
    assert!(failed.iter().all(|r| r.answered == 500));
    for r in &failed {
        assert_eq!(
            accepted.get(&r.delivery_id),
            Some(&r.body["change"]),
            "{r:?}"
        );
    }
    // The retries were of the first change only: order holds while failing.
    assert!(failed.iter().all(|r| r.body["change"] == expected[0]));

    // The log tells the story: 500s, refused connections, then 200s.
    let log = api
        .command(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?limit=200"),
            &me,
            None,
        )
        .await
        .unwrap();
    let attempts = log.body["deliveries"].as_array().unwrap();
    assert!(attempts.iter().any(|a| a["status_code"] == 500));
    assert!(
        attempts
            .iter()
            .any(|a| a["status_code"].is_null() && a["error"].is_string())
    );
    let first = attempts.last().unwrap();
    assert_eq!(first["attempt"], 1);
    assert!(attempts.iter().any(|a| a["attempt"].as_i64() > Some(2)));
}

#[tokio::test]
async fn a_killed_delivery_worker_resumes_from_its_checkpoint() {
    let mut system = start_with(QUICK).await;
    let api = system.api();
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let receiver = Receiver::start().await;
    // Slow answers, so the kill lands mid-stream.
    receiver.inbox.delay_ms.store(40, Ordering::SeqCst);
    let created = subscribe(&api, &me, json!({"url": receiver.url("/hook")})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let start = created.body["position"].as_u64().unwrap();

    write(&api, &me, &other, 20).await;
    eventually("some deliveries", || receiver.accepted("/hook").len() >= 5).await;
    system.projector.kill();
    let at_kill = receiver.got().len();
    assert!(
        at_kill < 30,
        "the worker was killed before it finished ({at_kill})"
    );
    let last = write(&api, &me, &other, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.got().len() <= at_kill + 1,
        "nothing is sent while the worker is down"
    );
    system.projector.spawn().unwrap();
    system.projector.wait_ready().await.unwrap();

    let expected = feed(&api, &me, start, last).await;
    assert_eq!(expected.len(), 36);
    eventually("everything after the restart", || {
        receiver.accepted("/hook").len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.accepted("/hook");
    assert_signed(&receiver.got(), &secret);
    assert_eq!(changes_of(&got), expected, "in order, nothing lost");
    // From its checkpoint, not from the start: at most the delivery in flight
    // at the kill arrives twice, under the same id.
    let all = receiver.got();
    assert!(
        all.len() <= expected.len() + 1,
        "{} requests for {} changes",
        all.len(),
        expected.len()
    );

    // A rebuild of the read model sends nothing again.
    let (rebuilt, output) = system.projector_cli(&["rebuild"]).await.unwrap();
    assert!(rebuilt, "{output}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        receiver.got().len(),
        all.len(),
        "a rebuild re-sent deliveries"
    );
}

#[tokio::test]
async fn retries_that_run_out_pause_the_webhook_until_a_replay_resumes_it() {
    let mut env = QUICK.to_vec();
    // 1.8 s of retrying.
    env.push(("WEBHOOK_RETRY_HOURS", "0.0005"));
    let system = start_with(&env).await;
    let api = system.api();
    let me = api.register().await.unwrap();
    let other = api.register().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let created = subscribe(&api, &me, json!({"url": receiver.url("/hook")})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let start = created.body["position"].as_u64().unwrap();
    let last = write(&api, &me, &other, 3).await;

    let path = format!("/v1/webhooks/{id}");
    let mut shown = Value::Null;
    let deadline = Instant::now() + Duration::from_secs(30);
    while shown["status"] != "failing" {
        assert!(Instant::now() < deadline, "never marked failing: {shown}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        shown = api
            .command(Method::GET, &path, &me, None)
            .await
            .unwrap()
            .body;
    }
    assert!(
        shown["failed_at"].is_string() && shown["last_error"].is_string(),
        "{shown}"
    );
    assert_eq!(
        shown["position"].as_u64(),
        Some(start),
        "nothing was delivered"
    );
    // Paused: no more attempts.
    receiver.answer(200);
    let paused_at = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        receiver.got().len(),
        paused_at,
        "a failing webhook is not retried"
    );

    let resumed = api
        .command(
            Method::POST,
            &format!("{path}/replay"),
            &me,
            Some(json!({"after": start})),
        )
        .await
        .unwrap();
    assert_eq!(resumed.status, StatusCode::OK, "{resumed:?}");
    assert_eq!(resumed.body["status"], "active");
    let expected = feed(&api, &me, start, last).await;
    eventually("everything after the replay", || {
        receiver.accepted("/hook").len() >= expected.len()
    })
    .await;
    let got = receiver.accepted("/hook");
    assert_eq!(changes_of(&got), expected);
    // A replay is a new delivery: new ids, so receivers do not drop it as a repeat.
    let failed_ids: HashSet<String> = receiver.got()[..paused_at]
        .iter()
        .map(|r| r.delivery_id.clone())
        .collect();
    assert!(got.iter().all(|r| !failed_ids.contains(&r.delivery_id)));
}

#[tokio::test]
async fn loopback_and_metadata_urls_are_refused_when_private_addresses_are_not_allowed() {
    let system = start().await;
    let api = system.api();
    let me = api.register().await.unwrap();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let refused = subscribe(&api, &me, json!({"url": url})).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {refused:?}"
        );
        assert_eq!(
            refused.header("content-type"),
            Some("application/problem+json")
        );
        assert_eq!(
            refused.body["errors"][0]["field"], "url",
            "{url}: {refused:?}"
        );
    }
    let listed = api
        .command(Method::GET, "/v1/webhooks", &me, None)
        .await
        .unwrap();
    assert_eq!(listed.body["webhooks"], json!([]));
}

#[tokio::test]
async fn a_webhook_with_a_backlog_does_not_hold_up_the_others() {
    let mut env = QUICK.to_vec();
    // One worker: webhooks take turns.
    env.push(("WEBHOOK_WORKERS", "1"));
    let system = start_with(&env).await;
    let api = system.api();
    let busy = api.register().await.unwrap();
    let quiet = api.register().await.unwrap();
    let receiver = Receiver::start().await;
    // Slow enough that the backlog takes seconds.
    receiver.inbox.delay_ms.store(10, Ordering::SeqCst);
    let first = subscribe(&api, &busy, json!({"url": receiver.url("/busy")})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let second = subscribe(&api, &quiet, json!({"url": receiver.url("/quiet")})).await;
    assert_eq!(second.status, StatusCode::CREATED, "{second:?}");

    // 300 changes for the first webhook, then one for the second.
    for _ in 0..3 {
        let commands: Vec<Value> = (0..100)
            .map(|_| json!({"op": "create", "body": {"title": "backlog"}}))
            .collect();
        let batch = api
            .post("/v1/tasks/batch", &busy, json!({"commands": commands}))
            .await
            .unwrap();
        assert!(batch.status.is_success(), "{batch:?}");
    }
    let one = api
        .post("/v1/tasks", &quiet, json!({"title": "just one"}))
        .await
        .unwrap();
    assert_eq!(one.status, StatusCode::CREATED);

    eventually("the quiet webhook's change", || {
        !receiver.accepted("/quiet").is_empty()
    })
    .await;
    let backlog_done = receiver.accepted("/busy").len();
    assert!(
        backlog_done < 250,
        "the quiet webhook waited for the backlog ({backlog_done} of 300 sent first)"
    );
    eventually("the whole backlog", || {
        receiver.accepted("/busy").len() >= 300
    })
    .await;
}
