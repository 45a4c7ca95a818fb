//! `rebuild`: replays the whole log into a fresh generation of the read model
//! while the current one keeps serving, then swaps it in atomically; likewise
//! the Redis counts under a new generation.
//!
//! How it coexists with `run` (no lease is taken, so live projection goes on
//! until the very swap):
//! 1. The log is read and folded in memory, the live rows are COPYed into
//!    `readmodel.tasks_g<n+1>`, then indexed and analysed.
//! 2. The new generation catches up batch by batch to near the head.
//! 3. One transaction locks the `tasks` checkpoint row (the live projector locks
//!    it at the start of every batch, so no batch commits meanwhile), applies
//!    the last events, points `readmodel.tasks` at the new table and sets the
//!    checkpoint to (generation n+1, position). The running projector's next
//!    batch finds a checkpoint it did not expect, drops the batch and resumes
//!    from the new generation's checkpoint. The checkpoint never moves back:
//!    everything the old generation had applied was visible below the log's
//!    horizon, so the swap transaction reads at least that far.
//! 4. The old table is dropped (after readers still on it finish).
//! 5. Counts: the new generation's hashes and checkpoint are written, then
//!    `counts:current` is flipped; the live counts projection sees the
//!    generation change in its next script and resumes from the new checkpoint.
//!
//! Queries never fail: the view is replaced inside a transaction, readers
//! started before keep the old table until they finish.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::{Connection, PgConnection, PgPool};
use tasklog_events::domain::{TaskEvent, TaskId};
use tasklog_events::{EventStore, Position, RecordedEvent};
use tasklog_platform::redis::RedisHandle;

use crate::counts::CountsProjection;
use crate::error::ProjectorError;
use crate::fold::{
    TaskEventAt, TaskRow, counts_of, decode_batch, decode_owned, fold_rows, touched_ids,
};
use crate::lease::REBUILD_LOCK;
use crate::projection::{Projection, report_skipped};
use crate::rows;
use tasklog_readmodel::checkpoint::{TASKS, TasksCheckpoint, read_checkpoint, write_checkpoint};
use tasklog_readmodel::notice::Touched;
use tasklog_readmodel::{generation, migrate};

/// Events per read while replaying.
const REPLAY_PAGE: usize = 10_000;
/// Events per transaction while the new generation catches up.
const CATCH_UP_PAGE: usize = 5_000;
const HELD_BACK: Duration = Duration::from_millis(20);

/// Hears how a rebuild goes (the CLI draws it on a terminal).
pub trait Progress: Send {
    fn phase(&mut self, phase: &str);
    /// `done` events replayed so far, of about `total` when known.
    fn replayed(&mut self, done: u64, total: Option<u64>);
    fn loaded(&mut self, rows: u64, total: u64);
}

/// Progress nobody watches.
pub struct Quiet;

impl Progress for Quiet {
    fn phase(&mut self, _: &str) {}
    fn replayed(&mut self, _: u64, _: Option<u64>) {}
    fn loaded(&mut self, _: u64, _: u64) {}
}

#[derive(Debug, Clone, Default)]
pub struct RebuildOptions {
    /// About how many events the log holds, for the time-left estimate.
    pub total_hint: Option<u64>,
    /// Connections building indexes at once.
    pub index_parallelism: usize,
    /// Stretches of the log replayed at once. Only for the Postgres log
    /// (cuts are made at transaction ids); 0 or 1 replays in one stretch.
    pub replay_ranges: usize,
}

#[derive(Debug, Clone)]
pub struct RebuildReport {
    pub generation: i32,
    pub previous_generation: i32,
    pub position: Option<Position>,
    pub events: u64,
    pub live_tasks: u64,
    pub replay: Duration,
    pub load: Duration,
    pub index: Duration,
    pub total: Duration,
    /// The counts generation made current, or why the counts were not rebuilt.
    pub counts: Result<String, String>,
}

/// Replays the log into a new generation and swaps it in (see the module).
///
/// # Errors
/// When another rebuild runs, or Postgres or the log fails; the old
/// generation then still serves, and a leftover new table is dropped by the
/// next rebuild.
pub async fn rebuild(
    db: &PgPool,
    store: Arc<dyn EventStore>,
    redis: Option<&RedisHandle>,
    options: RebuildOptions,
    progress: &mut dyn Progress,
) -> Result<RebuildReport, ProjectorError> {
    let started = Instant::now();
    migrate(db).await?;
    let lock = (*db.connect_options())
        .clone()
        .application_name("tasklog-projector rebuild");
    let mut lock_conn = sqlx::ConnectOptions::connect(&lock).await?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut lock_conn)
        .await?;
    if !got {
        return Err(ProjectorError::Busy("another rebuild is running".into()));
    }
    let result = rebuild_locked(db, store, redis, options, progress, started).await;
    let _ = lock_conn.close().await;
    result
}

