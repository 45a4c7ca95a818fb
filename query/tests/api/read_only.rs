//! The service connected as the read-only role of
//! `deploy/postgres/roles.sql`: it starts without running a migration,
//! serves every read (lists, detail, history, stats from Postgres and from
//! Redis, the change feed), keeps serving across a rebuild's new
//! generation (default privileges), and Postgres refuses that role's writes.
//! The runtime roles of the same script append and project once the owner
//! has migrated, and may not change the schema.

use std::sync::Arc;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};
use tasklog_events::EventStore;
use tasklog_events::domain::{TaskPatch, TaskTitle};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::store::postgres::testing::{ROW_WRITES, SCHEMA_CHANGES};
use tasklog_platform::test_roles::refused;
use tasklog_projector::rebuild::{Quiet, RebuildOptions, rebuild};

use crate::helpers::{
    NewTask, TestApp, User, spawn_app_as_query_role, spawn_app_as_query_role_before_the_log, user,
};

fn titles(page: &Value) -> Vec<&str> {
    page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["title"].as_str().expect("a title"))
        .collect()
}

async fn stats_source(app: &TestApp, who: &User) -> (String, Value) {
    let response = app.get(who, "/v1/stats").send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let source = response.headers()["x-stats-source"]
        .to_str()
        .expect("ascii")
        .to_owned();
    (source, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_read_only_role_serves_every_read() {
    let app = spawn_app_as_query_role().await;
    let alice = user();
    let (one, _) = app.create(&alice, NewTask::titled("one")).await;
    app.create(&alice, NewTask::titled("two")).await;
    app.update(
        &alice,
        one,
        TaskPatch {
            title: Some(TaskTitle::parse("one, renamed").expect("title")),
            ..TaskPatch::default()
        },
        Utc::now(),
    )
    .await;
    app.project_postgres_only().await;

    let page = app.json(&alice, "/v1/tasks?sort=title").await;
    assert_eq!(titles(&page), ["one, renamed", "two"]);
    let detail = app.json(&alice, &format!("/v1/tasks/{one}")).await;
    assert_eq!(detail["title"], "one, renamed");
    let history = app.json(&alice, &format!("/v1/tasks/{one}/history")).await;
    assert_eq!(history["events"].as_array().expect("events").len(), 2);
    let (source, stats) = stats_source(&app, &alice).await;
    assert_eq!((source.as_str(), &stats["total"]), ("postgres", &2.into()));
    let feed = app.json(&alice, "/v1/changes?after=0").await;
    assert_eq!(feed["changes"].as_array().expect("changes").len(), 3);

    app.project().await;
    let (source, stats) = stats_source(&app, &alice).await;
    assert_eq!((source.as_str(), &stats["total"]), ("redis", &2.into()));
    let ready = app.anonymous("/health/ready").send().await.expect("sent");
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn postgres_refuses_the_read_only_roles_writes_and_ddl() {
    let app = spawn_app_as_query_role().await;
    let alice = user();
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    let role = app.role.as_ref().expect("spawned as the query role");
    let mut conn = PgConnection::connect(&role.query_url)
        .await
        .expect("connects");
    // An accounts table as the command service's migrations make them (the
    // query role may use the schema, for the data keys alone).
    sqlx::query("CREATE TABLE accounts.passwords_probe (hash text)")
        .execute(app.db.pool())
        .await
        .expect("the owner makes an accounts table");

    let insufficient = Some("42501".to_owned());
    let statements = [
        "UPDATE readmodel.tasks SET title = 'x'",
        "DELETE FROM readmodel.checkpoints",
        "UPDATE readmodel.checkpoints SET commit_position = 0",
        "INSERT INTO readmodel.changes SELECT * FROM readmodel.changes",
        "CREATE TABLE readmodel.intruder (a int)",
        "CREATE TABLE public.intruder (a int)",
        "DROP VIEW readmodel.tasks",
        "SELECT count(*) FROM accounts.passwords_probe",
    ];
    for sql in statements
        .into_iter()
        .chain(ROW_WRITES)
        .chain(SCHEMA_CHANGES)
    {
        assert_eq!(refused(&mut conn, sql).await, insufficient, "{sql}");
    }
    // And reading is what it may do.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM readmodel.tasks")
        .fetch_one(&mut conn)
        .await
        .expect("reads");
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_rebuilds_new_generation_is_readable_by_the_read_only_role() {
    let app = spawn_app_as_query_role().await;
    let (alice, bob) = (user(), user());
    app.create(&alice, NewTask::titled("one")).await;
    app.project().await;
    assert_eq!(titles(&app.json(&alice, "/v1/tasks").await), ["one"]);

    // As the owner, as the projector would run it.
    let store: Arc<dyn EventStore> = Arc::new(app.store.clone());
    rebuild(
        app.db.pool(),
        store,
        Some(&app.redis),
        RebuildOptions::default(),
        &mut Quiet,
    )
    .await
    .expect("rebuild");
    let generation: i32 = sqlx::query_scalar(
        "SELECT generation FROM readmodel.checkpoints WHERE projection = 'tasks'",
    )
    .fetch_one(app.db.pool())
    .await
    .expect("generation");
    assert!(generation > 1, "a new generation was swapped in");

    app.create(&bob, NewTask::titled("later")).await;
    app.create(&alice, NewTask::titled("two")).await;
    app.project().await;
    let page = app.json(&alice, "/v1/tasks?sort=title").await;
    assert_eq!(titles(&page), ["one", "two"]);
    let (_, stats) = stats_source(&app, &alice).await;
    assert_eq!(stats["total"], 2);
    let role = app.role.as_ref().expect("spawned as the query role");
    let mut conn = PgConnection::connect(&role.query_url)
        .await
        .expect("connects");
    let table = format!("readmodel.tasks_g{generation}");
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .expect("the new generation's table is granted");
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn the_runtime_roles_append_and_project_without_ddl_once_the_owner_migrated() {
    // The harness migrated as the owner; the runtime roles come after.
    let app = spawn_app_as_query_role().await;
    let roles = app.role.as_ref().expect("spawned with the roles");
    let as_command = PgPool::connect(&roles.command_url).await.expect("connects");
    let as_projector = PgPool::connect(&roles.projector_url)
        .await
        .expect("connects");

    // What each service runs at start finds nothing to do, so needs no DDL.
    let log = PgEventStore::new(as_command.clone());
    log.migrate().await.expect("the log is migrated already");
    tasklog_readmodel::migrate(&as_projector)
        .await
        .expect("the read model is migrated already");

    let alice = user();
    let id = app
        .create_through(&log, &alice, "appended as tasklog_command")
        .await;
    let projector_log = PgEventStore::new(as_projector.clone());
    let reached = tasklog_projector::catch_up(&as_projector, &projector_log, Some(&app.redis))
        .await
        .expect("projected as tasklog_projector");
    app.heard(reached).await;
    let detail = app.json(&alice, &format!("/v1/tasks/{id}")).await;
    assert_eq!(detail["title"], "appended as tasklog_command");

    let insufficient = Some("42501".to_owned());
    let mut command = as_command.acquire().await.expect("a connection");
    let statements = [
        "CREATE TABLE accounts.intruder (a int)",
        "UPDATE readmodel.checkpoints SET commit_position = 0",
    ];
    for sql in statements.into_iter().chain(SCHEMA_CHANGES) {
        assert_eq!(
            refused(&mut *command, sql).await,
            insufficient,
            "command: {sql}"
        );
    }
    let mut projector = as_projector.acquire().await.expect("a connection");
    let statements = [
        "CREATE TABLE readmodel.intruder (a int)",
        "DROP VIEW readmodel.tasks",
        "SELECT readmodel.create_generation(99)",
    ];
    for sql in statements.into_iter().chain(ROW_WRITES) {
        assert_eq!(
            refused(&mut *projector, sql).await,
            insufficient,
            "projector: {sql}"
        );
    }
}

#[tokio::test]
async fn before_the_log_exists_the_read_only_service_starts_unready_and_answers_503() {
    let app = spawn_app_as_query_role_before_the_log().await;
    let ready = app.anonymous("/health/ready").send().await.expect("sent");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let alice = user();
    let history = app
        .get(
            &alice,
            &format!("/v1/tasks/{}/history", uuid::Uuid::now_v7()),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(history.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(history.headers().contains_key("retry-after"));

    // The writer makes the log; the service is ready without a restart.
    app.store
        .migrate()
        .await
        .expect("the owner migrates the log");
    let ready = app.anonymous("/health/ready").send().await.expect("sent");
    assert_eq!(ready.status(), StatusCode::OK);
}
