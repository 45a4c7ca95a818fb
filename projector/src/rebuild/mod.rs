//! `rebuild`: replays the whole log into a fresh generation of the read model
//! while the current one keeps serving, then swaps it in atomically; likewise
//! the Redis counts under a new generation.
//!
//! How it coexists with `run` (no lease is taken, so live projection goes on
//! until the very swap):
//! 1. The log is read and folded in memory, the live rows are COPYed into
//!    `readmodel.tasks_g<n+1>`, then indexed and analysed.
//! 2. The new generation catches up batch by batch to near the head.
//! 3. One transaction locks the `tasks` checkpoint row, checks the fence (the
//!    rebuild lock is still held by this rebuild's connection and the new
//!    table is the one this rebuild created, by OID, then locks that table),
//!    applies the last events, points `readmodel.tasks` at the new table and
//!    sets the checkpoint to (generation n+1, position). A live batch that
//!    commits meanwhile cannot move the checkpoint: its compare-and-set waits
//!    for the row lock, then finds the checkpoint changed and writes nothing;
//!    the running projector drops the batch and resumes from the new
//!    generation's checkpoint. The checkpoint never moves back:
//!    everything the old generation had applied was visible below the log's
//!    horizon, so the swap transaction reads at least that far.
//! 4. The old table is dropped (after readers still on it finish). The swap
//!    has happened by then: a failure here is reported, not fatal, and the
//!    next rebuild drops what is left.
//! 5. Counts: the new generation's hashes and checkpoint are written, then
//!    `counts:current` is flipped; the live counts projection sees the
//!    generation change in its next script and resumes from the new checkpoint.
//!
//! Queries never fail: the view is replaced inside a transaction, readers
//! started before keep the old table until they finish.

mod generation;
mod replay;
mod swap;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::PgPool;
use tasklog_events::{EventStore, Position};
use tasklog_platform::redis::RedisHandle;
use tasklog_readmodel::checkpoint::read_checkpoint;
use tasklog_readmodel::generation as tables;
use tasklog_readmodel::migrate;

use crate::counts::CountsProjection;
use crate::error::ProjectorError;
use crate::fold::counts_of;
use crate::lease::REBUILD_LOCK;
use crate::rows;

use generation::{build_indexes, catch_up, drop_generations};
use replay::replay;
use swap::{Fence, swap};

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
    /// Stretches of the log replayed at once, where the log can be cut
    /// (`EventStore::split_points`); 0 or 1 replays in one stretch.
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
    /// Whether the old generations were dropped after the swap (why not, if not).
    pub old_generations: Result<(), String>,
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
    // Refused before anything starts, not at the first table it makes.
    let (role, may_create): (String, bool) =
        sqlx::query_as("SELECT current_user::text, has_schema_privilege('readmodel', 'CREATE')")
            .fetch_one(db)
            .await?;
    if !may_create {
        return Err(ProjectorError::NotOwner(role));
    }
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
    let lock_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut lock_conn)
        .await?;
    let result = rebuild_locked(db, store, redis, options, progress, started, lock_pid).await;
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
    lock_pid: i32,
) -> Result<RebuildReport, ProjectorError> {
    let current = {
        let mut conn = db.acquire().await?;
        read_checkpoint(&mut conn, false).await?
    };
    let generation = current.generation + 1;
    drop_generations(db, &[current.generation], false).await?;
    tables::create(db, generation).await?;
    let fence = Fence {
        lock_pid,
        table_oid: tables::table_oid(db, generation).await?.ok_or_else(|| {
            ProjectorError::Fenced("the new generation's table vanished at once".into())
        })?,
    };

    progress.phase("replaying the log");
    let replay_started = Instant::now();
    let (mut map, position, events) = replay(
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
    let position = catch_up(db, store.as_ref(), generation, &mut map, position).await?;

    progress.phase("switching");
    let position = swap(db, store.as_ref(), &fence, generation, &mut map, position).await?;
    // Swapped: from here on nothing undoes the rebuild, so nothing fails it.
    progress.phase("dropping old generations");
    let old_generations = drop_generations(db, &[generation], true)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not drop the old generations; the next rebuild will");
            e.to_string()
        });

    let counts = match redis {
        None => Err("no Redis given".to_owned()),
        Some(redis) => {
            progress.phase("rebuilding counts");
            CountsProjection::new(redis.clone())
                .rebuild(&counts_of(map.values()), position)
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
        old_generations,
    })
}