async fn rebuild_locked(
    db: &PgPool,
    store: Arc<dyn EventStore>,
    redis: Option<&RedisHandle>,
    options: RebuildOptions,
    progress: &mut dyn Progress,
    started: Instant,
) -> Result<RebuildReport, ProjectorError> {
    let current = {
        let mut conn = db.acquire().await?;
        read_checkpoint(&mut conn, false).await?
    };
    let generation = current.generation + 1;
    drop_generations(db, &[current.generation], false).await?;
    generation::create(db, generation).await?;

    progress.phase("replaying the log");
    let replay_started = Instant::now();
    let (mut map, mut position, events) = replay(
        store.clone(),
        options.total_hint,
        options.replay_ranges.max(1),
        progress,
    )
    .await?;
    let replay = replay_started.elapsed();

    progress.phase("loading rows (COPY)");
    let load_started = Instant::now();
    let total_rows = map.len() as u64;
    {
        let mut conn = db.acquire().await?;
        rows::copy_in(&mut conn, generation, map.values(), |n| {
            progress.loaded(n, total_rows);
        })
        .await?;
    }
    let load = load_started.elapsed();

    progress.phase("building indexes");
    let index_started = Instant::now();
    build_indexes(db, generation, options.index_parallelism.max(1)).await?;
    let index = index_started.elapsed();

    progress.phase("catching up");
    loop {
        let head = store.head().await?;
        if position >= head {
            break;
        }
        let page = store.read_all(position, CATCH_UP_PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            tokio::time::sleep(HELD_BACK).await;
            continue;
        };
        let mut overlay = Overlay::default();
        let mut tx = db.begin().await?;
        apply_to_generation(&mut tx, generation, &map, &mut overlay, &page).await?;
        tx.commit().await?;
        overlay.merge_into(&mut map);
        position = Some(last);
    }

    progress.phase("switching");
    let position = swap(db, store.as_ref(), generation, &mut map, position).await?;
    drop_generations(db, &[generation], true).await?;

    let counts = match redis {
        None => Err("no Redis given".to_owned()),
        Some(redis) => {
            progress.phase("rebuilding counts");
            rebuild_counts(redis, &map, position)
                .await
                .map_err(|e| e.to_string())
        }
    };
    progress.phase("done");
    Ok(RebuildReport {
        generation,
        previous_generation: current.generation,
        position,
        events,
        live_tasks: map.len() as u64,
        replay,
        load,
        index,
        total: started.elapsed(),
        counts,
    })
}

/// What folding one stretch of the log gives.
#[derive(Default)]
struct RangeFold {
    /// Tasks created in the stretch, as it leaves them (deleted ones gone).
    rows: HashMap<TaskId, TaskRow>,
    /// Events of tasks created before the stretch, in order, to fold onto
    /// the earlier stretches' result.
    pending: HashMap<TaskId, Vec<TaskEventAt>>,
    /// Tasks whose `TaskCreated` lies in the stretch.
    created: std::collections::HashSet<TaskId>,
    events: u64,
}

