//! Requests read through the read pool (`tasklog_platform::read_pool`): a
//! connection whose backend is killed under the service is closed after the
//! one read it fails, never handed out again.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{NewTask, problem, spawn_app, user};

#[tokio::test]
async fn connections_killed_under_the_service_cost_a_503_each_at_most_then_reads_recover() {
    let app = spawn_app().await;
    let alice = user();
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    for path in ["/v1/tasks?page=1", "/v1/stats", "/v1/trash", "/v1/changes"] {
        let response = app.get(&alice, path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    let killed: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = $1 AND application_name = 'tasklog-query' AND pid <> pg_backend_pid()",
    )
    .bind(app.db.name())
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert!(!killed.is_empty());
    sqlx::query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid")
        .bind(&killed)
        .execute(app.db.pool())
        .await
        .unwrap();
    for _ in 0..200 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                .bind(&killed)
                .fetch_one(app.db.pool())
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Each dead connection fails at most one read (a request's or the
    // listeners' catch-up): uncached reads, one after another.
    let mut statuses = Vec::new();
    for page in 1..=(killed.len() + 5) {
        let response = app
            .get(&alice, &format!("/v1/tasks?page={page}&limit=1"))
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status != StatusCode::OK {
            problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        }
        statuses.push(status);
    }
    let failed = statuses.iter().filter(|s| **s != StatusCode::OK).count();
    assert!(failed <= killed.len(), "{statuses:?}");
    assert!(
        statuses.iter().rev().take(5).all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}
