//! The query service on a real streaming replica: the tests' own primary
//! (`TEST_REPLICA_PRIMARY_URL`) and its hot standby (`TEST_REPLICA_URL`),
//! which `deploy/local/test` makes with `initdb` and `pg_basebackup -R`.
//! One test, in steps, because replay is paused on the shared standby:
//! read-your-writes through the replica under a write load, replay paused,
//! the replica cut off under read load and back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tasklog_platform::testing::{TcpProxy, TestDb};
use tasklog_systest::{Api, Service, Session, System, host_port, with_host_port};

use crate::binaries;

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if value.is_none() {
        eprintln!("{name} is not set: skipping (deploy/local/test sets it)");
    }
    value
}

/// Resumes replay on the standby however the test ends.
struct ReplayGuard(String);

impl Drop for ReplayGuard {
    fn drop(&mut self) {
        let url = self.0.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(mut c) = PgConnection::connect(&url).await {
                        let _ = sqlx::query("SELECT pg_wal_replay_resume()")
                            .execute(&mut c)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

async fn replica_state(query: &Service) -> Value {
    let body: Value = reqwest::get(query.url("/health/ready"))
        .await
        .expect("ready answers")
        .json()
        .await
        .expect("json");
    body["replicas"].clone()
}

async fn in_rotation(query: &Service) -> bool {
    replica_state(query)
        .await
        .as_object()
        .and_then(|m| m.values().next().cloned())
        .is_some_and(|r| r["in_rotation"] == json!(true))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 30 s: {what}");
}

async fn create(api: &Api, who: &Session, title: &str) -> (String, u64) {
    let reply = api
        .post("/v1/tasks", who, json!({"title": title}))
        .await
        .expect("create");
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let id = reply.body["id"].as_str().expect("an id").to_owned();
    (id, reply.position().expect("a position"))
}

#[tokio::test]
async fn reads_through_a_streaming_replica_keep_every_rule() {
    let (Some(primary), Some(standby)) = (env("TEST_REPLICA_PRIMARY_URL"), env("TEST_REPLICA_URL"))
    else {
        return;
    };
    let db = TestDb::on(&primary)
        .await
        .expect("a database on the primary");
    let standby_db = with_host_port(db.url(), &host_port(&standby).unwrap()).unwrap();
    let standby_admin = standby.clone();
    let _resume = ReplayGuard(standby_admin.clone());
    let proxy = TcpProxy::start(host_port(&standby).unwrap(), true)
        .await
        .unwrap();
    let via_proxy = with_host_port(&standby_db, &proxy.addr()).unwrap();
    let system = System::start_on(binaries(), db, &[("MIN_POSITION_TIMEOUT_MS", "3000")])
        .await
        .expect("the system starts");
    let replica_query = system
        .add_query(
            "query-replica",
            &[
                ("READ_REPLICA_URLS", via_proxy.as_str()),
                ("REPLICA_MAX_LAG_MS", "1500"),
                ("DATABASE_ACQUIRE_TIMEOUT_MS", "1000"),
            ],
        )
        .await
        .expect("the replica-backed query service starts");
    eventually("the replica joins the rotation", || {
        in_rotation(&replica_query)
    })
    .await;
    let writes = system.api();
    let reads = Api::new(system.command.url(""), replica_query.url(""));

    // 1. Read-your-writes through the replica, with another user writing.
    let alice = writes.register().await.unwrap();
    let bob = writes.register().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (api, stop) = (system.api(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let _ = api.post("/v1/tasks", &bob, json!({"title": "load"})).await;
                n += 1;
            }
            n
        })
    };
    let mut misses = Vec::new();
    for i in 0..1000 {
        let (id, position) = create(&writes, &alice, &format!("t{i}")).await;
        let reply = reads
            .get_at(&format!("/v1/tasks/{id}"), &alice, position)
            .await
            .unwrap();
        if reply.status != StatusCode::OK {
            misses.push((i, reply.status));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let background = load.await.unwrap();
    assert!(misses.is_empty(), "missed reads: {misses:?}");
    assert!(background > 0, "the write load ran");
    assert!(
        in_rotation(&replica_query).await,
        "served with the replica in the rotation"
    );

    // 2. Replay paused: a read beyond it waits or goes elsewhere and never
    //    shows older data; a read without a position is served.
    let mut admin = PgConnection::connect(&standby_admin).await.unwrap();
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut admin)
        .await
        .unwrap();
    let (id, position) = create(&writes, &alice, "after the pause").await;
    let reply = reads
        .get_at(&format!("/v1/tasks/{id}"), &alice, position)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["title"], "after the pause");
    let reported: u64 = reply
        .header("x-projection-position")
        .and_then(|p| p.parse().ok())
        .expect("a projection position");
    assert!(reported >= position, "{reported} < {position}");
    let stale_ok = reads.get("/v1/tasks?limit=5", &alice).await.unwrap();
    assert_eq!(stale_ok.status, StatusCode::OK);
    eventually("the paused replica leaves the rotation", || async {
        !in_rotation(&replica_query).await
    })
    .await;
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut admin)
        .await
        .unwrap();
    eventually("the replica comes back", || in_rotation(&replica_query)).await;

    // 3. The replica cut off under read load: 200s, or 503 with Retry-After
    //    while it is in the rotation, then 200s only; then it comes back.
    proxy.down();
    let mut left = false;
    let mut after_leaving = Vec::new();
    for _ in 0..400 {
        let reply = reads.get("/v1/tasks?limit=5", &alice).await.unwrap();
        match reply.status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.header("retry-after").is_some(), "{reply:?}");
                if left {
                    after_leaving.push(reply.status);
                }
            }
            other => panic!("{other}: {reply:?}"),
        }
        if !left && !in_rotation(&replica_query).await {
            left = true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(left, "the unreachable replica left the rotation");
    assert!(after_leaving.is_empty(), "{after_leaving:?}");
    proxy.up();
    eventually("the replica is back after the outage", || {
        in_rotation(&replica_query)
    })
    .await;
    let (id, position) = create(&writes, &alice, "after the outage").await;
    let reply = reads
        .get_at(&format!("/v1/tasks/{id}"), &alice, position)
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
}
