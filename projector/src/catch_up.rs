//! Projecting up to the log's head and stopping: for tests of other crates
//! (query, systest) and for `rebuild`'s final stretch.

use std::time::Duration;

use sqlx::PgPool;
use tasklog_events::{EventStore, Position};
use tasklog_platform::redis::RedisHandle;

use crate::changes::ChangesProjection;
use crate::counts::CountsProjection;
use crate::error::ProjectorError;
use crate::projection::{Applied, Projection};
use crate::tasks::TasksProjection;
use tasklog_readmodel::migrate;

/// Events read per batch while catching up.
const CATCH_UP_BATCH: usize = 5_000;
/// How long to wait for events the log holds back (an older transaction is
/// still open) before looking again.
const HELD_BACK: Duration = Duration::from_millis(20);

/// Migrates the read model, then projects every event up to the log's head as
/// it is now (the tasks and changes projections, and the counts when `redis` is given) and returns the position
/// the read model reached (`None` for an empty log).
///
/// # Errors
/// When Postgres, Redis or the log fails.
pub async fn catch_up(
    db: &PgPool,
    store: &dyn EventStore,
    redis: Option<&RedisHandle>,
) -> Result<Option<Position>, ProjectorError> {
    migrate(db).await?;
    let head = store.head().await?;
    let reached = project_to(store, &TasksProjection::new(db.clone()), head).await?;
    project_to(store, &ChangesProjection::new(db.clone()), head).await?;
    if let Some(redis) = redis {
        project_to(store, &CountsProjection::new(redis.clone()), head).await?;
    }
    Ok(reached)
}

/// Applies the log to `projection` until its checkpoint is at or past `head`.
///
/// # Errors
/// When a store fails.
pub async fn project_to<P: Projection>(
    store: &dyn EventStore,
    projection: &P,
    head: Option<Position>,
) -> Result<Option<Position>, ProjectorError> {
    let mut checkpoint = projection.checkpoint().await?;
    while P::position(&checkpoint) < head {
        let page = store
            .read_all(P::position(&checkpoint), CATCH_UP_BATCH)
            .await?;
        if page.is_empty() {
            tokio::time::sleep(HELD_BACK).await;
            continue;
        }
        checkpoint = match projection.apply(store, &checkpoint, &page).await? {
            Applied::Done(c) | Applied::Moved(c) => c,
        };
    }
    Ok(P::position(&checkpoint))
}
