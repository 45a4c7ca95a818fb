//! The `EventStore` contract, written once and run against every adapter.
//!
//! Adapters may share a server with other tests (EventStoreDB), so every case
//! writes to fresh random streams and only counts events of its own streams.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tasklog_events::{
    AppendOutcome, EventStore, ExpectedVersion, Metadata, NewEvent, Position, RecordedEvent,
    StoreError,
};
use uuid::Uuid;

/// An adapter under test, with whatever must live as long as it (a database).
pub struct Harness {
    pub store: Arc<dyn EventStore>,
    pub _guard: Box<dyn std::any::Any + Send>,
}

/// Generates one `#[tokio::test]` per contract case for an adapter.
/// `$make` is an async fn returning `Option<Harness>` (`None`: skip).
#[macro_export]
macro_rules! contract_suite {
    ($make:path) => {
        $crate::contract_suite!(@cases $make;
            appending_to_a_new_stream_starts_at_version_zero,
            a_batch_gets_consecutive_versions_and_one_position_per_event,
            a_version_mismatch_is_a_conflict_carrying_the_actual_version,
            a_conflicting_batch_writes_nothing,
            any_appends_at_the_end,
            an_empty_append_is_refused,
            re_appending_stored_ids_returns_the_first_result_and_writes_nothing,
            half_known_ids_are_an_idempotency_mismatch,
            concurrent_exact_appends_to_one_stream_let_exactly_one_win,
            streams_read_from_a_version_and_up_to_an_instant,
            read_all_returns_log_order_and_resumes_after_a_position,
            a_subscription_catches_up_then_goes_live,
            a_subscription_resumes_from_a_checkpoint_without_repeats,
            concurrent_appenders_are_seen_exactly_once_in_order,
            head_is_the_last_position,
            events_after_a_position_are_counted_up_to_the_cap,
            the_stretches_between_split_points_hold_every_event_once,
        );
    };
    (@cases $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(h) = $make().await else { return };
                $crate::contract::$case(&*h.store).await;
            }
        )+
    };
}

/// The clauses that need a log-wide index of event ids (an id stored under one
/// stream is refused under another). Adapters that have one run these too.
#[macro_export]
macro_rules! contract_suite_log_wide_ids {
    ($make:path) => {
        $crate::contract_suite!(@cases $make;
            a_known_id_under_another_stream_is_an_idempotency_mismatch,
        );
    };
}

/// How many of `results` appended, and how many lost to a stream found at
/// version `actual`.
pub fn wins_and_conflicts(
    results: &[Result<AppendOutcome, StoreError>],
    actual: u64,
) -> (usize, usize) {
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict { actual: Some(v), .. }) if v == &actual))
        .count();
    (wins, conflicts)
}

pub fn stream() -> String {
    format!("task-{}", Uuid::now_v7())
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TaskTitleChanged".into(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: Metadata {
            actor_id: Some(Uuid::new_v4()),
            owner_id: None,
            request_id: Some(format!("req-{n}")),
            causation_id: None,
            reverted_to: None,
        },
    }
}

fn events(n: u64) -> Vec<NewEvent> {
    (0..n).map(event).collect()
}

/// Reads the subscription until `want` events of `streams` arrived (or times out).
async fn collect(
    store: &dyn EventStore,
    after: Option<Position>,
    streams: &HashSet<String>,
    want: usize,
    timeout: Duration,
) -> Vec<RecordedEvent> {
    let mut sub = store.subscribe_all(after);
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < want {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(batch))) => {
                seen.extend(batch.into_iter().filter(|e| streams.contains(&e.stream_id)));
            }
            Ok(Some(Err(e))) => panic!("subscription error: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

pub async fn appending_to_a_new_stream_starts_at_version_zero(store: &dyn EventStore) {
    let s = stream();
    let out = store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(out.version, 0);
    assert!(!out.duplicate);
    let read = store.read_stream(&s, 0, None).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].version, 0);
    assert_eq!(read[0].position, out.position);
    assert_eq!(read[0].data, json!({"n": 0}));
    assert_eq!(read[0].metadata.request_id.as_deref(), Some("req-0"));
}

