//! The shared tail keeps the whole event-store contract (the suite runs
//! against it over real Postgres), and each of several subscribers sees the
//! whole log once, in order, whether it starts old, joins late or falls
//! behind what the channel holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

mod contract;

use std::sync::Arc;
use std::time::Duration;

use contract::{Harness, event, stream};
use futures::StreamExt;
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::store::shared::SharedTail;
use tasklog_events::{EventBatches, EventStore, ExpectedVersion, Position, RecordedEvent};
use tasklog_platform::testing::TestDb;

async fn shared() -> Option<Harness> {
    let (db, store) = postgres().await;
    Some(Harness {
        store: Arc::new(SharedTail::new(store)),
        _guard: Box::new(db),
    })
}

async fn postgres() -> (TestDb, Arc<dyn EventStore>) {
    let db = TestDb::new().await.expect("test database");
    let store = PgEventStore::new(db.pool().clone());
    store.migrate().await.expect("migrate the event log");
    (db, Arc::new(store))
}

contract_suite!(shared);
contract_suite_log_wide_ids!(shared);

/// Appends `n` single-event commits to fresh streams; returns their ids in order.
async fn append_n(store: &dyn EventStore, n: usize) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    for i in 0..n {
        let e = event(i as u64);
        ids.push(e.event_id);
        store
            .append(&stream(), ExpectedVersion::NoStream, vec![e])
            .await
            .unwrap();
    }
    ids
}

/// Reads `sub` until `want` events came (or 30 s passed); `pause` between
/// batches makes a slow subscriber.
async fn take(sub: &mut EventBatches, want: usize, pause: Duration) -> Vec<RecordedEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(batch))) => seen.extend(batch),
            Ok(Some(Err(e))) => panic!("subscription error: {e}"),
            Ok(None) | Err(_) => break,
        }
        tokio::time::sleep(pause).await;
    }
    seen
}

fn ids(events: &[RecordedEvent]) -> Vec<uuid::Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

/// Equal, or a message naming the first difference (repeat or gap).
fn same(seen: &[RecordedEvent], want: &[uuid::Uuid], who: &str) {
    let got = ids(seen);
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{who}: {} events seen, {} wanted, first difference at {at:?}; seen positions {:?}",
            got.len(),
            want.len(),
            seen.iter()
                .map(|e| (e.position.commit >> 16, e.position.prepare))
                .collect::<Vec<_>>()
        );
    }
}

fn in_order(events: &[RecordedEvent]) -> bool {
    events.windows(2).all(|w| w[0].position < w[1].position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_old_new_late_and_slow_each_see_every_event_once_in_order() {
    let (_db, inner) = postgres().await;
    let shared = SharedTail::new(inner.clone());
    let before = append_n(inner.as_ref(), 40).await;
    // The 10th event's position. Other tests' transactions on the server can
    // hold the visible log back for a moment, so read until 10 are visible.
    let middle: Option<Position> = loop {
        let page = inner.read_all(None, 10).await.unwrap();
        if page.len() >= 10 {
            break Some(page[9].position);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // From the start, from the middle, and slow (its batches pile up far past
    // what the channel holds, so it must read its gaps from the log).
    let mut from_start = shared.subscribe_all(None);
    let mut from_middle = shared.subscribe_all(middle);
    let mut slow = shared.subscribe_all(None);

    let during = {
        let inner = inner.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..200 {
                ids.extend(append_n(inner.as_ref(), 1).await);
            }
            ids
        })
    };
    // Joins while the writes go on.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut late = shared.subscribe_all(None);

    let (all_start, all_middle, all_late) = tokio::join!(
        take(&mut from_start, 240, Duration::ZERO),
        take(&mut from_middle, 230, Duration::ZERO),
        take(&mut late, 240, Duration::ZERO),
    );
    let all_slow = take(&mut slow, 240, Duration::from_millis(5)).await;
    let during = during.await.unwrap();
    let everything: Vec<_> = before.iter().chain(&during).copied().collect();

    same(&all_start, &everything, "from the start");
    same(&all_middle, &everything[10..], "from the middle");
    same(&all_late, &everything, "joined late");
    same(&all_slow, &everything, "slow");
    for seen in [&all_start, &all_middle, &all_late, &all_slow] {
        assert!(in_order(seen));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_behind_the_tail_catches_up_without_any_new_write() {
    let (_db, inner) = postgres().await;
    let shared = SharedTail::new(inner.clone());
    let first = append_n(inner.as_ref(), 5).await;
    // A subscriber at the head starts the tail there.
    let head = inner.head().await.unwrap();
    let _current = shared.subscribe_all(head);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One from the start joins the running tail; no write follows, so only
    // where the tail stands tells it what to read.
    let mut behind = shared.subscribe_all(None);
    let seen = take(&mut behind, 5, Duration::ZERO).await;
    assert_eq!(ids(&seen), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_after_the_last_one_left_sees_every_event_after_its_position() {
    let (_db, inner) = postgres().await;
    let shared = SharedTail::new(inner.clone());
    let mut first = shared.subscribe_all(None);
    let a = append_n(inner.as_ref(), 3).await;
    assert_eq!(ids(&take(&mut first, 3, Duration::ZERO).await), a);
    let reached = inner.head().await.unwrap();
    drop(first);
    // The tail notices at its next batch that nobody listens.
    let b = append_n(inner.as_ref(), 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = append_n(inner.as_ref(), 2).await;
    let mut second = shared.subscribe_all(reached);
    let want: Vec<_> = b.iter().chain(&c).copied().collect();
    assert_eq!(ids(&take(&mut second, 4, Duration::ZERO).await), want);
}
