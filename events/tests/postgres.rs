//! The event-store contract and the Postgres-specific guarantees, against a
//! real Postgres (a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

mod contract;

use std::sync::Arc;

use contract::{Harness, event, stream};
use std::collections::HashSet;

use tasklog_events::store::postgres::{GroupCommitSettings, PgEventStore};
use tasklog_events::{EventStore, ExpectedVersion, Position, StoreError};
use tasklog_platform::testing::TestDb;

async fn postgres() -> Option<Harness> {
    let (db, store) = store().await;
    Some(Harness {
        store: Arc::new(store),
        _guard: Box::new(db),
    })
}

async fn store() -> (TestDb, PgEventStore) {
    let db = TestDb::new().await.expect("test database");
    let store = PgEventStore::new(db.pool().clone());
    store.migrate().await.expect("migrate the event log");
    (db, store)
}

contract_suite!(postgres);
contract_suite_log_wide_ids!(postgres);

/// Reads the log once at least `want` events are visible. The visibility
/// horizon is server-wide: a transaction of any other test (or any database
/// on the server) holds fresh commits back for a moment, which is correct
/// behaviour but not what these tests are about.
async fn read_all_settled(
    store: &PgEventStore,
    after: Option<Position>,
    max: usize,
    want: usize,
) -> Vec<tasklog_events::RecordedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let page = store.read_all(after, max).await.unwrap();
        if page.len() >= want || std::time::Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Binds the append function's arguments for one event, inside a transaction
/// the test controls.
async fn append_in(tx: &mut sqlx::PgConnection, stream_id: &str) {
    let e = event(0);
    sqlx::query("SELECT * FROM eventlog.append($1, NULL, $2, $3, $4, $5, $6)")
        .bind(stream_id)
        .bind(vec![e.event_id])
        .bind(vec![e.event_type])
        .bind(vec![e.schema_version])
        .bind(vec![e.data])
        .bind(vec![serde_json::to_value(e.metadata).unwrap()])
        .fetch_one(tx)
        .await
        .unwrap();
}

/// The case a naive `position > checkpoint` reader gets wrong: an event whose
/// identity value is older commits after a newer one. The reader must not
/// return the newer one until the older has committed, then return both.
#[tokio::test]
async fn an_event_committed_later_with_an_older_position_is_not_skipped() {
    let (_db, store) = store().await;
    let (slow, fast) = (stream(), stream());

    let mut slow_tx = store.pool().begin().await.unwrap();
    append_in(&mut slow_tx, &slow).await; // takes the lower position, not committed
    store
        .append(&fast, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap(); // takes the higher position, committed

    let naive: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM eventlog.events WHERE position > 0 ORDER BY position",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        naive,
        vec![fast.clone()],
        "a naive reader would see only the later event"
    );

    let held = store.read_all(None, 100).await.unwrap();
    assert!(held.is_empty(), "read past a running transaction: {held:?}");

    slow_tx.commit().await.unwrap();
    let read = read_all_settled(&store, None, 100, 2).await;
    let order: Vec<&str> = read.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(order, vec![slow.as_str(), fast.as_str()]);
}

/// Log order is commit order: a transaction that took its id first comes first
/// even when its identity value is higher, and positions still increase.
#[tokio::test]
async fn log_order_follows_transactions_not_identity_values() {
    let (_db, store) = store().await;
    let (early, late) = (stream(), stream());

    let mut early_tx = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *early_tx)
        .await
        .unwrap();
    store
        .append(&late, ExpectedVersion::NoStream, vec![event(1)])
        .await
        .unwrap();
    append_in(&mut early_tx, &early).await;
    early_tx.commit().await.unwrap();

    let read = read_all_settled(&store, None, 100, 2).await;
    assert_eq!(
        read.iter()
            .map(|e| e.stream_id.as_str())
            .collect::<Vec<_>>(),
        vec![early.as_str(), late.as_str()]
    );
    assert!(read[0].position.prepare > read[1].position.prepare);
    assert!(read[0].position < read[1].position);
}

#[tokio::test]
async fn a_page_never_ends_inside_one_commit() {
    let (_db, store) = store().await;
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, (0..5).map(event).collect())
        .await
        .unwrap();
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![event(9)])
        .await
        .unwrap();
    let page = read_all_settled(&store, None, 2, 1).await;
    assert_eq!(page.len(), 5, "the five events of one commit come together");
    assert!(
        page.iter()
            .all(|e| e.position.commit == page[0].position.commit)
    );
    let next = read_all_settled(&store, Some(page[4].position), 2, 1).await;
    assert_eq!(next.len(), 1);
}

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let (_db, store) = store().await;
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    for sql in [
        "UPDATE eventlog.events SET data = '{}'",
        "DELETE FROM eventlog.events",
        "TRUNCATE eventlog.events",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await;
        assert!(err.is_err(), "{sql} was allowed");
    }
}

#[tokio::test]
async fn migrating_twice_and_concurrently_is_harmless() {
    let (_db, store) = store().await;
    let runs = (0..4).map(|_| store.migrate());
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
    assert!(store.head().await.unwrap().is_none());
    assert_eq!(Position::START, Position::new(0, 0));
}