pub async fn a_batch_gets_consecutive_versions_and_one_position_per_event(store: &dyn EventStore) {
    let s = stream();
    let out = store
        .append(&s, ExpectedVersion::NoStream, events(5))
        .await
        .unwrap();
    assert_eq!(out.version, 4);
    let read = store.read_stream(&s, 0, None).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    let positions: Vec<Position> = read.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(*positions.last().unwrap(), out.position);
}

pub async fn a_version_mismatch_is_a_conflict_carrying_the_actual_version(store: &dyn EventStore) {
    let s = stream();
    let missing = store
        .append(&s, ExpectedVersion::Exact(0), vec![event(0)])
        .await;
    assert!(
        matches!(missing, Err(StoreError::Conflict { actual: None, .. })),
        "{missing:?}"
    );
    store
        .append(&s, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let exists = store
        .append(&s, ExpectedVersion::NoStream, vec![event(9)])
        .await;
    assert!(
        matches!(
            exists,
            Err(StoreError::Conflict {
                actual: Some(1),
                expected: ExpectedVersion::NoStream
            })
        ),
        "{exists:?}"
    );
    let stale = store
        .append(&s, ExpectedVersion::Exact(0), vec![event(9)])
        .await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                actual: Some(1),
                expected: ExpectedVersion::Exact(0)
            })
        ),
        "{stale:?}"
    );
    let ok = store
        .append(&s, ExpectedVersion::Exact(1), vec![event(2)])
        .await
        .unwrap();
    assert_eq!(ok.version, 2);
}

pub async fn a_conflicting_batch_writes_nothing(store: &dyn EventStore) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let err = store.append(&s, ExpectedVersion::Exact(7), events(3)).await;
    assert!(matches!(err, Err(StoreError::Conflict { .. })));
    assert_eq!(store.read_stream(&s, 0, None).await.unwrap().len(), 1);
}

