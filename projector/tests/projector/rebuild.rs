//! `rebuild` while readers query and a live projector runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tasklog_platform::testing::redis_url;
use tasklog_projector::rebuild::{Progress, Quiet, RebuildOptions, RebuildReport, rebuild};
use uuid::Uuid;

use crate::helpers::{World, all_rows, owners};

async fn rebuild_with_defaults(w: &World) -> RebuildReport {
    w.rebuild(RebuildOptions::default()).await.unwrap()
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

    let report = w
        .rebuild(RebuildOptions {
            total_hint: None,
            index_parallelism: 2,
            replay_ranges: 3,
        })
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
    // Several stretches at once; the second rebuild below uses one.
    let report = w
        .rebuild(RebuildOptions {
            replay_ranges: 4,
            ..RebuildOptions::default()
        })
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

/// Blocks a rebuild at one phase until the test lets it go.
struct Gate {
    at: &'static str,
    reached: Option<std::sync::mpsc::Sender<()>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Gate {
    fn new(
        at: &'static str,
    ) -> (
        Gate,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (reached_tx, reached_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let gate = Gate {
            at,
            reached: Some(reached_tx),
            release: release_rx,
        };
        (gate, reached_rx, release_tx)
    }
}

impl Progress for Gate {
    fn phase(&mut self, phase: &str) {
        if phase == self.at {
            if let Some(reached) = self.reached.take() {
                let _ = reached.send(());
                let _ = tokio::task::block_in_place(|| self.release.recv());
            }
        }
    }
    fn replayed(&mut self, _: u64, _: Option<u64>) {}
    fn loaded(&mut self, _: u64, _: u64) {}
}

async fn wait_for(reached: &std::sync::mpsc::Receiver<()>) {
    loop {
        match reached.try_recv() {
            Ok(()) => return,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the rebuild never reached its gate: {e}"),
        }
    }
}

/// The rebuild lock is held on a connection of its own. If that connection
/// dies while the rebuild runs, a second rebuild may start and drop and
/// recreate the next generation's table; the first must then not swap in
/// that (empty, half-loaded) table: its swap checks the lock and the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_that_lost_its_lock_does_not_swap_in_another_rebuilds_table() {
    let mut w = World::new().await;
    w.writer.busy_history(&owners(3), 40).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let before = all_rows(w.pool()).await;
    assert!(!before.is_empty());

    let (mut first_gate, first_reached, first_release) = Gate::new("switching");
    let first = {
        let (db, store) = (w.pool().clone(), w.dyn_store());
        tokio::spawn(async move {
            rebuild(&db, store, None, RebuildOptions::default(), &mut first_gate).await
        })
    };
    wait_for(&first_reached).await;
    let killed: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'tasklog-projector rebuild'",
    )
    .fetch_one(w.pool())
    .await
    .unwrap();
    assert!(killed);

    // The second rebuild gets the lock, drops the first one's table and
    // makes its own, empty until it has replayed the log.
    let (mut second_gate, second_reached, second_release) = Gate::new("replaying the log");
    let second = {
        let (db, store) = (w.pool().clone(), w.dyn_store());
        tokio::spawn(async move {
            rebuild(
                &db,
                store,
                None,
                RebuildOptions::default(),
                &mut second_gate,
            )
            .await
        })
    };
    wait_for(&second_reached).await;

    first_release.send(()).unwrap();
    let outcome = first.await.unwrap();
    assert!(
        outcome.is_err(),
        "the fenced-out rebuild swapped: {outcome:?}"
    );
    assert_eq!(all_rows(w.pool()).await, before, "lists stay complete");

    second_release.send(()).unwrap();
    let report = second.await.unwrap().unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(all_rows(w.pool()).await, before);
    assert!(w.verify().await.is_empty());
}

/// `verify` reads the checkpoint and then the rows in one REPEATABLE READ
/// transaction; a swap that commits between the two must not make it compare
/// one generation's checkpoint with another generation's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_reads_the_checkpoints_own_generation_while_a_swap_commits() {
    use tasklog_readmodel::generation;

    let mut w = World::new().await;
    w.writer.busy_history(&owners(2), 20).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), None)
        .await
        .unwrap();
    // A swap in flight: an empty generation 2 made current, not committed yet.
    let mut swap = w.pool().begin().await.unwrap();
    generation::create(&mut *swap, 2).await.unwrap();
    generation::point_view_at(&mut swap, 2).await.unwrap();
    sqlx::query("UPDATE readmodel.checkpoints SET generation = 2 WHERE projection = 'tasks'")
        .execute(&mut *swap)
        .await
        .unwrap();
    let verify = {
        let (db, store) = (w.pool().clone(), w.dyn_store());
        tokio::spawn(
            async move { tasklog_projector::verify::verify(&db, store.as_ref(), None).await },
        )
    };
    // The swap commits once verify has read its checkpoint and waits for the
    // view the swap holds (or has finished without needing it).
    while !verify.is_finished() {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%search_ok%')",
        )
        .fetch_one(w.pool())
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    swap.commit().await.unwrap();
    let report = verify.await.unwrap().unwrap();
    assert!(report.is_clean(), "{:#?}", report.differences);
}

/// Once the swap has committed the rebuild has happened: failing to drop the
/// old generations afterwards does not make it report failure, and the
/// counts are still rebuilt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_that_cannot_drop_the_old_generation_still_succeeds_and_rebuilds_the_counts() {
    use tasklog_readmodel::generation;

    let mut w = World::new().await;
    w.writer.busy_history(&owners(2), 20).await;
    tasklog_projector::catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let direct = w.pool().connect_options();
    let proxy = tasklog_platform::testing::TcpProxy::start(
        format!("{}:{}", direct.get_host(), direct.get_port()),
        true,
    )
    .await
    .unwrap();
    let through_proxy = (*direct).clone().host("127.0.0.1").port(proxy.port());
    let db = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_with(through_proxy)
        .await
        .unwrap();
    // A leftover of an interrupted rebuild; a reader holds it and the current
    // generation, so that dropping either waits.
    generation::create(w.pool(), 7).await.unwrap();
    let mut reader = w.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE readmodel.tasks_g1, readmodel.tasks_g7 IN ACCESS SHARE MODE")
        .execute(&mut *reader)
        .await
        .unwrap();
    let rebuilding = {
        let (store, redis) = (w.dyn_store(), w.redis.clone());
        tokio::spawn(async move {
            rebuild(
                &db,
                store,
                Some(&redis),
                RebuildOptions::default(),
                &mut Quiet,
            )
            .await
        })
    };
    // Swapped, and waiting to drop an old generation: the database goes out
    // of reach.
    loop {
        let waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() \
                            AND wait_event_type = 'Lock' AND query LIKE 'DROP TABLE%') \
                AND (SELECT generation FROM readmodel.checkpoints WHERE projection = 'tasks') = 2",
        )
        .fetch_one(w.pool())
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    proxy.down();
    let report = rebuilding
        .await
        .unwrap()
        .expect("the swap happened, so the rebuild succeeded");
    assert_eq!(report.generation, 2);
    assert_eq!(report.counts.as_deref(), Ok("g2"));
    reader.rollback().await.unwrap();
    let old_left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('readmodel.tasks_g1')::text")
            .fetch_one(w.pool())
            .await
            .unwrap();
    assert!(old_left.is_some(), "the database was out of reach");
    assert!(w.verify().await.is_empty());
}