// Group commit: appends share transactions, yet each keeps its own check and
// result, and every append gets its own position.

async fn store_with_workers(workers: usize) -> (TestDb, PgEventStore) {
    let db = TestDb::new().await.expect("test database");
    let store = PgEventStore::new(db.pool().clone()).with_group_commit(GroupCommitSettings {
        workers,
        max_batch: 128,
        ..GroupCommitSettings::default()
    });
    store.migrate().await.expect("migrate the event log");
    (db, store)
}

#[tokio::test]
async fn in_one_batch_a_conflicting_append_fails_alone() {
    let (_db, store) = store_with_workers(1).await;
    let existing = stream();
    store
        .append(&existing, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let (a, b) = (stream(), stream());
    let e = |n| {
        let e = event(n);
        (
            e.event_id,
            serde_json::to_value(e.metadata).unwrap(),
            e.data,
        )
    };
    let (e1, e2, e3) = (e(1), e(2), e(3));
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT outcome, stream_version FROM eventlog.append_batch($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(vec![a.clone(), existing.clone(), b.clone()])
    .bind(vec![Some(-1_i64), Some(-1), None])
    .bind(vec![1_i32, 1, 1])
    .bind(vec![e1.0, e2.0, e3.0])
    .bind(vec!["TaskTitleChanged"; 3])
    .bind(vec![1_i16; 3])
    .bind(vec![e1.2, e2.2, e3.2])
    .bind(vec![e1.1, e2.1, e3.1])
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("appended".to_owned(), Some(0)),
            ("conflict".to_owned(), Some(0)),
            ("appended".to_owned(), Some(0)),
        ]
    );
    assert_eq!(store.read_stream(&a, 0, None).await.unwrap().len(), 1);
    assert_eq!(store.read_stream(&b, 0, None).await.unwrap().len(), 1);
    assert_eq!(
        store.read_stream(&existing, 0, None).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn concurrent_appends_share_transactions_but_each_gets_its_own_position() {
    let (_db, store) = store_with_workers(2).await;
    let conflicting = stream();
    store
        .append(&conflicting, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let results = futures::future::join_all((0..64_u64).map(|i| {
        let store = &store;
        let conflicting = &conflicting;
        async move {
            if i % 8 == 0 {
                // Deliberately stale: must fail alone.
                store
                    .append(conflicting, ExpectedVersion::Exact(99), vec![event(i)])
                    .await
            } else {
                store
                    .append(
                        &stream(),
                        ExpectedVersion::NoStream,
                        vec![event(i), event(i)],
                    )
                    .await
            }
        }
    }))
    .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let conflicts = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StoreError::Conflict {
                    actual: Some(0),
                    ..
                })
            )
        })
        .count();
    assert_eq!((ok.len(), conflicts), (56, 8));

    let positions: HashSet<u64> = ok.iter().map(|o| o.position.commit).collect();
    assert_eq!(
        positions.len(),
        ok.len(),
        "two appends got the same position"
    );
    let transactions: HashSet<u64> = ok.iter().map(|o| o.position.commit >> 16).collect();
    assert!(
        transactions.len() < ok.len(),
        "no two appends shared a transaction: group commit did not happen"
    );

    // Along the log, each append's last event carries the position its ack said.
    // A log read stops below the server's oldest running transaction, which
    // tests running beside this one hold open for a moment: read until the
    // log is readable that far.
    let acked: HashSet<_> = ok.iter().map(|o| o.position).collect();
    let mut log = Vec::new();
    for _ in 0..600 {
        log = store.read_all(None, 10_000).await.unwrap();
        let in_log: HashSet<_> = log.iter().map(|e| e.position).collect();
        if acked.is_subset(&in_log) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let in_log: HashSet<_> = log.iter().map(|e| e.position).collect();
    assert!(
        acked.is_subset(&in_log),
        "acknowledged positions missing from the log"
    );
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
}

#[tokio::test]
async fn two_instances_racing_on_one_stream_let_exactly_one_win() {
    let (db, first) = store_with_workers(4).await;
    let second = PgEventStore::new(db.pool().clone());
    let s = stream();
    first
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    for round in 0..10_u64 {
        let attempts = (0..8).map(|i| {
            let store = if i % 2 == 0 { &first } else { &second };
            let s = &s;
            async move {
                store
                    .append(s, ExpectedVersion::Exact(round), vec![event(i)])
                    .await
            }
        });
        let results = futures::future::join_all(attempts).await;
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .filter(|r| r.is_err())
                .all(|r| matches!(r, Err(StoreError::Conflict { .. }))),
            "{results:?}"
        );
    }
    assert_eq!(first.read_stream(&s, 0, None).await.unwrap().len(), 11);
}

