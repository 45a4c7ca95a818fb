//! `GET /v1/stats`: from Redis when it is current, from Postgres when Redis is
//! unreachable, behind or empty; `overdue` always from Postgres.

use chrono::{Duration, Utc};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tasklog_events::domain::{Priority, Status, TaskPatch};
use tasklog_readmodel::counts::{CountKeys, partition_of};

use crate::helpers::{NewTask, TestApp, User, spawn_app, spawn_app_with, user};

/// Five live tasks (one deleted), two overdue: the counts every source must give.
async fn seed(app: &TestApp, who: &User) {
    let past = Utc::now() - Duration::days(1);
    let future = Utc::now() + Duration::days(1);
    let specs = [
        (Status::Todo, Priority::Low, Some(past)),
        (Status::InProgress, Priority::High, Some(past)),
        (Status::Done, Priority::High, Some(past)),
        (Status::Todo, Priority::Urgent, Some(future)),
        (Status::Todo, Priority::Medium, None),
        (Status::Todo, Priority::Urgent, Some(past)),
    ];
    let mut last = None;
    for (status, priority, due) in specs {
        let mut t = NewTask::titled("t");
        t.status = status;
        t.priority = priority;
        t.due_at = due;
        last = Some(app.create(who, t).await.0);
    }
    app.delete(who, last.unwrap(), Utc::now()).await;
}

fn expected() -> Value {
    json!({
        "total": 5,
        "by_status": {"todo": 3, "in_progress": 1, "done": 1},
        "by_priority": {"low": 1, "medium": 1, "high": 2, "urgent": 1},
        "overdue": 2,
    })
}

async fn stats(app: &TestApp, who: &User) -> (String, Value) {
    let response = app.get(who, "/v1/stats").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let source = response.headers()["x-stats-source"]
        .to_str()
        .unwrap()
        .to_owned();
    (source, response.json().await.unwrap())
}

#[tokio::test]
async fn stats_come_from_redis_when_it_is_current_with_overdue_from_postgres() {
    let app = spawn_app().await;
    let alice = user();
    seed(&app, &alice).await;
    app.create(&user(), NewTask::titled("someone else's")).await;
    app.project().await;
    assert_eq!(stats(&app, &alice).await, ("redis".to_owned(), expected()));

    // Proof that the counts are Redis's own: change them there.
    let keys = CountKeys::new(app.redis.prefix());
    let current = keys.current(partition_of(alice.id));
    let generation: String = app
        .redis
        .run(|mut c| async move { c.get(current).await })
        .await
        .unwrap();
    let key = keys.owner(&generation, alice.id);
    app.redis
        .run(|mut c| async move { c.hset::<_, _, _, ()>(key, "urgent", 42).await })
        .await
        .unwrap();
    let (source, body) = stats(&app, &alice).await;
    assert_eq!(source, "redis");
    assert_eq!(body["by_priority"]["urgent"], 42);
    assert_eq!(body["overdue"], 2);
}

#[tokio::test]
async fn stats_fall_back_to_postgres_when_redis_is_behind() {
    let app = spawn_app().await;
    let alice = user();
    seed(&app, &alice).await;
    app.project().await;
    let extra = app.create(&alice, NewTask::titled("new")).await.0;
    app.update(
        &alice,
        extra,
        TaskPatch {
            status: Some(Status::Done),
            ..TaskPatch::default()
        },
        Utc::now(),
    )
    .await;
    app.project_postgres_only().await;
    let (source, body) = stats(&app, &alice).await;
    assert_eq!(source, "postgres");
    assert_eq!(body["total"], 6);
    assert_eq!(body["by_status"]["done"], 2);
    assert_eq!(body["by_priority"]["medium"], 2);
    // Redis catches up: it answers again.
    app.project().await;
    assert_eq!(stats(&app, &alice).await.0, "redis");
}

/// Redis ahead of Postgres (a delete counted there, not yet applied to the
/// read model): mixing the two would answer `total: 0` beside `overdue: 2`.
/// The answer comes from one position: Postgres's, whole.
#[tokio::test]
async fn stats_come_from_one_position_when_redis_is_ahead_of_postgres() {
    let app = spawn_app().await;
    let alice = user();
    seed(&app, &alice).await;
    app.project().await;
    assert_eq!(stats(&app, &alice).await.0, "redis");

    // Redis moves on alone: every task of alice's counted as deleted.
    let keys = CountKeys::new(app.redis.prefix());
    let partition = partition_of(alice.id);
    let current = keys.current(partition);
    let generation: String = app
        .redis
        .run(|mut c| async move { c.get(current).await })
        .await
        .unwrap();
    let checkpoint_key = keys.checkpoint(&generation, partition);
    let owner_key = keys.owner(&generation, alice.id);
    app.redis
        .run(|mut c| async move {
            let at: String = c.get(&checkpoint_key).await?;
            let (commit, prepare) = at.split_once('/').unwrap();
            let ahead = format!(
                "{}/{}",
                commit.parse::<u64>().unwrap() + 10,
                prepare.parse::<u64>().unwrap() + 10
            );
            c.set::<_, _, ()>(&checkpoint_key, ahead).await?;
            c.del::<_, ()>(&owner_key).await
        })
        .await
        .unwrap();

    assert_eq!(
        stats(&app, &alice).await,
        ("postgres".to_owned(), expected())
    );
}

#[tokio::test]
async fn stats_fall_back_to_postgres_when_redis_is_unreachable_or_has_no_counts() {
    let app = spawn_app_with(&[
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("REDIS_TIMEOUT_MS", "200"),
    ])
    .await;
    let alice = user();
    seed(&app, &alice).await;
    app.project().await;
    assert_eq!(
        stats(&app, &alice).await,
        ("postgres".to_owned(), expected())
    );
    let response = app
        .client
        .get(format!("{}/health/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "Redis is not needed to serve"
    );

    let app = spawn_app().await;
    seed(&app, &alice).await;
    app.project_postgres_only().await;
    assert_eq!(
        stats(&app, &alice).await,
        ("postgres".to_owned(), expected())
    );
    assert_eq!(stats(&app, &user()).await.1["total"], 0);
}
