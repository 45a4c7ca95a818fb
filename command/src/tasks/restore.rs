//! Restoring a deleted task, with an optional `Idempotency-Key`: the key is
//! claimed for this task and request before the append and the answer kept,
//! so a retried restore gets the first answer instead of a 409.

use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::domain::TaskId;

use super::change::{Change, Precondition, change_task, change_task_once};
use super::idempotency::{self, Claim};
use super::recent::RecentTasks;
use super::{Ack, CommandContext, TaskCommandError, body_hash};

/// A restore's answer, and whether it replays an earlier request's.
#[derive(Debug)]
pub struct Restored {
    pub ack: Ack,
    pub replayed: bool,
}

/// # Errors
/// As `change_task`, and `KeyReused` when the key came with another request.
#[tracing::instrument(skip_all, fields(task_id = %id, actor = %ctx.actor))]
pub async fn restore_task(
    store: &dyn EventStore,
    recent: &RecentTasks,
    pool: &PgPool,
    id: TaskId,
    precondition: &Precondition,
    ctx: &CommandContext,
) -> Result<Restored, TaskCommandError> {
    let Some(key) = &ctx.idempotency_key else {
        let ack = change_task(store, recent, id, &Change::Restore, precondition, ctx).await?;
        return Ok(Restored {
            ack,
            replayed: false,
        });
    };
    // The request is its path: the same key on another task is another body.
    let hash = body_hash(&("restore", id.0));
    match idempotency::claim(pool, ctx.actor, key, &hash, id).await? {
        Claim::Replay(ack) => {
            return Ok(Restored {
                ack,
                replayed: true,
            });
        }
        Claim::Mismatch => return Err(TaskCommandError::KeyReused),
        Claim::Proceed(_) => {}
    }
    // Ids fixed by the key: a retry after a crash finds this restore's event.
    let first = key.event_id(ctx.actor);
    let ack = change_task_once(
        store,
        recent,
        id,
        &Change::Restore,
        precondition,
        ctx,
        Some(first),
    )
    .await?;
    if let Err(e) = idempotency::complete(pool, ctx.actor, key, &ack).await {
        tracing::warn!(error = %e, "could not store the idempotent response");
    }
    Ok(Restored {
        ack,
        replayed: false,
    })
}