/// Appends notify after their commit (migration 0003): a subscriber that would
/// not poll for an hour still gets the event, woken by the notification.
#[tokio::test]
async fn a_subscriber_is_woken_by_the_notification_after_an_append() {
    use futures::StreamExt;

    let (_db, store) = store().await;
    let store = store.with_poll_interval(std::time::Duration::from_secs(3600));
    let mut sub = store.subscribe_all(None);
    let first = tokio::spawn(async move { sub.next().await });
    // Let the subscriber find the log empty and settle into waiting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let batch = tokio::time::timeout(std::time::Duration::from_secs(60), first)
        .await
        .expect("woken long before the hour-long poll")
        .unwrap()
        .expect("the subscription goes on")
        .unwrap();
    assert_eq!(batch[0].stream_id, s);
}

/// `writers` tasks, each appending `each` events one by one to new streams.
async fn append_concurrently(store: &PgEventStore, writers: usize, each: u64) {
    futures::future::join_all((0..writers).map(|_| {
        let store = store.clone();
        async move {
            for i in 0..each {
                store
                    .append(&stream(), ExpectedVersion::NoStream, vec![event(i)])
                    .await
                    .unwrap();
            }
        }
    }))
    .await;
}

/// The sizes of the batches a subscription yields until `total` events came.
async fn read_batches(sub: &mut tasklog_events::EventBatches, total: usize) -> Vec<usize> {
    use futures::StreamExt;
    let (mut seen, mut sizes) = (0, Vec::new());
    while seen < total {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(60), sub.next())
            .await
            .expect("every event arrives")
            .unwrap()
            .unwrap();
        seen += batch.len();
        sizes.push(batch.len());
    }
    sizes
}

/// A busy tail waits `READ_SPACING` (10 ms) between reads, so under a stream
/// of commits one read takes what several added instead of one read (and one
/// projection batch) per commit. Whatever the machine's speed: a read that
/// found 4 events or more (`BUSY_READ`) is followed by one at least 10 ms
/// after it began, so the bound below holds; one that found fewer lets the
/// next follow at once.
#[tokio::test]
async fn a_busy_tail_is_read_at_most_once_per_spacing() {
    let (_db, store) = store().await;
    let mut sub = store.subscribe_all(None);
    let started = std::time::Instant::now();
    let (_, sizes) = tokio::join!(
        append_concurrently(&store, 8, 25),
        read_batches(&mut sub, 200)
    );
    let took = started.elapsed();
    let batches = sizes.len() as u128;
    let quiet = sizes.iter().filter(|&&n| n < 4).count() as u128;
    let bound = took.as_millis() / 10 + 1 + quiet;
    assert!(
        batches <= bound,
        "{batches} reads found events within {took:?} ({quiet} of them fewer than 4): \
         more than one busy read per 10 ms"
    );
}

/// The group commit's workers share one NOTIFY in flight: a commit that asks
/// while one is in flight is covered by the next. Every commit must still be
/// followed by a NOTIFY, or a subscriber that does not poll would miss the
/// last events.
#[tokio::test]
async fn concurrent_appends_all_reach_a_subscriber_that_never_polls() {
    let (_db, store) = store().await;
    let store = store.with_poll_interval(std::time::Duration::from_secs(3600));
    let mut sub = store.subscribe_all(None);
    let (_, sizes) = tokio::join!(
        append_concurrently(&store, 8, 25),
        read_batches(&mut sub, 200)
    );
    assert_eq!(sizes.iter().sum::<usize>(), 200);
}

/// Statements prepared on the pool's one connection that read stream heads
/// for a batch of changes (append.rs, `SET_BASED`).
async fn kept_change_plans(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_prepared_statements \
         WHERE statement LIKE '%refused AS%' AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_batch_of_changes_keeps_its_plan_only_once_the_log_holds_enough_events() {
    let db = TestDb::new().await.expect("test database");
    // One connection: the statements the appends prepared are on it.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await
        .unwrap();
    let store = PgEventStore::new(pool.clone()).with_group_commit(GroupCommitSettings {
        workers: 1,
        keep_plan_after: 15,
        ..GroupCommitSettings::default()
    });
    store.migrate().await.unwrap();
    let streams: Vec<String> = (0..10).map(|_| stream()).collect();
    for s in &streams {
        store
            .append(s, ExpectedVersion::NoStream, vec![event(0)])
            .await
            .unwrap();
    }
    // Given 10 events, when 4 changes are appended, then none kept a plan.
    for s in &streams[..4] {
        let done = store
            .append(s, ExpectedVersion::Exact(0), vec![event(1)])
            .await
            .unwrap();
        assert_eq!(done.version, 1);
    }
    assert_eq!(kept_change_plans(&pool).await, 0);
    // The fifth brings the log to 15 events; the change after it keeps a plan.
    for s in &streams[4..6] {
        store
            .append(s, ExpectedVersion::Exact(0), vec![event(1)])
            .await
            .unwrap();
    }
    assert_eq!(kept_change_plans(&pool).await, 1);
    // With the plan kept, a stale expectation is still refused and a good one
    // still appended.
    let stale = store
        .append(&streams[0], ExpectedVersion::Exact(0), vec![event(2)])
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    let done = store
        .append(&streams[0], ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    assert_eq!(
        store.read_stream(&streams[0], 0, None).await.unwrap().len(),
        3
    );
}
