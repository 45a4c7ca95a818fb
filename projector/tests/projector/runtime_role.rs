//! The projector connected as its runtime role of `deploy/postgres/roles.sql`
//! (`tasklog_projector`), the schema applied by the owner first, as the
//! deploy's migrate step does: `run` projects, `verify` reads everything it
//! compares, a rebuild is refused up front (it makes tables: the owner runs
//! it) and the running projector keeps projecting into the generation the
//! owner's rebuild made; the schema is not the role's to change.

use std::sync::Arc;

use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::domain::{Priority, Status};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_platform::test_roles::{DbRoles, refused};
use tasklog_platform::testing::redis_url;
use tasklog_projector::ProjectorError;
use tasklog_projector::rebuild::{Quiet, RebuildOptions, rebuild};

use crate::helpers::{World, all_rows, owners};

async fn verify_as(pool: &PgPool, w: &World) -> Vec<String> {
    let store = PgEventStore::new(pool.clone());
    tasklog_projector::verify::verify(pool, &store, Some(&w.redis))
        .await
        .expect("verify runs as the runtime role")
        .differences
}

#[tokio::test]
async fn the_projector_runs_and_verifies_as_its_runtime_role_and_leaves_rebuilds_to_the_owner() {
    // The log was migrated by the owner (World); the roles come next, then
    // the owner's read-model migrations (default privileges grant them).
    let mut w = World::new().await;
    let roles = DbRoles::create(&w.db);
    tasklog_readmodel::migrate(w.pool())
        .await
        .expect("the owner migrates the read model");
    let people = owners(3);
    for (i, owner) in people.iter().enumerate() {
        w.writer
            .create(*owner, &format!("task {i}"), Status::Todo, Priority::Medium)
            .await;
    }

    let running = w
        .start_projector(
            &redis_url(),
            &[("DATABASE_URL", roles.projector_url.as_str())],
        )
        .await;
    w.wait_caught_up().await;
    let as_role = PgPool::connect(&roles.projector_url)
        .await
        .expect("connects");
    assert_eq!(verify_as(&as_role, &w).await, Vec::<String>::new());

    let store: Arc<dyn EventStore> = Arc::new(PgEventStore::new(as_role.clone()));
    let refused_rebuild = rebuild(
        &as_role,
        store,
        Some(&w.redis),
        RebuildOptions::default(),
        &mut Quiet,
    )
    .await;
    assert!(
        matches!(refused_rebuild, Err(ProjectorError::NotOwner(_))),
        "a rebuild as the runtime role stops before it starts: {:?}",
        refused_rebuild.err()
    );
    let report = w
        .rebuild(RebuildOptions::default())
        .await
        .expect("the owner rebuilds");
    assert!(report.generation > report.previous_generation);

    // The runtime role's `run` writes the new generation's rows.
    w.writer
        .create(people[0], "after the rebuild", Status::Todo, Priority::High)
        .await;
    w.wait_caught_up().await;
    assert_eq!(all_rows(w.pool()).await.len(), people.len() + 1);
    assert_eq!(verify_as(&as_role, &w).await, Vec::<String>::new());

    let insufficient = Some("42501".to_owned());
    for sql in [
        "CREATE TABLE readmodel.intruder (a int)",
        "CREATE TABLE public.intruder (a int)",
        "DROP VIEW readmodel.tasks",
        "SELECT readmodel.create_generation(99)",
        "INSERT INTO eventlog.events (stream_id) VALUES ('task-x')",
        "CREATE SCHEMA IF NOT EXISTS readmodel",
        // The migration history, made after the roles: the owner's alone.
        "DELETE FROM readmodel._sqlx_migrations",
        "UPDATE readmodel._sqlx_migrations SET checksum = ''",
    ] {
        assert_eq!(refused(&as_role, sql).await, insufficient, "{sql}");
    }
    as_role.close().await;
    running.stop().await;
}
