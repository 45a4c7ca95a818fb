//! The read model on a server of its own (`READMODEL_DATABASE_URL`): the log
//! and the accounts stay on `DATABASE_URL`, the read model, its checkpoints
//! and the leases move; reads, read-your-writes, stats, history and the
//! projector's `verify`, `status` and `rebuild` all work in that layout.
//!
//! The read model goes to the scale-out tests' second Postgres server when
//! `deploy/local/test` made one (`TEST_REPLICA_PRIMARY_URL`), else to a
//! second database on the same server: either way no query can cross from
//! one to the other, so a read or write sent to the wrong pool fails.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tasklog_platform::testing::TestDb;

use crate::start_with;

async fn has_schema(url: &str, schema: &str) -> bool {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

async fn projected_tasks(url: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM readmodel.tasks")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(-1)
}

#[tokio::test]
async fn the_read_model_on_its_own_server_serves_every_read_and_every_tool() {
    let readmodel = match std::env::var("TEST_REPLICA_PRIMARY_URL") {
        Ok(admin) if !admin.trim().is_empty() => TestDb::on(&admin).await.unwrap(),
        _ => TestDb::new().await.unwrap(),
    };
    let system = start_with(&[("READMODEL_DATABASE_URL", readmodel.url())]).await;
    let api = system.api();
    let alice = api.register().await.unwrap();
    let bob = api.register().await.unwrap();

    let mut ids = Vec::new();
    let mut position = 0;
    for i in 0..12 {
        let created = api
            .post(
                "/v1/tasks",
                &alice,
                json!({"title": format!("split task {i}"), "priority": "high"}),
            )
            .await
            .unwrap();
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        position = created.position().unwrap();
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    let done = api
        .patch(
            &format!("/v1/tasks/{}", ids[0]),
            &alice,
            json!({"status": "done"}),
        )
        .await
        .unwrap();
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    let deleted = api
        .delete(&format!("/v1/tasks/{}", ids[1]), &alice)
        .await
        .unwrap();
    assert!(deleted.status.is_success(), "{deleted:?}");
    position = position.max(deleted.position().unwrap());
    let bobs = api
        .post("/v1/tasks", &bob, json!({"title": "bob's own"}))
        .await
        .unwrap();
    assert_eq!(bobs.status, StatusCode::CREATED, "{bobs:?}");

    // Read-your-writes through the read model's server.
    let list = api
        .get_at("/v1/tasks?limit=100", &alice, position)
        .await
        .unwrap();
    assert_eq!(list.status, StatusCode::OK, "{list:?}");
    assert_eq!(list.body["tasks"].as_array().unwrap().len(), 11, "{list:?}");
    let stats = api.get_at("/v1/stats", &alice, position).await.unwrap();
    assert_eq!(stats.status, StatusCode::OK, "{stats:?}");
    assert_eq!(stats.body["total"], 11, "{stats:?}");
    assert_eq!(stats.body["by_status"]["done"], 1, "{stats:?}");
    // History reads the log, on the other server.
    let history = api
        .get(&format!("/v1/tasks/{}/history", ids[0]), &alice)
        .await
        .unwrap();
    assert_eq!(history.status, StatusCode::OK, "{history:?}");
    assert_eq!(
        history.body["events"].as_array().map(Vec::len),
        Some(2),
        "{history:?}"
    );

    // Each server holds its own part, and only that.
    assert!(has_schema(readmodel.url(), "readmodel").await);
    assert!(!has_schema(readmodel.url(), "eventlog").await);
    assert!(has_schema(system.db.url(), "eventlog").await);
    assert!(!has_schema(system.db.url(), "readmodel").await);
    assert_eq!(projected_tasks(readmodel.url()).await, 12);

    // The projector's tools in the same layout.
    let (ok, output) = system.projector_cli(&["verify"]).await.unwrap();
    assert!(ok, "verify: {output}");
    assert!(output.contains("verify: 0 differences"), "{output}");
    let (ok, output) = system.projector_cli(&["status"]).await.unwrap();
    assert!(ok, "status: {output}");
    let (ok, output) = system.projector_cli(&["rebuild"]).await.unwrap();
    assert!(ok, "rebuild: {output}");
    let (ok, output) = system.projector_cli(&["verify"]).await.unwrap();
    assert!(ok, "verify after rebuild: {output}");
    assert!(!has_schema(system.db.url(), "readmodel").await);
    let after = api
        .get_at("/v1/tasks?limit=100", &alice, position)
        .await
        .unwrap();
    assert_eq!(
        after.body["tasks"].as_array().unwrap().len(),
        11,
        "{after:?}"
    );
}