/// Reads the whole log and folds it in memory. With `ranges` > 1 (the
/// Postgres log only) the log is cut at transaction boundaries into stretches
/// replayed at once; each stretch is a pipeline of its own (a task reads
/// pages, blocking-pool threads decode them, order kept, and a task folds).
/// A task's events are folded in log order all the same: a stretch folds only
/// the tasks created in it and keeps the others' events for the merge.
async fn replay(
    store: Arc<dyn EventStore>,
    total_hint: Option<u64>,
    ranges: usize,
    progress: &mut dyn Progress,
) -> Result<(HashMap<TaskId, TaskRow>, Option<Position>, u64), ProjectorError> {
    let head = store.head().await?;
    let Some(head_position) = head else {
        return Ok((HashMap::new(), None, 0));
    };
    let first = loop {
        match store.read_all(None, 1).await?.first() {
            Some(e) => break e.position,
            None => tokio::time::sleep(HELD_BACK).await,
        }
    };
    let cuts = cut_points(first, head_position, ranges);
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut folds = tokio::task::JoinSet::new();
    let mut bounds: Vec<Option<Position>> = vec![None];
    bounds.extend(cuts.iter().copied().map(Some));
    for (i, after) in bounds.iter().copied().enumerate() {
        let until = bounds
            .get(i + 1)
            .copied()
            .flatten()
            .unwrap_or(head_position);
        let (store, counter) = (store.clone(), counter.clone());
        folds.spawn(async move { (i, replay_range(store, after, until, i == 0, counter).await) });
    }
    let mut results: Vec<Option<RangeFold>> = (0..bounds.len()).map(|_| None).collect();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    while !folds.is_empty() {
        tokio::select! {
            done = folds.join_next() => {
                let Some(done) = done else { break };
                let (i, fold) = done.map_err(|e| ProjectorError::Corrupt(format!("a replay task stopped: {e}")))?;
                results[i] = Some(fold?);
            }
            _ = tick.tick() => {
                progress.replayed(counter.load(std::sync::atomic::Ordering::Relaxed), total_hint);
            }
        }
    }
    let mut map: HashMap<TaskId, TaskRow> = HashMap::new();
    let mut events = 0;
    for fold in results.into_iter().flatten() {
        for (_, later) in fold.pending {
            fold_rows(&mut map, &later);
        }
        map.extend(fold.rows);
        events += fold.events;
    }
    progress.replayed(events, total_hint);
    Ok((map, head, events))
}

/// Positions that cut the Postgres log into `ranges` stretches of about equal
/// transaction-id span, each just after the last event of a transaction.
/// (A Postgres commit position is `tx_id << 16 | append_seq`.)
fn cut_points(first: Position, head: Position, ranges: usize) -> Vec<Position> {
    let (low, high) = (first.commit >> 16, head.commit >> 16);
    let ranges = ranges.max(1) as u64;
    let mut cuts: Vec<Position> = (1..ranges)
        .map(|i| low + (high - low) * i / ranges)
        .filter(|tx| *tx >= low && *tx < high)
        .map(|tx| Position::new((tx << 16) | 0xFFFF, u64::MAX))
        .collect();
    cuts.dedup();
    cuts
}

/// Folds the events after `after` up to and including `until`.
async fn replay_range(
    store: Arc<dyn EventStore>,
    after: Option<Position>,
    until: Position,
    first_range: bool,
    counter: Arc<std::sync::atomic::AtomicU64>,
) -> Result<RangeFold, ProjectorError> {
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<Vec<RecordedEvent>>(4);
    let reader = tokio::spawn(async move {
        let mut position = after;
        while position < Some(until) {
            let mut page = store.read_all(position, REPLAY_PAGE).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                tokio::time::sleep(HELD_BACK).await;
                continue;
            };
            page.truncate(page.partition_point(|e| e.position <= until));
            position = Some(last);
            if page.is_empty() {
                break;
            }
            if pages_tx.send(page).await.is_err() {
                break;
            }
        }
        Ok::<_, ProjectorError>(())
    });
    let pages = futures::stream::poll_fn(move |cx| pages_rx.poll_recv(cx));
    let mut decoded = pages
        .map(|page| {
            tokio::task::spawn_blocking(move || {
                let n = page.len();
                let (events, skipped) = decode_owned(page);
                (events, skipped, n)
            })
        })
        .buffered(2);
    let mut fold = RangeFold::default();
    while let Some(done) = decoded.next().await {
        let (batch, skipped, n) =
            done.map_err(|e| ProjectorError::Corrupt(format!("a decoder stopped: {e}")))?;
        report_skipped(TASKS, &skipped);
        if first_range {
            fold_rows(&mut fold.rows, &batch);
        } else {
            let mut ours = Vec::with_capacity(batch.len());
            for e in batch {
                if matches!(e.event, TaskEvent::Created(_))
                    && !fold.pending.contains_key(&e.task_id)
                {
                    fold.created.insert(e.task_id);
                }
                if fold.created.contains(&e.task_id) {
                    ours.push(e);
                } else {
                    fold.pending.entry(e.task_id).or_default().push(e);
                }
            }
            fold_rows(&mut fold.rows, &ours);
        }
        fold.events += n as u64;
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    reader
        .await
        .map_err(|e| ProjectorError::Corrupt(format!("the log reader stopped: {e}")))??;
    Ok(fold)
}

