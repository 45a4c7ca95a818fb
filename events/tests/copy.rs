//! Copying a log into another, Postgres to Postgres (the EventStoreDB side of a
//! migration uses the same trait): every stream, version and event id arrives,
//! an interrupted copy resumes without duplicates, and a diverged target is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

#[allow(dead_code)] // only its event builders are used here
mod contract;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use contract::{event, stream};
use tasklog_events::store::copy::{CopyError, CopyProgress, copy_log};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

async fn store() -> (TestDb, PgEventStore) {
    let db = TestDb::new().await.expect("test database");
    let store = PgEventStore::new(db.pool().clone());
    store.migrate().await.expect("migrate the event log");
    (db, store)
}

/// Every stream of a log as the contract's reads see it: (version, id, type, data, metadata).
type Streams = BTreeMap<String, Vec<(u64, Uuid, String, serde_json::Value, String)>>;

async fn streams(store: &dyn EventStore) -> Streams {
    let mut names = Vec::new();
    let mut after = None;
    // Up to the head: Postgres may hold back the newest commits for a moment
    // while other transactions on the server run.
    let head = store.head().await.unwrap();
    while after < head {
        let page = store.read_all(after, 7).await.unwrap();
        if let Some(last) = page.last() {
            after = Some(last.position);
        }
        names.extend(page.into_iter().map(|e| e.stream_id));
    }
    names.sort();
    names.dedup();
    let mut out = Streams::new();
    for name in names {
        let events: Vec<RecordedEvent> = store.read_stream(&name, 0, None).await.unwrap();
        out.insert(
            name,
            events
                .into_iter()
                .map(|e| {
                    (
                        e.version,
                        e.event_id,
                        e.event_type,
                        e.data,
                        format!("{:?}/{}", e.metadata, e.schema_version),
                    )
                })
                .collect(),
        );
    }
    out
}

/// A source log with interleaved streams and multi-event commits; returns the
/// event count and the first stream written.
async fn fill(source: &dyn EventStore) -> (usize, String) {
    let (a, b, c) = (stream(), stream(), stream());
    let mut n = 0;
    for (s, expected, count) in [
        (&a, ExpectedVersion::NoStream, 3),
        (&b, ExpectedVersion::NoStream, 1),
        (&a, ExpectedVersion::Exact(2), 2),
        (&c, ExpectedVersion::NoStream, 4),
        (&b, ExpectedVersion::Exact(0), 1),
    ] {
        let events = (0..count).map(|i| event(n as u64 + i)).collect();
        source.append(s, expected, events).await.unwrap();
        n += count as usize;
    }
    (n, a)
}

#[tokio::test]
async fn a_copy_holds_the_same_streams_versions_and_ids() {
    let ((_a, source), (_b, target)) = (store().await, store().await);
    let (total, _) = fill(&source).await;
    let mut reports = Vec::new();
    let done = copy_log(&source, &target, None, |p: &CopyProgress| reports.push(*p))
        .await
        .unwrap();
    assert_eq!((done.copied, done.already_there), (total as u64, 0));
    assert_eq!(reports.len(), 5, "one report per original append");
    assert!(reports.windows(2).all(|w| w[0].copied < w[1].copied));
    assert_eq!(done.position, source.head().await.unwrap());
    assert_eq!(streams(&target).await, streams(&source).await);
}

/// A target that goes away after `left` appends: an interrupted copy.
struct GoesAway<'a> {
    inner: &'a PgEventStore,
    left: AtomicUsize,
}

#[async_trait]
impl EventStore for GoesAway<'static> {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if self
            .left
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(StoreError::unavailable(std::io::Error::other("gone")));
        }
        self.inner.append(stream_id, expected, events).await
    }
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream_id, from_version, until).await
    }
    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }
    fn subscribe_all(&self, after: Option<Position>) -> EventBatches {
        self.inner.subscribe_all(after)
    }
    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn an_interrupted_copy_resumes_without_duplicates() {
    let ((_a, source), (_b, target)) = (store().await, store().await);
    let (total, _) = fill(&source).await;
    // 'static for the wrapper: the test owns the store until it ends.
    let target: &'static PgEventStore = Box::leak(Box::new(target));

    let flaky = GoesAway {
        inner: target,
        left: AtomicUsize::new(2),
    };
    let mut reached = CopyProgress::default();
    let err = copy_log(&source, &flaky, None, |p: &CopyProgress| reached = *p)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CopyError::Target(StoreError::Unavailable(_))),
        "{err}"
    );
    assert_eq!(reached.copied, 4, "a's first commit (3) and b's first (1)");

    // Re-run from the start: the two copied commits are recognised, not rewritten.
    let again = copy_log(&source, target, None, |_| {}).await.unwrap();
    assert_eq!((again.already_there, again.copied), (4, total as u64 - 4));
    assert_eq!(streams(target).await, streams(&source).await);
    let stored: usize = streams(target).await.values().map(Vec::len).sum();
    assert_eq!(stored, total, "no event stored twice");

    // Resuming from the last reported position reads only what follows it.
    let tail = copy_log(&source, target, reached.position, |_| {})
        .await
        .unwrap();
    assert_eq!((tail.already_there, tail.copied), (total as u64 - 4, 0));
}

#[tokio::test]
async fn a_target_holding_other_events_is_refused() {
    let ((_a, source), (_b, target)) = (store().await, store().await);
    let (_, first) = fill(&source).await;
    // The target already has a different event where the source's first one goes.
    target
        .append(&first, ExpectedVersion::NoStream, vec![event(99)])
        .await
        .unwrap();
    let err = copy_log(&source, &target, None, |_| {}).await.unwrap_err();
    assert!(
        matches!(&err, CopyError::Diverged { stream_id, version: 0, .. } if *stream_id == first),
        "{err}"
    );
}
