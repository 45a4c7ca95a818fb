//! The swap: one transaction, fenced, that applies the last events and makes
//! the new generation current (module doc of `rebuild`, step 3).

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use tasklog_events::domain::TaskId;
use tasklog_events::{EventStore, Position};
use tasklog_readmodel::checkpoint::{TasksCheckpoint, read_checkpoint, write_checkpoint};
use tasklog_readmodel::generation;
use tasklog_readmodel::notice::Touched;

use super::HELD_BACK;
use super::generation::{Overlay, apply_next_page};
use crate::error::ProjectorError;
use crate::fold::TaskRow;
use crate::lease::REBUILD_LOCK;
use crate::rows;

/// What makes this rebuild's swap its own: the backend holding the rebuild
/// lock (a lock on a session that ended is gone, and another rebuild may
/// then run) and the identity of the table it filled (another rebuild
/// drops and recreates the same name).
pub(super) struct Fence {
    pub(super) lock_pid: i32,
    pub(super) table_oid: u32,
}

impl Fence {
    /// Inside the swap transaction: fails unless the lock is still held by
    /// this rebuild's session and the table is still the one it created;
    /// then locks the table so that nobody drops it before the commit.
    async fn check(&self, conn: &mut PgConnection, generation: i32) -> Result<(), ProjectorError> {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = $1 AND ((classid::bigint << 32) | objid::bigint) = $2)",
        )
        .bind(self.lock_pid)
        .bind(REBUILD_LOCK)
        .fetch_one(&mut *conn)
        .await?;
        if !held {
            return Err(ProjectorError::Fenced(
                "the rebuild lock was lost (its session ended); another rebuild may run".into(),
            ));
        }
        let replaced = || {
            ProjectorError::Fenced(format!(
                "{} is no longer the table this rebuild filled",
                rows::table(generation)
            ))
        };
        if generation::table_oid(&mut *conn, generation).await? != Some(self.table_oid) {
            return Err(replaced());
        }
        sqlx::query(&format!(
            "LOCK TABLE {} IN ACCESS SHARE MODE",
            rows::table(generation)
        ))
        .execute(&mut *conn)
        .await?;
        if generation::table_oid(&mut *conn, generation).await? != Some(self.table_oid) {
            return Err(replaced());
        }
        Ok(())
    }
}

/// How many times the swap is tried when it cannot get its locks quickly.
const SWAP_ATTEMPTS: u32 = 20;

/// The atomic switch (module doc, step 3). Returns the position the new
/// generation is at.
pub(super) async fn swap(
    db: &PgPool,
    store: &dyn EventStore,
    fence: &Fence,
    generation: i32,
    map: &mut HashMap<TaskId, TaskRow>,
    position: Option<Position>,
) -> Result<Option<Position>, ProjectorError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_swap(db, store, fence, generation, map, position).await {
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
    fence: &Fence,
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
    fence.check(&mut tx, generation).await?;
    let mut overlay = Overlay::default();
    while let Some(last) =
        apply_next_page(&mut tx, store, generation, map, &mut overlay, position).await?
    {
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
