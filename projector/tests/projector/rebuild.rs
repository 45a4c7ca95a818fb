//! `rebuild` while readers query and a live projector runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tasklog_platform::testing::redis_url;
use tasklog_projector::rebuild::{Quiet, RebuildOptions, RebuildReport, rebuild};
use uuid::Uuid;

use crate::helpers::{World, all_rows, owners};

async fn rebuild_with_defaults(w: &World) -> RebuildReport {
    rebuild(
        w.pool(),
        w.dyn_store(),
        Some(&w.redis),
        RebuildOptions::default(),
        &mut Quiet,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn rebuild_swaps_in_a_new_generation_while_readers_query_and_run_keeps_projecting() {
    let mut w = World::new().await;
    let people = owners(4);
    w.writer.busy_history(&people, 150).await;
    let running = w.start_projector(&redis_url(), &[]).await;
    w.wait_caught_up().await;
    let before = all_rows(w.pool()).await;

    // Readers hammer the view the query service reads, with prepared statements.
    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for person in people.iter().take(3) {
        let (db, stop, queries) = (w.pool().clone(), stop.clone(), queries.clone());
        let owner: Uuid = person.0;
        readers.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let listed: Result<Vec<(Uuid, String)>, _> = sqlx::query_as(
                    "SELECT id, title FROM readmodel.tasks WHERE owner_id = $1 \
                     ORDER BY created_at, id LIMIT 50",
                )
                .bind(owner)
                .fetch_all(&db)
                .await;
                let searched: Result<i64, _> = sqlx::query_scalar(
                    "SELECT count(*) FROM readmodel.tasks WHERE owner_id = $1 AND search LIKE '%' || $2 || '%'",
                )
                .bind(owner)
                .bind("task")
                .fetch_one(&db)
                .await;
                for e in [listed.err(), searched.err()].into_iter().flatten() {
                    errors.push(e.to_string());
                }
                queries.fetch_add(1, Ordering::SeqCst);
            }
            errors
        }));
    }
    // Writes go on during the rebuild.
    let writer = {
        let people = people.clone();
        let stand_in = crate::helpers::Writer::detached(&w);
        let mut writer = std::mem::replace(&mut w.writer, stand_in);
        tokio::spawn(async move {
            writer.busy_history(&people, 60).await;
            writer
        })
    };

    let report = rebuild(
        w.pool(),
        w.dyn_store(),
        Some(&w.redis),
        RebuildOptions {
            total_hint: None,
            index_parallelism: 2,
            replay_ranges: 3,
        },
        &mut Quiet,
    )
    .await
    .unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.counts.as_deref(), Ok("g2"));

    w.writer = writer.await.unwrap();
    w.wait_caught_up().await;
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        let errors = reader.await.unwrap();
        assert!(
            errors.is_empty(),
            "queries failed during the rebuild: {errors:#?}"
        );
    }
    assert!(queries.load(Ordering::SeqCst) > 0);

    let generation: i32 = sqlx::query_scalar(
        "SELECT generation FROM readmodel.checkpoints WHERE projection = 'tasks'",
    )
    .fetch_one(w.pool())
    .await
    .unwrap();
    assert_eq!(generation, 2);
    let old_left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('readmodel.tasks_g1')::text")
            .fetch_one(w.pool())
            .await
            .unwrap();
    assert_eq!(old_left, None, "the old generation is dropped");
    let diffs = w.verify().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert!(all_rows(w.pool()).await.len() > before.len());

    // The live projector continues on the new generation.
    w.writer.busy_history(&people, 10).await;
    w.wait_caught_up().await;
    let diffs = w.verify().await;
    running.stop().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[tokio::test]
