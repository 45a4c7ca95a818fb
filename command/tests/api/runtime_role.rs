//! The command service connected as its runtime role of
//! `deploy/postgres/roles.sql` (`tasklog_command`), the schema applied by
//! the owner first, as the deploy's migrate step does: every endpoint's
//! statements are granted, and the schema is not the role's to change.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tasklog_events::store::postgres::PgEventStore;
use tasklog_platform::test_roles::{DbRoles, refused};
use tasklog_platform::testing::TestDb;

use crate::helpers::{TestApp, start, unique_email};

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn the_command_service_serves_everything_as_its_runtime_role_without_ddl() {
    let db = std::sync::Arc::new(TestDb::new().await.expect("test database"));
    // Roles first, then the owner's migrations (default privileges grant
    // the tables they make), as compose's and Kubernetes' migrate step.
    let roles = DbRoles::create(&db);
    tasklog_command::migrations::migrate(db.pool())
        .await
        .expect("the owner migrates the accounts");
    PgEventStore::new(db.pool().clone())
        .migrate()
        .await
        .expect("the owner migrates the log");
    let app = start(
        db.clone(),
        roles.command_url.clone(),
        vec![("WEBHOOK_ALLOW_PRIVATE".into(), "true".into())],
    )
    .await;

    let email = unique_email();
    let alice = app.register(&email).await;
    let login = app
        .post(
            "/v1/auth/login",
            &json!({"email": email, "password": "correct horse"}),
            None,
        )
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let refreshed = app
        .post(
            "/v1/auth/refresh",
            &json!({"refresh_token": alice.refresh_token}),
            None,
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    let ack = app
        .create_task(&alice, json!({"title": "as tasklog_command"}))
        .await;
    let id = ack["id"].as_str().expect("task id").to_owned();
    let patched = app
        .patch_task(&alice, &id, &json!({"status": "done"}))
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    assert_eq!(app.delete_task(&alice, &id).await.status(), StatusCode::OK);

    let (status, hook) = send(
        &app,
        Method::POST,
        "/v1/webhooks",
        &alice.token,
        Some(json!({"url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let hook_id = hook["id"].as_str().expect("webhook id").to_owned();
    let (status, list) = send(&app, Method::GET, "/v1/webhooks", &alice.token, None).await;
    assert_eq!(
        (status, list["webhooks"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(1))
    );
    let path = format!("/v1/webhooks/{hook_id}");
    assert_eq!(
        send(&app, Method::GET, &path, &alice.token, None).await.0,
        StatusCode::OK
    );
    let deliveries = format!("{path}/deliveries");
    assert_eq!(
        send(&app, Method::GET, &deliveries, &alice.token, None)
            .await
            .0,
        StatusCode::OK
    );
    let replay = format!("{path}/replay");
    let (status, body) = send(
        &app,
        Method::POST,
        &replay,
        &alice.token,
        Some(json!({"after": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "replay: {body}");
    let (status, _) = send(&app, Method::DELETE, &path, &alice.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (status, _) = send(&app, Method::GET, "/v1/auth/sessions", &alice.token, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, Method::DELETE, "/v1/auth/me", &alice.token, None).await;
    assert!(status.is_success(), "erasure: {status} {body}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts.users WHERE id = $1")
        .bind(alice.id)
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(left, 0, "erased");

    let as_role = PgPool::connect(&roles.command_url).await.expect("connects");
    let insufficient = Some("42501".to_owned());
    for sql in [
        "CREATE TABLE accounts.intruder (a int)",
        "CREATE TABLE eventlog.intruder (a int)",
        "CREATE TABLE public.intruder (a int)",
        "ALTER TABLE accounts.users ADD COLUMN intruder int",
        "DROP INDEX accounts.users_email_key",
        "CREATE SCHEMA IF NOT EXISTS accounts",
        "DELETE FROM eventlog.events",
    ] {
        assert_eq!(refused(&as_role, sql).await, insufficient, "{sql}");
    }
    // The migration histories are the owner's alone: made after the roles
    // (the migrate step takes the grants back), and after the script runs
    // again on a later deploy (the script does).
    let rewrite_history = [
        "DELETE FROM accounts._sqlx_migrations",
        "INSERT INTO eventlog._sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'skip me', true, '', 0)",
        "UPDATE eventlog._sqlx_migrations SET success = false",
    ];
    for sql in rewrite_history {
        assert_eq!(refused(&as_role, sql).await, insufficient, "{sql}");
    }
    roles.run_script_again(&db);
    for sql in rewrite_history {
        assert_eq!(refused(&as_role, sql).await, insufficient, "again: {sql}");
    }
    let readable: i64 = sqlx::query_scalar("SELECT count(*) FROM eventlog._sqlx_migrations")
        .fetch_one(&as_role)
        .await
        .expect("the role still reads the history");
    assert!(readable > 0);
    as_role.close().await;
}
