//! Creating a task: no stream to read, a fresh UUIDv7 and `NoStream`; with an
//! `Idempotency-Key`, the first response is replayed for every retry.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tasklog_events::domain::{
    CreateTask, Priority, Status, Tags, TaskCommand, TaskDescription, TaskId, TaskState, TaskTitle,
    decide,
};
use tasklog_events::task_stream::to_new_event;
use tasklog_events::{EventStore, ExpectedVersion, StoreError};
use uuid::Uuid;

use super::idempotency::{self, Claim};
use super::{Ack, CommandContext, TaskCommandError, event_ids};

/// A new task's fields, parsed.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: TaskTitle,
    pub description: TaskDescription,
    pub status: Status,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Tags,
}

/// A created task, and whether this answer replays an earlier request's.
#[derive(Debug)]
pub struct Created {
    pub ack: Ack,
    pub replayed: bool,
}

/// `replay`: the task id and first event id a batch with a key derived for
/// this command, so a retried batch appends the same events (and gets the
/// first answer) instead of making another task.
///
/// # Errors
/// `KeyReused` when the key came with another body; store or database failures.
#[tracing::instrument(skip_all, fields(actor = %ctx.actor, task_id = tracing::field::Empty))]
pub async fn create_task(
    store: &dyn EventStore,
    pool: &PgPool,
    ctx: &CommandContext,
    task: NewTask,
    body_hash: &[u8],
    replay: Option<(TaskId, Uuid)>,
) -> Result<Created, TaskCommandError> {
    let fresh = TaskId(Uuid::now_v7());
    let (task_id, first_event_id) = match (&ctx.idempotency_key, replay) {
        // A command of a batch with a key: the ids the batch derived for it.
        (_, Some(ids)) => ids,
        (None, None) => (fresh, Uuid::now_v7()),
        (Some(key), None) => {
            match idempotency::claim(pool, ctx.actor, key, body_hash, fresh).await? {
                Claim::Proceed(task_id) => (task_id, key.event_id(ctx.actor)),
                Claim::Replay(ack) => {
                    return Ok(Created {
                        ack,
                        replayed: true,
                    });
                }
                Claim::Mismatch => return Err(TaskCommandError::KeyReused),
            }
        }
    };
    tracing::Span::current().record("task_id", tracing::field::display(task_id));
    let command = TaskCommand::Create(CreateTask {
        task_id,
        owner: ctx.actor,
        title: task.title,
        description: task.description,
        status: task.status,
        priority: task.priority,
        due_at: task.due_at,
        tags: task.tags,
        at: Utc::now(),
    });
    // A fresh id has no history: `decide` cannot refuse a create on `Absent`.
    let events =
        decide(&TaskState::Absent, command).map_err(|_| TaskCommandError::NotFound(task_id))?;
    let metadata = ctx.metadata(ctx.actor);
    let new_events: Vec<_> = events
        .iter()
        .zip(event_ids(first_event_id, events.len()))
        .map(|(e, id)| to_new_event(e, id, metadata.clone()))
        .collect();
    // A re-run with the same event ids is answered with the original append.
    let stream = task_id.stream_id();
    let outcome = match store
        .append(&stream, ExpectedVersion::NoStream, new_events.clone())
        .await
    {
        // A twin request with the same idempotency key appended these very
        // events while this one was in flight; now that it has committed, the
        // same ids make a second try answer with its result.
        Err(StoreError::Conflict { .. }) if ctx.idempotency_key.is_some() || replay.is_some() => {
            store
                .append(&stream, ExpectedVersion::NoStream, new_events)
                .await?
        }
        other => other?,
    };
    let ack = Ack::appended(task_id, &outcome);
    if let Some(key) = &ctx.idempotency_key {
        // The task exists now whatever happens here: a failure only means a
        // retry re-runs the append, which the event ids make harmless.
        if let Err(e) = idempotency::complete(pool, ctx.actor, key, &ack).await {
            tracing::warn!(error = %e, task_id = %task_id, "could not store the idempotent response");
        }
    }
    Ok(Created {
        ack,
        // Without a key the event ids are fresh, so stored ids can only be
        // this request's own: the log answers "duplicate" when it settled a
        // commit whose reply was lost (events/src/store/postgres/group_commit.rs).
        replayed: outcome.duplicate && ctx.idempotency_key.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_event_ids_start_with_the_given_one_and_are_stable() {
        let first = Uuid::now_v7();
        let a: Vec<_> = event_ids(first, 3).collect();
        let b: Vec<_> = event_ids(first, 3).collect();
        assert_eq!(a, b);
        assert_eq!(a[0], first);
        assert_ne!(a[1], a[2]);
    }
}