async fn a_rebuild_of_a_quiet_log_yields_the_same_rows_and_counts() {
    let mut w = World::new().await;
    let people = owners(3);
    w.writer.busy_history(&people, 80).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let before = all_rows(w.pool()).await;
    let mut counts_before = Vec::new();
    for p in &people {
        counts_before.push(w.counts(*p).await);
    }
    let report = rebuild(
        w.pool(),
        w.dyn_store(),
        Some(&w.redis),
        // Several stretches at once; the second rebuild below uses one.
        RebuildOptions {
            replay_ranges: 4,
            ..RebuildOptions::default()
        },
        &mut Quiet,
    )
    .await
    .unwrap();
    assert_eq!(report.position, w.head().await);
    assert_eq!(report.live_tasks as usize, before.len());
    assert_eq!(all_rows(w.pool()).await, before);
    for (p, c) in people.iter().zip(counts_before) {
        assert_eq!(w.counts(*p).await, c);
    }
    assert_eq!(w.counts_checkpoint().await, w.head().await);
    // Twice in a row is fine too (generation 3, the leftover g2 is dropped).
    let again = rebuild_with_defaults(&w).await;
    assert_eq!(again.generation, 3);
    assert!(w.verify().await.is_empty());
}

/// The GIN indexes of every generation merge their pending lists in small
/// steps (migration 0002), so no projector batch stalls on a large merge.
#[tokio::test]
async fn every_generation_keeps_its_gin_pending_lists_small() {
    async fn gin_options(w: &World, generation: i32) -> Vec<(String, Option<Vec<String>>)> {
        sqlx::query_as(
            "SELECT c.relname::text, c.reloptions::text[] FROM pg_class c \
             JOIN pg_am am ON am.oid = c.relam \
             WHERE c.relnamespace = 'readmodel'::regnamespace AND am.amname = 'gin' \
               AND c.relname LIKE $1 ORDER BY 1",
        )
        .bind(format!("tasks_g{generation}\\_%"))
        .fetch_all(w.pool())
        .await
        .unwrap()
    }
    let small = Some(vec!["gin_pending_list_limit=256".to_owned()]);
    let mut w = World::new().await;
    w.writer.busy_history(&owners(2), 10).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), None)
        .await
        .unwrap();
    assert_eq!(
        gin_options(&w, 1).await,
        [
            ("tasks_g1_search".to_owned(), small.clone()),
            ("tasks_g1_tags".to_owned(), small.clone())
        ]
    );
    let report = rebuild(
        w.pool(),
        w.dyn_store(),
        None,
        RebuildOptions::default(),
        &mut Quiet,
    )
    .await
    .unwrap();
    assert_eq!(
        gin_options(&w, report.generation).await,
        [
            (
                format!("tasks_g{}_search", report.generation),
                small.clone()
            ),
            (format!("tasks_g{}_tags", report.generation), small)
        ]
    );
}

/// A live batch read before a rebuild's swap, applied after the swap dropped
/// the generation it was read for: nothing is written and the projector is
/// told where the new generation stands (the statement fails on the missing
/// table; the checkpoint says why).
#[tokio::test]
async fn a_batch_for_a_generation_a_rebuild_dropped_moves_to_the_new_one() {
    use tasklog_projector::projection::{Applied, Projection};
    use tasklog_projector::tasks::TasksProjection;

    let mut w = World::new().await;
    let people = owners(2);
    w.writer.busy_history(&people, 30).await;
    let events = w.all_events().await;
    let (first, second) = events.split_at(events.len() / 2);
    let tasks = TasksProjection::new(w.pool().clone());
    tasklog_readmodel::migrate(w.pool()).await.unwrap();
    let t0 = tasks.checkpoint().await.unwrap();
    let Applied::Done(t1) = tasks.apply(w.store.as_ref(), &t0, first).await.unwrap() else {
        panic!("first apply");
    };

    let report = rebuild_with_defaults(&w).await;
    assert_eq!(report.generation, t1.generation + 1);
    let old_table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("readmodel.tasks_g{}", t1.generation))
        .fetch_one(w.pool())
        .await
        .unwrap();
    assert_eq!(old_table, None, "the rebuild drops the old generation");
    let after_rebuild = all_rows(w.pool()).await;

    let outcome = tasks.apply(w.store.as_ref(), &t1, second).await.unwrap();
    let Applied::Moved(stored) = outcome else {
        panic!("a batch for a dropped generation was applied: {outcome:?}");
    };
    assert_eq!(stored.generation, report.generation);
    assert_eq!(stored.position, w.head().await);
    assert_eq!(all_rows(w.pool()).await, after_rebuild);
    assert!(w.verify().await.is_empty());
}
