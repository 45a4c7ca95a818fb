//! Postgres going away and coming back: 503 problems meanwhile, recovery
//! after, and start-up that waits for it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use tasklog_platform::testing::TestDb;

use crate::helpers::{TestApp, problem, start, unique_email, url_with_port};
use tasklog_platform::testing::TcpProxy as Proxy;

async fn behind_proxy(up: bool) -> (Arc<TestDb>, Proxy, String) {
    let db = Arc::new(TestDb::new().await.unwrap());
    let options: PgConnectOptions = db.url().parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = Proxy::start(target, up).await.unwrap();
    let url = url_with_port(&db, proxy.port());
    (db, proxy, url)
}

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let response = app
        .request(Method::GET, "/health/ready")
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn unavailable(response: Response) {
    assert!(response.headers().contains_key("retry-after"));
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn while_postgres_is_unreachable_every_endpoint_is_503_and_then_recovers() {
    let (db, proxy, url) = behind_proxy(true).await;
    let app = start(db, url, vec![]).await;
    let user = app.register(&unique_email()).await;
    let id = app.create_task(&user, json!({"title": "before"})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    proxy.down();
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["checks"]["postgres"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );
    assert!(
        body["checks"]["event_store"]
            .as_str()
            .unwrap()
            .starts_with("down"),
        "{body}"
    );
    let live = app
        .request(Method::GET, "/health/live")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    let register = json!({"email": unique_email(), "password": "tidy-otter-42-lamp", "name": "N"});
    unavailable(app.post("/v1/auth/register", &register, None).await).await;
    let login = json!({"email": user.email, "password": "correct horse"});
    unavailable(app.post("/v1/auth/login", &login, None).await).await;
    let refresh = json!({"refresh_token": user.refresh_token});
    unavailable(app.post("/v1/auth/refresh", &refresh, None).await).await;
    unavailable(
        app.request(Method::GET, "/v1/auth/me")
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    unavailable(
        app.post("/v1/tasks", &json!({"title": "during"}), Some(&user.token))
            .await,
    )
    .await;
    unavailable(
        app.patch_task(&user, &id, &json!({"title": "during"}))
            .await,
    )
    .await;
    unavailable(app.delete_task(&user, &id).await).await;

    proxy.up();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = ready(&app).await.0;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
    let patched = app.patch_task(&user, &id, &json!({"title": "after"})).await;
    assert_eq!(patched.status(), StatusCode::OK);
    app.create_task(&user, json!({"title": "after"})).await;
    let versions: Vec<u64> = app.stream(&id).await.iter().map(|e| e.version).collect();
    assert_eq!(versions, [0, 1], "nothing written during the outage");
}

#[tokio::test]
async fn the_service_waits_for_postgres_at_start() {
    let (db, proxy, url) = behind_proxy(false).await;
    let starting = tokio::spawn(start(db, url, vec![]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "it cannot migrate yet");
    proxy.up();
    let app = tokio::time::timeout(Duration::from_secs(15), starting)
        .await
        .expect("started once Postgres answered")
        .unwrap();
    assert_eq!(ready(&app).await.0, StatusCode::OK);
    app.register(&unique_email()).await;
}

#[tokio::test]
async fn several_instances_start_at_once_on_a_fresh_database() {
    let db = Arc::new(TestDb::new().await.unwrap());
    let url = db.url().to_owned();
    let apps =
        futures::future::join_all((0..4).map(|_| start(db.clone(), url.clone(), vec![]))).await;
    for app in &apps {
        let user = app.register(&unique_email()).await;
        app.create_task(&user, json!({"title": "T"})).await;
    }
}
