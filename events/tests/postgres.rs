//! The event-store contract and the Postgres-specific guarantees, against a
//! real Postgres (a fresh database per test).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

mod contract;

use std::sync::Arc;

use contract::{Harness, event, stream};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::{EventStore, ExpectedVersion, Position};
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