pub async fn any_appends_at_the_end(store: &dyn EventStore) {
    let s = stream();
    let first = store
        .append(&s, ExpectedVersion::Any, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(first.version, 0);
    let second = store
        .append(&s, ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(second.position > first.position);
}

pub async fn an_empty_append_is_refused(store: &dyn EventStore) {
    let err = store.append(&stream(), ExpectedVersion::Any, vec![]).await;
    assert!(matches!(err, Err(StoreError::EmptyAppend)), "{err:?}");
}

pub async fn re_appending_stored_ids_returns_the_first_result_and_writes_nothing(
    store: &dyn EventStore,
) {
    let s = stream();
    let batch = events(3);
    let first = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // A retry carries the same expected version and ids; it must not conflict.
    let again = store
        .append(&s, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        (again.version, again.position),
        (first.version, first.position)
    );
    // Also when others have appended since: the retry still carries the
    // expected version of the first attempt.
    store
        .append(&s, ExpectedVersion::Any, vec![event(3)])
        .await
        .unwrap();
    let late = store
        .append(&s, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    assert_eq!(
        (late.version, late.position),
        (first.version, first.position)
    );
    assert_eq!(store.read_stream(&s, 0, None).await.unwrap().len(), 4);
}

pub async fn half_known_ids_are_an_idempotency_mismatch(store: &dyn EventStore) {
    let s = stream();
    let known = event(0);
    store
        .append(&s, ExpectedVersion::NoStream, vec![known.clone()])
        .await
        .unwrap();
    let mixed = store
        .append(&s, ExpectedVersion::Any, vec![known, event(1)])
        .await;
    assert!(
        matches!(mixed, Err(StoreError::IdempotencyMismatch)),
        "{mixed:?}"
    );
    assert_eq!(store.read_stream(&s, 0, None).await.unwrap().len(), 1);
}

/// Rule 2 across streams: needs a log-wide index of event ids, which Postgres
/// has and EventStoreDB (ids are checked per stream) has not; see
/// `contract_suite_log_wide_ids!`.
pub async fn a_known_id_under_another_stream_is_an_idempotency_mismatch(store: &dyn EventStore) {
    let s = stream();
    let known = event(0);
    store
        .append(&s, ExpectedVersion::NoStream, vec![known.clone()])
        .await
        .unwrap();
    let other = stream();
    let elsewhere = store
        .append(&other, ExpectedVersion::Any, vec![known])
        .await;
    assert!(
        matches!(elsewhere, Err(StoreError::IdempotencyMismatch)),
        "{elsewhere:?}"
    );
    assert!(store.read_stream(&other, 0, None).await.unwrap().is_empty());
}

pub async fn concurrent_exact_appends_to_one_stream_let_exactly_one_win(store: &dyn EventStore) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    let attempts = (0..16).map(|i| {
        let s = s.clone();
        async move {
            store
                .append(&s, ExpectedVersion::Exact(0), vec![event(i)])
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(wins_and_conflicts(&results, 1), (1, 15), "{results:?}");
    assert_eq!(store.read_stream(&s, 0, None).await.unwrap().len(), 2);
}

pub async fn streams_read_from_a_version_and_up_to_an_instant(store: &dyn EventStore) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = store.read_stream(&s, 0, None).await.unwrap()[2].recorded_at;
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(&s, ExpectedVersion::Exact(2), events(2))
        .await
        .unwrap();

    let from_two = store.read_stream(&s, 2, None).await.unwrap();
    assert_eq!(
        from_two.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let until = store.read_stream(&s, 0, Some(cut)).await.unwrap();
    assert_eq!(until.len(), 3);
    assert!(
        store
            .read_stream(&stream(), 0, None)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn read_all_returns_log_order_and_resumes_after_a_position(store: &dyn EventStore) {
    let (a, b) = (stream(), stream());
    let streams: HashSet<String> = [a.clone(), b.clone()].into();
    store
        .append(&a, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    store
        .append(&b, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let mut mine = Vec::new();
    let mut after = None;
    // Page up to the head rather than to the first empty page: an adapter may
    // hold back fresh commits for a moment (Postgres, while any transaction on
    // the server is still running), and an empty page then means "not yet".
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while after < head && tokio::time::Instant::now() < deadline {
        let page = store.read_all(after, 2).await.unwrap();
        let Some(last) = page.last() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        after = Some(last.position);
        mine.extend(page.into_iter().filter(|e| streams.contains(&e.stream_id)));
    }
    let got: Vec<(String, u64)> = mine
        .iter()
        .map(|e| (e.stream_id.clone(), e.version))
        .collect();
    let want: Vec<(String, u64)> = [(&a, 0), (&a, 1), (&a, 2), (&b, 0), (&b, 1)]
        .into_iter()
        .map(|(s, v)| (s.clone(), v))
        .collect();
    assert_eq!(got, want);
    assert!(mine.windows(2).all(|w| w[0].position < w[1].position));
}

pub async fn a_subscription_catches_up_then_goes_live(store: &dyn EventStore) {
    let s = stream();
    let streams: HashSet<String> = [s.clone()].into();
    store
        .append(&s, ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    let reader = collect(store, None, &streams, 5, Duration::from_secs(10));
    let writer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        store
            .append(&s, ExpectedVersion::Exact(2), events(2))
            .await
            .unwrap()
    };
    let (seen, _) = tokio::join!(reader, writer);
    assert_eq!(
        seen.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
}

pub async fn a_subscription_resumes_from_a_checkpoint_without_repeats(store: &dyn EventStore) {
    let s = stream();
    let streams: HashSet<String> = [s.clone()].into();
    for i in 0..6 {
        store
            .append(&s, ExpectedVersion::Any, vec![event(i)])
            .await
            .unwrap();
    }
    let all = collect(store, None, &streams, 6, Duration::from_secs(10)).await;
    assert_eq!(all.len(), 6);
    let checkpoint = all[2].position;
    let rest = collect(
        store,
        Some(checkpoint),
        &streams,
        3,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        rest.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    // Nothing more arrives after the three.
    let more = collect(
        store,
        Some(rest[2].position),
        &streams,
        1,
        Duration::from_millis(700),
    )
    .await;
    assert!(more.is_empty(), "{more:?}");
}

/// DESIGN.md rule 3: many writers commit concurrently while one subscriber
/// tails; it must see every event exactly once, in log order.
pub async fn concurrent_appenders_are_seen_exactly_once_in_order(store: &dyn EventStore) {
    const WRITERS: usize = 16;
    const APPENDS_EACH: usize = 150;
    let streams: Vec<String> = (0..WRITERS * 5).map(|_| stream()).collect();
    let own: HashSet<String> = streams.iter().cloned().collect();
    let expected_total = WRITERS * APPENDS_EACH * 2; // every append carries two events

    let reader = collect(store, None, &own, expected_total, Duration::from_secs(120));
    let writers = futures::future::join_all((0..WRITERS).map(|w| {
        let streams = &streams;
        async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS_EACH {
                let s = &streams[(w * 5) + (i % 5)];
                let batch = vec![event(i as u64), event(i as u64)];
                ids.extend(batch.iter().map(|e| e.event_id));
                store.append(s, ExpectedVersion::Any, batch).await.unwrap();
            }
            ids
        }
    }));
    let (seen, written) = tokio::join!(reader, writers);
    let written: HashSet<Uuid> = written.into_iter().flatten().collect();
    assert_eq!(written.len(), expected_total);

    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for e in &seen {
        *counts.entry(e.event_id).or_default() += 1;
    }
    let missing = written.iter().filter(|id| !counts.contains_key(id)).count();
    let repeated = counts.values().filter(|&&c| c > 1).count();
    assert_eq!((missing, repeated), (0, 0), "missing or repeated events");
    assert_eq!(seen.len(), expected_total);
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "subscriber saw positions out of order"
    );
    // Within each stream, versions arrive in order with no hole.
    let mut next: HashMap<&str, u64> = HashMap::new();
    for e in &seen {
        let n = next.entry(e.stream_id.as_str()).or_default();
        assert_eq!(e.version, *n, "stream {} out of order", e.stream_id);
        *n += 1;
    }
}

pub async fn head_is_the_last_position(store: &dyn EventStore) {
    let s = stream();
    let out = store
        .append(&s, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let head = store.head().await.unwrap().unwrap();
    assert!(head >= out.position);
    store.ping().await.unwrap();
}

pub async fn events_after_a_position_are_counted_up_to_the_cap(store: &dyn EventStore) {
    let s = stream();
    let first = store
        .append(&s, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    for version in 0..4 {
        store
            .append(&s, ExpectedVersion::Exact(version), events(1))
            .await
            .unwrap();
    }
    // Other tests may share the server: at least our four follow.
    let (behind, capped) = store
        .count_after(Some(first.position), 1_000)
        .await
        .unwrap();
    assert!(behind >= 4, "{behind}");
    assert!(!capped || behind == 1_000);
    assert_eq!(
        store.count_after(Some(first.position), 2).await.unwrap(),
        (2, true)
    );
    if let Some(len) = store.approximate_len().await.unwrap() {
        assert!(len >= 5, "{len}");
    }
}

/// Every event up to `until`, read page by page after `after`.
async fn read_until(
    store: &dyn EventStore,
    mut after: Option<Position>,
    until: Position,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    while after < Some(until) {
        let page = store.read_all(after, 3).await.unwrap();
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        after = Some(last);
        out.extend(page.into_iter().filter(|e| e.position <= until));
    }
    out
}

/// Waits until a whole-log read reaches `head`. A log read stops below the
/// oldest transaction still running on the server, and tests sharing the
/// server keep short ones open, so the tail can lag for a moment.
async fn readable_up_to(store: &dyn EventStore, head: Position) {
    for _ in 0..600 {
        let seen = read_until(store, None, head).await;
        if seen.last().map(|e| e.position) == Some(head) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log never became readable up to {head:?}");
}

pub async fn the_stretches_between_split_points_hold_every_event_once(store: &dyn EventStore) {
    let s = stream();
    store
        .append(&s, ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    for version in 1..8 {
        store
            .append(&s, ExpectedVersion::Exact(version), events(1))
            .await
            .unwrap();
    }
    let head = store.head().await.unwrap().unwrap();
    readable_up_to(store, head).await;
    let first = store.read_all(None, 1).await.unwrap()[0].position;
    let cuts = store.split_points(first, head, 4);
    assert!(cuts.windows(2).all(|w| w[0] < w[1]), "{cuts:?}");
    assert!(cuts.iter().all(|c| first <= *c && *c < head), "{cuts:?}");
    if cuts.is_empty() {
        // This adapter replays in one stretch (and may share a large log).
        return;
    }
    let whole: Vec<Uuid> = read_until(store, None, head)
        .await
        .iter()
        .map(|e| e.event_id)
        .collect();
    let mut stretched = Vec::new();
    let mut after = None;
    for until in cuts.iter().copied().chain([head]) {
        stretched.extend(
            read_until(store, after, until)
                .await
                .iter()
                .map(|e| e.event_id),
        );
        after = Some(until);
    }
    assert_eq!(stretched, whole);
}
