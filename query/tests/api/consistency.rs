//! Read-your-writes: `X-Min-Position` waits for the projection (woken by its
//! notification) or gives a 503 with `Retry-After`; every response carries
//! `X-Projection-Position`.

use reqwest::StatusCode;

use crate::helpers::{NewTask, TestApp, field, problem, spawn_app, spawn_app_with, user};

fn position(response: &reqwest::Response) -> u64 {
    response.headers()["x-projection-position"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn with_min(
    app: &TestApp,
    who: &crate::helpers::User,
    path: &str,
    min: u64,
) -> reqwest::Response {
    app.get(who, path)
        .header("x-min-position", min.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_read_right_after_a_write_sees_it_with_x_min_position() {
    let app = spawn_app().await;
    let alice = user();
    let (id, ack) = app.create(&alice, NewTask::titled("fresh")).await;
    app.project().await;
    let min = ack.position.commit;
    for path in [
        format!("/v1/tasks/{id}"),
        "/v1/tasks".to_owned(),
        "/v1/stats".to_owned(),
        // The change feed and the trash wait on the feed's projection.
        "/v1/changes?after=0".to_owned(),
        "/v1/trash".to_owned(),
    ] {
        let response = with_min(&app, &alice, &path, min).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(position(&response) >= min, "{path}");
    }
    let list: serde_json::Value = with_min(&app, &alice, "/v1/tasks", min)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["tasks"][0]["id"], id.to_string());
}

#[tokio::test]
async fn a_waiting_read_is_woken_when_the_projection_gets_there() {
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "60000")]).await;
    let alice = user();
    app.project().await;
    let (id, ack) = app.create(&alice, NewTask::titled("soon")).await;
    let path = format!("/v1/tasks/{id}");
    let request = with_min(&app, &alice, &path, ack.position.commit);
    let project = async {
        // Let the request start waiting first (if it does not, it still passes).
        tokio::task::yield_now().await;
        app.project().await
    };
    let (response, _) = tokio::join!(request, project);
    assert_eq!(response.status(), StatusCode::OK);
    assert!(position(&response) >= ack.position.commit);
    let task: serde_json::Value = response.json().await.unwrap();
    assert_eq!(task["title"], "soon");
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_a_503_with_retry_after() {
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "100")]).await;
    let alice = user();
    app.create(&alice, NewTask::titled("projected")).await;
    let reached = app.project().await.unwrap().commit;
    let (_, unprojected) = app.create(&alice, NewTask::titled("not yet")).await;
    let response = with_min(&app, &alice, "/v1/tasks", unprojected.position.commit).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(position(&response), reached);
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&unprojected.position.commit.to_string())
    );
}

#[tokio::test]
async fn a_position_beyond_the_logs_head_is_a_400_without_waiting() {
    // A wait would outlast the test run: only the refusal can answer.
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "60000")]).await;
    let alice = user();
    let (id, ack) = app.create(&alice, NewTask::titled("written")).await;
    app.project().await;
    let head = ack.position.commit;
    for path in [
        format!("/v1/tasks/{id}"),
        "/v1/tasks".to_owned(),
        "/v1/stats".to_owned(),
        // The change feed and the trash wait on the feed's projection.
        "/v1/changes?after=0".to_owned(),
        "/v1/trash".to_owned(),
    ] {
        for beyond in [head + 1, 9_223_372_036_854_775_808, u64::MAX] {
            let response = with_min(&app, &alice, &path, beyond).await;
            let body = problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(field(&body), "X-Min-Position", "{path} {beyond}");
        }
        // The head itself is a position a write produced.
        assert_eq!(
            with_min(&app, &alice, &path, head).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn a_bad_x_min_position_is_a_400_and_anonymous_callers_never_wait() {
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "60000")]).await;
    let alice = user();
    for bad in ["abc", "-1", "1.5", "18446744073709551616", ""] {
        let response = app
            .get(&alice, "/v1/tasks")
            .header("x-min-position", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(
            field(&problem(response, StatusCode::BAD_REQUEST).await),
            "X-Min-Position",
            "{bad:?}"
        );
    }
    // Without a token: 401 at once, though the position is far away.
    let response = app
        .anonymous("/v1/tasks")
        .header("x-min-position", u64::MAX.to_string())
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn every_response_carries_the_projection_position() {
    let app = spawn_app().await;
    let alice = user();
    let (id, _) = app.create(&alice, NewTask::titled("t")).await;
    let reached = app.project().await.unwrap().commit;
    let response = with_min(&app, &alice, "/v1/tasks", reached).await;
    assert_eq!(position(&response), reached);
    for (path, status) in [
        (format!("/v1/tasks/{id}"), StatusCode::OK),
        (format!("/v1/tasks/{id}/history"), StatusCode::OK),
        ("/v1/stats".to_owned(), StatusCode::OK),
        ("/v1/tasks?limit=0".to_owned(), StatusCode::BAD_REQUEST),
        (
            format!("/v1/tasks/{}", uuid::Uuid::now_v7()),
            StatusCode::NOT_FOUND,
        ),
        ("/v1/unknown".to_owned(), StatusCode::NOT_FOUND),
        ("/health/live".to_owned(), StatusCode::OK),
        ("/openapi.json".to_owned(), StatusCode::OK),
    ] {
        let response = app.get(&alice, &path).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(position(&response), reached, "{path}");
    }
    let response = app.anonymous("/v1/tasks").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(position(&response), reached);
}

#[tokio::test]
async fn the_listener_recovers_when_its_connection_is_killed() {
    let app = spawn_app_with(&[("MIN_POSITION_TIMEOUT_MS", "60000")]).await;
    let alice = user();
    app.project().await;
    // End the service's LISTEN connection from the server side (once it is up).
    let mut killed: Vec<bool> = Vec::new();
    for _ in 0..100 {
        killed = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(app.db.pool())
        .await
        .unwrap();
        if !killed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The task list's listener, and the change feed's beside it.
    assert!(
        !killed.is_empty() && killed.iter().all(|k| *k),
        "{killed:?}"
    );
    let (id, ack) = app
        .create(&alice, NewTask::titled("after the outage"))
        .await;
    app.project().await;
    let response = with_min(
        &app,
        &alice,
        &format!("/v1/tasks/{id}"),
        ack.position.commit,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}
