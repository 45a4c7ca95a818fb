//! Group commit when things go wrong: a commit whose reply is lost, a batch
//! whose backend is terminated while connections are refused, twin appends
//! racing, and a batch larger than an append's number in its transaction can
//! hold. Against a real Postgres, through a TCP proxy where a fault is needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

#[allow(dead_code)] // only its event builders are used here
mod contract;

use std::sync::Arc;
use std::time::Duration;

use contract::{event, stream, wins_and_conflicts};
use sqlx::postgres::{PgPoolOptions, PgSslMode};
use sqlx::{PgPool, Row};
use tasklog_events::store::postgres::{GroupCommitSettings, PgEventStore};
use tasklog_events::{EventStore, ExpectedVersion, NewEvent, StoreError};
use tasklog_platform::testing::{TcpProxy, TestDb};
use tokio::time::Instant;

/// A log whose pool reaches Postgres through a proxy the test controls.
struct Proxied {
    db: TestDb,
    proxy: TcpProxy,
    store: Arc<PgEventStore>,
}

async fn proxied(settings: GroupCommitSettings, acquire_timeout: Duration) -> Proxied {
    let db = TestDb::new().await.expect("test database");
    PgEventStore::new(db.pool().clone())
        .migrate()
        .await
        .expect("migrate the event log");
    let (proxy, through) = db.behind_proxy(true).await.unwrap();
    // Plain text: the proxy reads the protocol's frames.
    let options = through.ssl_mode(PgSslMode::Disable);
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(settings.workers).unwrap())
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options);
    let store = Arc::new(PgEventStore::new(pool).with_group_commit(settings));
    Proxied { db, proxy, store }
}

fn one_worker(settle_within: Duration) -> GroupCommitSettings {
    GroupCommitSettings {
        workers: 1,
        max_batch: 128,
        settle_within,
        ..GroupCommitSettings::default()
    }
}

