#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `tasklog-bench drill check` against a real log: it passes when only the
//! newest acknowledged writes are missing, and fails when WAL order says a
//! missing write must have survived, or a point-in-time restore holds a
//! write from after its moment.

use std::process::Output;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tasklog_events::store::open;
use tasklog_events::{EventStore, ExpectedVersion, NewEvent};
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(1_700_000_000_000 + ms)
}

/// Appends a new task's first event; returns its id and log position (commit).
async fn create(store: &dyn EventStore) -> (Uuid, u64) {
    let id = Uuid::new_v4();
    let event = NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TaskCreated".to_owned(),
        schema_version: 1,
        data: json!({"title": "drill check"}),
        metadata: Default::default(),
    };
    let outcome = store
        .append(
            &format!("task-{id}"),
            ExpectedVersion::NoStream,
            vec![event],
        )
        .await
        .expect("append");
    (id, outcome.position.commit)
}

fn write(id: Uuid, position: u64, sent: i64, acked: i64) -> Value {
    json!({"kind": "create", "id": id, "version": 0, "position": position,
           "sent_at": at(sent), "acked_at": at(acked)})
}

fn check(db: &TestDb, ledger: &Value, until: Option<DateTime<Utc>>) -> Output {
    let dir = std::env::temp_dir().join(format!("drill-check-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ledger.json");
    std::fs::write(&path, ledger.to_string()).expect("ledger");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tasklog-bench"));
    command
        .args(["drill", "check", "--ledger"])
        .arg(&path)
        .args(["--database-url", db.url()]);
    if let Some(t) = until {
        command.args(["--until", &t.to_rfc3339()]);
    }
    let output = command.output().expect("run tasklog-bench");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn losing_only_the_newest_writes_passes_and_losing_an_older_one_fails() {
    // given a log holding two tasks' creates
    let db = TestDb::new().await.expect("test database");
    let store = open(None, db.pool().clone()).await.expect("log");
    let (a, pa) = create(store.as_ref()).await;
    let (b, pb) = create(store.as_ref()).await;
    let never_written = Uuid::new_v4();

    // when a third acknowledged write, later than both, is missing
    let tail_lost = json!({"writes": [write(a, pa, 0, 5), write(b, pb, 10, 15),
                                      write(never_written, pb + 1, 20, 25)],
                           "quiet": null, "killed_at": at(30), "unacknowledged_before_kill": 0});
    let passed = check(&db, &tail_lost, None);
    // then the check passes and counts it as lost
    assert!(passed.status.success(), "{}", stdout(&passed));
    assert!(
        stdout(&passed).contains("acknowledged=3 restored=2 lost=1 lost_inside_window=0"),
        "{}",
        stdout(&passed)
    );

    // when the missing write was acknowledged before a surviving one was sent
    let hole = json!({"writes": [write(a, pa, 0, 5), write(never_written, pb + 1, 6, 8),
                                 write(b, pb, 10, 15)],
                      "quiet": null, "killed_at": at(30), "unacknowledged_before_kill": 0});
    let failed = check(&db, &hole, None);
    // then it fails and names it
    assert!(!failed.status.success(), "{}", stdout(&failed));
    assert!(stdout(&failed).contains("LOST inside the archived window"));
    assert!(stdout(&failed).contains(&never_written.to_string()));
}

#[tokio::test]
async fn a_point_in_time_check_fails_on_a_write_sent_after_the_moment() {
    // given a log holding two creates, the second sent after the moment
    let db = TestDb::new().await.expect("test database");
    let store = open(None, db.pool().clone()).await.expect("log");
    let (a, pa) = create(store.as_ref()).await;
    let (b, pb) = create(store.as_ref()).await;
    let ledger = json!({"writes": [write(a, pa, 0, 5), write(b, pb, 100, 105)],
                        "quiet": null, "killed_at": null, "unacknowledged_before_kill": 0});
    // when checked as a restore to a moment between them
    let output = check(&db, &ledger, Some(at(50)));
    // then the later write is reported
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("unexpected=1"),
        "{}",
        stdout(&output)
    );
}