/// Rows changed by a transaction not yet committed, over the in-memory map
/// (`None`: deleted). Merged into the map only after the commit, so a rolled
/// back attempt leaves the map exact.
#[derive(Default)]
struct Overlay {
    rows: HashMap<TaskId, Option<TaskRow>>,
}

impl Overlay {
    fn get<'a>(&'a self, base: &'a HashMap<TaskId, TaskRow>, id: &TaskId) -> Option<&'a TaskRow> {
        match self.rows.get(id) {
            Some(row) => row.as_ref(),
            None => base.get(id),
        }
    }

    fn merge_into(self, base: &mut HashMap<TaskId, TaskRow>) {
        for (id, row) in self.rows {
            match row {
                Some(row) => {
                    base.insert(id, row);
                }
                None => {
                    base.remove(&id);
                }
            }
        }
    }
}

/// Applies `page` to the generation table inside the caller's transaction,
/// folding against the in-memory rows (map under overlay); records the
/// changes in `overlay`.
async fn apply_to_generation(
    conn: &mut PgConnection,
    generation: i32,
    base: &HashMap<TaskId, TaskRow>,
    overlay: &mut Overlay,
    page: &[RecordedEvent],
) -> Result<(), ProjectorError> {
    let (decoded, skipped) = decode_batch(page);
    report_skipped(TASKS, &skipped);
    let mut scratch: HashMap<TaskId, TaskRow> = touched_ids(&decoded)
        .into_iter()
        .filter_map(|id| overlay.get(base, &id).map(|row| (id, row.clone())))
        .collect();
    let changes = fold_rows(&mut scratch, &decoded);
    let upserts: Vec<&TaskRow> = changes
        .upserts
        .iter()
        .filter_map(|id| scratch.get(id))
        .collect();
    rows::upsert(conn, generation, &upserts).await?;
    rows::delete(conn, generation, &changes.deletes).await?;
    for id in changes.upserts {
        overlay.rows.insert(id, scratch.remove(&id));
    }
    for id in changes.deletes {
        overlay.rows.insert(id, None);
    }
    Ok(())
}

/// Builds the new generation's indexes: the primary key first (it locks the
/// table), then the rest on `parallelism` connections at once.
async fn build_indexes(
    db: &PgPool,
    generation: i32,
    parallelism: usize,
) -> Result<(), ProjectorError> {
    let statements = generation::index_statements(db, generation).await?;
    let mut statements = statements.into_iter();
    if let Some(primary_key) = statements.next() {
        let mut conn = db.acquire().await?;
        sqlx::query("SET maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        sqlx::query(&primary_key).execute(&mut *conn).await?;
    }
    let rest: Vec<String> = statements.collect();
    let queue = Arc::new(std::sync::Mutex::new(rest));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallelism {
        let db = db.clone();
        let queue = queue.clone();
        workers.spawn(async move {
            let mut conn = db.acquire().await?;
            sqlx::query("SET maintenance_work_mem = '256MB'")
                .execute(&mut *conn)
                .await?;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some(statement) = next else {
                    break;
                };
                sqlx::query(&statement).execute(&mut *conn).await?;
            }
            // The pooled session must not keep the raised memory setting.
            sqlx::query("RESET maintenance_work_mem")
                .execute(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| ProjectorError::Corrupt(format!("index build task failed: {e}")))??;
    }
    sqlx::query(&format!("ANALYZE {}", rows::table(generation)))
        .execute(db)
        .await?;
    Ok(())
}

/// How many times the swap is tried when it cannot get its locks quickly.
const SWAP_ATTEMPTS: u32 = 20;

/// The atomic switch (module doc, step 3). Returns the position the new
/// generation is at.
async fn swap(
    db: &PgPool,
    store: &dyn EventStore,
    generation: i32,
    map: &mut HashMap<TaskId, TaskRow>,
    position: Option<Position>,
) -> Result<Option<Position>, ProjectorError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_swap(db, store, generation, map, position).await {
            Ok(Some(reached)) => return Ok(reached),
            Ok(None) => tokio::time::sleep(HELD_BACK).await,
            Err(ProjectorError::Database(e)) if is_lock_timeout(&e) && attempt < SWAP_ATTEMPTS => {
                tracing::info!(attempt, "the swap waited too long for a lock; trying again");
            }
            Err(e) => return Err(e),
        }
    }
}

fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// One attempt; `Ok(None)` when the log did not yet show what the old
/// generation has applied (cannot happen while the horizon only grows, but
/// the checkpoint must never go back, so it is checked).
async fn try_swap(
    db: &PgPool,
    store: &dyn EventStore,
    generation: i32,
    map: &mut HashMap<TaskId, TaskRow>,
    mut position: Option<Position>,
) -> Result<Option<Option<Position>>, ProjectorError> {
    let mut tx = db.begin().await?;
    // Bounded waits: a reader in a long transaction must not stall every
    // query queued behind the view's lock for long.
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await?;
    // From here until commit no live batch can commit (it locks this row first).
    let old: TasksCheckpoint = read_checkpoint(&mut tx, true).await?;
    let mut overlay = Overlay::default();
    loop {
        let page = store.read_all(position, CATCH_UP_PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        apply_to_generation(&mut tx, generation, map, &mut overlay, &page).await?;
        position = Some(last);
    }
    if position < old.position {
        tx.rollback().await?;
        return Ok(None);
    }
    generation::point_view_at(&mut tx, generation).await?;
    // Every list may differ in the new generation: that is why one rebuilds.
    write_checkpoint(
        &mut tx,
        TasksCheckpoint {
            generation,
            position,
        },
        Touched::All,
    )
    .await?;
    tx.commit().await?;
    overlay.merge_into(map);
    Ok(Some(position))
}

/// Drops every generation table but `keep`. With `wait`, waits (bounded) for
/// readers still on an old table; without, a busy table is left for later.
async fn drop_generations(db: &PgPool, keep: &[i32], wait: bool) -> Result<(), ProjectorError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = 'readmodel' AND tablename ~ '^tasks_g[0-9]+$'",
    )
    .fetch_all(db)
    .await?;
    for table in tables {
        let Some(generation) = table
            .strip_prefix("tasks_g")
            .and_then(|g| g.parse::<i32>().ok())
        else {
            continue;
        };
        if keep.contains(&generation) {
            continue;
        }
        let mut conn = db.acquire().await?;
        let timeout = if wait { "30s" } else { "2s" };
        let mut tx = conn.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{timeout}'"))
            .execute(&mut *tx)
            .await?;
        match sqlx::query(&format!("DROP TABLE IF EXISTS {}", rows::table(generation)))
            .execute(&mut *tx)
            .await
        {
            Ok(_) => tx.commit().await?,
            Err(e) => {
                tracing::warn!(table, error = %e, "could not drop an old generation; the next rebuild will");
            }
        }
    }
    Ok(())
}

/// Writes the counts of `map` as a new Redis generation at `position`, makes
/// it current and removes the old one. Returns the new generation's name.
async fn rebuild_counts(
    redis: &RedisHandle,
    map: &HashMap<TaskId, TaskRow>,
    position: Option<Position>,
) -> Result<String, ProjectorError> {
    let counts = CountsProjection::new(redis.clone());
    let current = counts.checkpoint().await?;
    let next = current
        .generation
        .strip_prefix('g')
        .and_then(|n| n.parse::<u64>().ok())
        .map_or_else(
            || format!("g{}", chrono::Utc::now().timestamp()),
            |n| format!("g{}", n + 1),
        );
    // A leftover of an interrupted rebuild must not add to the new one.
    counts.drop_generation(&next).await?;
    counts
        .write_generation(&next, &counts_of(map.values()), position)
        .await?;
    if let Some(old) = counts.flip(&next).await? {
        if old != next {
            counts.drop_generation(&old).await?;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_after_the_last_event_of_a_transaction_and_split_the_span() {
        let first = Position::new(100 << 16, 1);
        let head = Position::new((500 << 16) | 3, 9_000);
        let cuts = cut_points(first, head, 4);
        assert_eq!(
            cuts,
            vec![
                Position::new((200 << 16) | 0xFFFF, u64::MAX),
                Position::new((300 << 16) | 0xFFFF, u64::MAX),
                Position::new((400 << 16) | 0xFFFF, u64::MAX),
            ]
        );
        // Every event of transaction 200 is at or before the cut, none of 201.
        assert!(Position::new((200 << 16) | 7, 1_000_000) <= cuts[0]);
        assert!(Position::new(201 << 16, 0) > cuts[0]);
        assert!(cut_points(first, head, 1).is_empty());
        assert!(cut_points(head, head, 3).is_empty());
    }
}