async fn stored_ids(pool: &PgPool, stream_id: &str) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT event_id FROM eventlog.events WHERE stream_id = $1 ORDER BY version")
        .bind(stream_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Calls `eventlog.append_batch` as the adapter does, on `conn`.
async fn append_batch_sql<'c>(
    conn: impl sqlx::PgExecutor<'c>,
    appends: &[(&str, Option<i64>, &[NewEvent])],
) -> Result<Vec<sqlx::postgres::PgRow>, sqlx::Error> {
    let events = appends.iter().flat_map(|(_, _, e)| e.iter());
    sqlx::query("SELECT * FROM eventlog.append_batch($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(appends.iter().map(|a| a.0).collect::<Vec<_>>())
        .bind(appends.iter().map(|a| a.1).collect::<Vec<_>>())
        .bind(
            appends
                .iter()
                .map(|a| i32::try_from(a.2.len()).unwrap())
                .collect::<Vec<_>>(),
        )
        .bind(events.clone().map(|e| e.event_id).collect::<Vec<_>>())
        .bind(
            events
                .clone()
                .map(|e| e.event_type.clone())
                .collect::<Vec<_>>(),
        )
        .bind(events.clone().map(|e| e.schema_version).collect::<Vec<_>>())
        .bind(events.clone().map(|e| e.data.clone()).collect::<Vec<_>>())
        .bind(
            events
                .map(|e| serde_json::to_value(&e.metadata).unwrap())
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await
}

/// The server commits, the connection is cut before its reply: each caller
/// gets its append's real outcome (its events are stored), not "unavailable",
/// so a retried create does not make a second task and a retried
/// conditional change does not meet its own write as a conflict.
#[tokio::test]
async fn a_commit_whose_reply_is_lost_is_answered_with_its_real_outcome() {
    let log = proxied(one_worker(Duration::from_secs(10)), Duration::from_secs(5)).await;
    let store = log.store.clone();
    let changed = stream();
    let first = store
        .append(&changed, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(first.version, 0);

    log.proxy.cut_after_next_command_complete();
    let created = stream();
    let (create, change) = (vec![event(1)], vec![event(2), event(3)]);
    let (got_create, got_change) = tokio::join!(
        store.append(&created, ExpectedVersion::NoStream, create.clone()),
        store.append(&changed, ExpectedVersion::Exact(0), change.clone()),
    );
    assert!(!log.proxy.cut_pending(), "the connection was never cut");

    let got_create = got_create.expect("a committed create is not a failure");
    let got_change = got_change.expect("a committed change is not a failure");
    assert_eq!(got_create.version, 0);
    assert_eq!(got_change.version, 2);
    let pool = log.db.pool();
    assert_eq!(stored_ids(pool, &created).await, vec![create[0].event_id]);
    assert_eq!(
        stored_ids(pool, &changed).await,
        vec![
            first_id(&store, &changed).await,
            change[0].event_id,
            change[1].event_id
        ]
    );
    // The positions answered are where the events are.
    let last = store.read_stream(&changed, 2, None).await.unwrap();
    assert_eq!(last[0].position, got_change.position);
}

async fn first_id(store: &PgEventStore, stream_id: &str) -> uuid::Uuid {
    store.read_stream(stream_id, 0, None).await.unwrap()[0].event_id
}

/// A batch blocked on a lock, new connections refused, then the worker's
/// backend terminated: every caller still waiting is answered within the
/// settle bound, and nothing is written for the callers that gave up, even
/// once Postgres can be reached again.
#[tokio::test]
async fn a_failed_batch_answers_its_callers_in_time_and_writes_nothing_for_those_who_left() {
    let settle_within = Duration::from_secs(1);
    let log = proxied(one_worker(settle_within), Duration::from_millis(500)).await;
    let warm = stream();
    log.store
        .append(&warm, ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();

    // Appends read the log, then wait here to insert.
    let mut blocker = log.db.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE eventlog.events IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();

    // Spawned back to back, they reach the single worker as one batch.
    let streams: Vec<String> = (0..16).map(|_| stream()).collect();
    let mut impatient = Vec::new();
    let mut patient = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let (store, s) = (log.store.clone(), s.clone());
        let append = async move {
            store
                .append(&s, ExpectedVersion::NoStream, vec![event(0)])
                .await
        };
        if i % 2 == 0 {
            impatient.push(tokio::spawn(tokio::time::timeout(
                Duration::from_millis(300),
                append,
            )));
        } else {
            patient.push(tokio::spawn(async move {
                let result = append.await;
                (result, Instant::now())
            }));
        }
    }

    let worker = wait_for_lock_waiter(log.db.pool()).await;
    for caller in impatient {
        assert!(caller.await.unwrap().is_err(), "the batch was not blocked");
    }
    log.proxy.refuse_new();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(worker)
        .fetch_one(log.db.pool())
        .await
        .unwrap();
    assert!(terminated);
    let cut_at = Instant::now();
    blocker.rollback().await.unwrap();

    // Answered by then, or counted late; the proxy comes back either way so
    // that a fallback still running would write what it still holds.
    let bound = settle_within * 3;
    let mut late = 0;
    let mut answers = Vec::new();
    for caller in patient {
        let mut caller = caller;
        match tokio::time::timeout_at(cut_at + bound, &mut caller).await {
            Ok(answer) => answers.push(answer.unwrap()),
            Err(_) => {
                late += 1;
                log.proxy.up();
                answers.push(caller.await.unwrap());
            }
        }
    }
    log.proxy.up();
    // The single worker answers this only after the blocked batch is done.
    log.store
        .append(&stream(), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .expect("the log works again");

    let pool = log.db.pool();
    let mut written_for_the_gone = 0;
    for s in streams.iter().step_by(2) {
        written_for_the_gone += stored_ids(pool, s).await.len();
    }
    for ((result, _), s) in answers.iter().zip(streams.iter().skip(1).step_by(2)) {
        let stored = stored_ids(pool, s).await.len();
        match result {
            Ok(_) => assert_eq!(stored, 1, "{s}: answered appended, not stored"),
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("{s}: {e}"),
        }
    }
    assert_eq!(
        late, 0,
        "callers still waiting {bound:?} after the backend was terminated"
    );
    assert_eq!(
        written_for_the_gone, 0,
        "appends were written for callers that had given up"
    );
}

/// The pid of the backend waiting for a lock in this test's database.
async fn wait_for_lock_waiter(pool: &PgPool) -> i32 {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(
            Instant::now() < give_up,
            "no append ever waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Twin appends (the same event ids: a retry racing its original) always
/// get the original's result, whenever the original commits: before the
/// twin looks, while it looks, or while it inserts. Each round commits the
/// original a little later after the twin starts (100 us steps); a long id
/// list keeps the twin's look long enough for some commits to land inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twin_append_gets_the_originals_result_never_a_conflict() {
    const EVENTS: u64 = 2000;
    const ROUNDS: u32 = 120;
    let db = TestDb::new().await.expect("test database");
    let store =
        PgEventStore::new(db.pool().clone()).with_group_commit(one_worker(Duration::from_secs(10)));
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    store
        .append(&stream(), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();

    let mut results = Vec::new();
    for round in 0..ROUNDS {
        let s = stream();
        let events: Vec<NewEvent> = (0..EVENTS).map(event).collect();
        let mut original = db.pool().begin().await.unwrap();
        let rows = append_batch_sql(&mut *original, &[(&s, Some(-1), &events)])
            .await
            .unwrap();
        let original_version: i64 = rows[0].get("stream_version");
        let twin = {
            let (store, s, events) = (store.clone(), s.clone(), events.clone());
            tokio::spawn(async move { store.append(&s, ExpectedVersion::NoStream, events).await })
        };
        // Finer than the runtime's timer: the twin runs on the other thread.
        let until = std::time::Instant::now() + Duration::from_micros(100) * round;
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        original.commit().await.unwrap();
        let got = twin.await.unwrap();
        results.push((round, original_version, got));
    }
    let wrong: Vec<_> = results
        .iter()
        .filter(|(_, v, got)| {
            !matches!(got, Ok(o) if o.duplicate && i64::try_from(o.version).ok() == Some(*v))
        })
        .map(|(round, _, got)| format!("round {round}: {got:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {ROUNDS} twins: {wrong:#?}",
        wrong.len()
    );
}

/// `append_seq` numbers a transaction's appends 0 to 32767 (a smallint): a
/// larger batch is refused by the guard, before any append runs.
#[tokio::test]
async fn a_batch_larger_than_append_seq_can_number_is_refused_up_front() {
    let db = TestDb::new().await.expect("test database");
    PgEventStore::new(db.pool().clone())
        .migrate()
        .await
        .unwrap();
    let events: Vec<Vec<NewEvent>> = (0..32_769)
        .map(|_| {
            let mut e = event(0);
            e.data = serde_json::json!({});
            vec![e]
        })
        .collect();
    let streams: Vec<String> = (0..events.len()).map(|_| stream()).collect();
    let appends: Vec<_> = streams
        .iter()
        .zip(&events)
        .map(|(s, e)| (s.as_str(), None, e.as_slice()))
        .collect();
    let err = append_batch_sql(db.pool(), &appends).await.unwrap_err();
    let db_err = err.as_database_error().expect("a database error");
    assert_eq!(db_err.code().as_deref(), Some("54000"), "{db_err}");
    assert!(db_err.message().contains("32768"), "{db_err}");
}

/// A log with one append worker, and a way to hold that worker inside a
/// batch so the appends submitted meanwhile queue up and go as one batch.
struct Held {
    db: TestDb,
    store: Arc<PgEventStore>,
}

impl Held {
    async fn new() -> Self {
        let db = TestDb::new().await.expect("test database");
        let store = PgEventStore::new(db.pool().clone())
            .with_group_commit(one_worker(Duration::from_secs(10)));
        store.migrate().await.unwrap();
        Self {
            db,
            store: Arc::new(store),
        }
    }

    async fn stream_at(&self, version: u64) -> String {
        let s = stream();
        let events: Vec<NewEvent> = (0..=version).map(event).collect();
        self.store
            .append(&s, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
        s
    }

    /// Runs `appends` as one batch: the worker is first held on a stream an
    /// open transaction is writing, the appends are queued, then that
    /// transaction rolls back and the worker takes them all at once.
    async fn in_one_batch(
        &self,
        appends: Vec<(String, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Vec<Result<tasklog_events::AppendOutcome, StoreError>> {
        let blocked = stream();
        let mut blocker = self.db.pool().begin().await.unwrap();
        append_batch_sql(&mut *blocker, &[(&blocked, Some(-1), &[event(0)])])
            .await
            .unwrap();
        let held = {
            let store = self.store.clone();
            tokio::spawn(async move {
                store
                    .append(&blocked, ExpectedVersion::NoStream, vec![event(0)])
                    .await
            })
        };
        wait_for_lock_waiter(self.db.pool()).await;
        let waiting: Vec<_> = appends
            .into_iter()
            .map(|(s, expected, events)| {
                let store = self.store.clone();
                tokio::spawn(async move { store.append(&s, expected, events).await })
            })
            .collect();
        // Spawned appends are queued at once; give the runtime time to run them.
        tokio::time::sleep(Duration::from_millis(300)).await;
        blocker.rollback().await.unwrap();
        held.await.unwrap().unwrap();
        let mut results = Vec::new();
        for w in waiting {
            results.push(w.await.unwrap());
        }
        results
    }

    /// How many transactions wrote the events of `streams` from the given
    /// version on.
    async fn transactions_of(&self, streams: &[(&str, i64)]) -> i64 {
        let ids: Vec<String> = streams.iter().map(|(s, _)| (*s).to_owned()).collect();
        let from: Vec<i64> = streams.iter().map(|(_, v)| *v).collect();
        sqlx::query_scalar(
            "SELECT count(DISTINCT e.tx_id) FROM eventlog.events e \
             JOIN unnest($1::text[], $2::bigint[]) AS w (stream_id, from_version) \
             ON e.stream_id = w.stream_id AND e.version >= w.from_version",
        )
        .bind(&ids)
        .bind(&from)
        .fetch_one(self.db.pool())
        .await
        .unwrap()
    }
}

fn version_of(result: &Result<tasklog_events::AppendOutcome, StoreError>) -> Option<u64> {
    result.as_ref().ok().map(|o| o.version)
}

/// The usual batch (new streams and expected versions that hold) is written
/// by one set-based statement: one transaction, each append's versions and
/// an order of commit positions that follows the order of the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_plain_appends_is_written_at_once_with_each_appends_versions() {
    let log = Held::new().await;
    let existing = log.stream_at(2).await;
    let (fresh, many) = (stream(), stream());
    let results = log
        .in_one_batch(vec![
            (fresh.clone(), ExpectedVersion::NoStream, vec![event(0)]),
            (
                existing.clone(),
                ExpectedVersion::Exact(2),
                vec![event(3), event(4)],
            ),
            (
                many.clone(),
                ExpectedVersion::NoStream,
                (0..3).map(event).collect(),
            ),
        ])
        .await;
    let versions: Vec<_> = results.iter().map(version_of).collect();
    assert_eq!(versions, [Some(0), Some(4), Some(2)], "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|o| !o.duplicate))
    );
    assert_eq!(
        log.transactions_of(&[(&fresh, 0), (&existing, 3), (&many, 0)])
            .await,
        1,
        "one transaction wrote the batch"
    );
    // Each answer names where its append's last event stands in the log.
    for (s, result) in [&fresh, &existing, &many].into_iter().zip(&results) {
        let last = log
            .store
            .read_stream(s, 0, None)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(result.as_ref().unwrap().position, last.position, "{s}");
    }
    let stored: Vec<u64> = log
        .store
        .read_stream(&existing, 0, None)
        .await
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(stored, [0, 1, 2, 3, 4]);
}

/// A batch that holds anything but plain appends (a stale expectation, a
/// stream that exists already, a retry of stored ids, two appends to one
/// stream, `Any`) answers each append as if it had come alone, and writes
/// only what those answers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_of_a_mixed_batch_gets_the_outcome_it_would_get_alone() {
    let log = Held::new().await;
    let (fresh, stale, exists, twice, any) = (
        stream(),
        log.stream_at(1).await,
        log.stream_at(0).await,
        log.stream_at(0).await,
        log.stream_at(0).await,
    );
    let retried = log.stream_at(0).await;
    let first = log
        .store
        .read_stream(&retried, 0, None)
        .await
        .unwrap()
        .remove(0);
    let mut replay = event(0);
    replay.event_id = first.event_id;
    let results = log
        .in_one_batch(vec![
            (fresh.clone(), ExpectedVersion::NoStream, vec![event(0)]),
            (stale.clone(), ExpectedVersion::Exact(0), vec![event(1)]),
            (exists.clone(), ExpectedVersion::NoStream, vec![event(0)]),
            (retried.clone(), ExpectedVersion::NoStream, vec![replay]),
            (twice.clone(), ExpectedVersion::Exact(0), vec![event(1)]),
            (twice.clone(), ExpectedVersion::Exact(0), vec![event(1)]),
            (any.clone(), ExpectedVersion::Any, vec![event(1)]),
        ])
        .await;
    assert_eq!(version_of(&results[0]), Some(0), "{results:?}");
    assert!(
        matches!(
            results[1],
            Err(StoreError::Conflict {
                actual: Some(1),
                ..
            })
        ),
        "{results:?}"
    );
    assert!(
        matches!(
            results[2],
            Err(StoreError::Conflict {
                actual: Some(0),
                ..
            })
        ),
        "{results:?}"
    );
    assert!(
        matches!(&results[3], Ok(o) if o.duplicate && o.version == 0),
        "{results:?}"
    );
    assert_eq!(wins_and_conflicts(&results[4..6], 1), (1, 1), "{results:?}");
    assert_eq!(version_of(&results[6]), Some(1), "{results:?}");
    for (s, want) in [
        (&fresh, 1),
        (&stale, 2),
        (&exists, 1),
        (&retried, 1),
        (&twice, 2),
        (&any, 2),
    ] {
        let stored = log.store.read_stream(s, 0, None).await.unwrap();
        assert_eq!(stored.len(), want, "{s}");
    }
}

/// A batch of new streams is one plain INSERT; when one of them exists
/// already or is a retry of a stored append, the log's unique keys refuse
/// the INSERT and each append still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_new_streams_with_one_that_exists_answers_each_append() {
    let log = Held::new().await;
    let exists = log.stream_at(0).await;
    let stored = log
        .store
        .read_stream(&exists, 0, None)
        .await
        .unwrap()
        .remove(0);
    let mut retry = event(0);
    retry.event_id = stored.event_id;
    let (a, b) = (stream(), stream());
    let results = log
        .in_one_batch(vec![
            (
                a.clone(),
                ExpectedVersion::NoStream,
                vec![event(0), event(1)],
            ),
            (exists.clone(), ExpectedVersion::NoStream, vec![event(0)]),
            (exists.clone(), ExpectedVersion::NoStream, vec![retry]),
            (b.clone(), ExpectedVersion::NoStream, vec![event(0)]),
        ])
        .await;
    assert_eq!(version_of(&results[0]), Some(1), "{results:?}");
    assert!(
        matches!(
            results[1],
            Err(StoreError::Conflict {
                actual: Some(0),
                ..
            })
        ),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], Ok(o) if o.duplicate && o.version == 0),
        "{results:?}"
    );
    assert_eq!(version_of(&results[3]), Some(0), "{results:?}");
    for (s, want) in [(&a, 2), (&exists, 1), (&b, 1)] {
        assert_eq!(log.store.read_stream(s, 0, None).await.unwrap().len(), want);
    }
}
