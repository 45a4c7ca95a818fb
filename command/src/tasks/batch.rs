//! A batch of task commands: each command runs as it would alone and gets
//! its own result. Commands on different tasks run at once, so their appends
//! reach the log together and share its group commit; commands on the same
//! task run in the order given. `Idempotency-Key` covers the whole batch.

use std::collections::HashMap;

use futures::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::domain::TaskId;

use uuid::Uuid;

use super::change::{Change, Precondition, change_task, change_task_once};
use super::create::{NewTask, create_task};
use super::idempotency::{self, Claim};
use super::recent::RecentTasks;
use super::{Ack, CommandContext, TaskCommandError};

/// The most commands one batch may hold.
pub const MAX_COMMANDS: usize = 100;

/// One parsed command of a batch.
#[derive(Debug, Clone)]
pub enum BatchCommand {
    Create(NewTask),
    /// Patch, delete or restore.
    Change {
        id: TaskId,
        change: Change,
        precondition: Precondition,
    },
}

/// What one command did: created (201) or changed (200).
#[derive(Debug)]
pub enum Done {
    Created(Ack),
    Changed(Ack),
}

/// The ids a batch with an `Idempotency-Key` gives its commands, the same
/// on every retry: from the key's claim (a UUIDv7 kept with the key) and the
/// key's event id, each command's task id (creates) and first event id.
#[derive(Debug, Clone, Copy)]
pub struct BatchIds {
    pub claimed: TaskId,
    pub key_event_id: Uuid,
}

impl BatchIds {
    /// A create's task id: the claimed UUIDv7 with its last two bytes the
    /// command's index, so still time-ordered and unique within the batch.
    fn task_id(&self, index: usize) -> TaskId {
        let mut bytes = *self.claimed.0.as_bytes();
        let [hi, lo] = u16::try_from(index).unwrap_or(u16::MAX).to_be_bytes();
        bytes[14] = hi;
        bytes[15] = lo;
        TaskId(Uuid::from_bytes(bytes))
    }

    fn first_event_id(&self, index: usize) -> Uuid {
        Uuid::new_v5(&self.key_event_id, &(index as u64).to_be_bytes())
    }
}

/// Runs `commands` (each at its index in the batch) and returns their
/// results in the same order. With `ids` (a batch with a key), a retry after
/// a crash mid-batch finds the events its first run appended and answers
/// each such command as then, running only the rest.
pub async fn run_batch(
    store: &dyn EventStore,
    recent: &RecentTasks,
    pool: &PgPool,
    ctx: &CommandContext,
    commands: Vec<(usize, BatchCommand)>,
    ids: Option<BatchIds>,
) -> Vec<(usize, Result<Done, TaskCommandError>)> {
    // Each command alone keeps no key of its own: the batch's key is kept
    // for the whole batch by `idempotent`.
    let ctx = CommandContext {
        idempotency_key: None,
        ..ctx.clone()
    };
    let mut groups: Vec<Vec<(usize, BatchCommand)>> = Vec::new();
    let mut by_task: HashMap<TaskId, usize> = HashMap::new();
    for (index, command) in commands {
        match &command {
            BatchCommand::Change { id, .. } => match by_task.get(id) {
                Some(&group) => groups[group].push((index, command)),
                None => {
                    by_task.insert(*id, groups.len());
                    groups.push(vec![(index, command)]);
                }
            },
            BatchCommand::Create(_) => groups.push(vec![(index, command)]),
        }
    }
    let ctx = &ctx;
    let runs = groups.into_iter().map(|group| async move {
        let mut results = Vec::with_capacity(group.len());
        for (index, command) in group {
            let ids = ids.map(|ids| (ids.task_id(index), ids.first_event_id(index)));
            results.push((index, run_one(store, recent, pool, ctx, command, ids).await));
        }
        results
    });
    let mut results: Vec<_> = join_all(runs).await.into_iter().flatten().collect();
    results.sort_by_key(|(index, _)| *index);
    results
}

async fn run_one(
    store: &dyn EventStore,
    recent: &RecentTasks,
    pool: &PgPool,
    ctx: &CommandContext,
    command: BatchCommand,
    ids: Option<(TaskId, Uuid)>,
) -> Result<Done, TaskCommandError> {
    match command {
        BatchCommand::Create(task) => {
            // No key: the hash is never read.
            let created = create_task(store, pool, ctx, task, &[], ids).await?;
            Ok(Done::Created(created.ack))
        }
        BatchCommand::Change {
            id,
            change,
            precondition,
        } => match ids {
            Some((_, first)) => {
                change_task_once(store, recent, id, &change, &precondition, ctx, Some(first)).await
            }
            None => change_task(store, recent, id, &change, &precondition, ctx).await,
        }
        .map(Done::Changed),
    }
}

/// Answers with the kept response when the batch's key was used before, or
/// runs `run` and keeps what it answered.
///
/// # Errors
/// `KeyReused` when the key came with another body; a failing database.
pub async fn idempotent<R, F>(
    pool: &PgPool,
    ctx: &CommandContext,
    body_hash: &[u8],
    run: impl FnOnce(Option<BatchIds>) -> F,
) -> Result<(R, bool), TaskCommandError>
where
    R: Serialize + DeserializeOwned + Sync,
    F: Future<Output = R>,
{
    let Some(key) = &ctx.idempotency_key else {
        return Ok((run(None).await, false));
    };
    // The claimed id is kept with the key: the batch's ids derive from it.
    let fresh = TaskId(uuid::Uuid::now_v7());
    let claimed = match idempotency::claim::<R>(pool, ctx.actor, key, body_hash, fresh).await? {
        Claim::Replay(response) => return Ok((response, true)),
        Claim::Mismatch => return Err(TaskCommandError::KeyReused),
        Claim::Proceed(claimed) => claimed,
    };
    let response = run(Some(BatchIds {
        claimed,
        key_event_id: key.event_id(ctx.actor),
    }))
    .await;
    if let Err(e) = idempotency::complete(pool, ctx.actor, key, &response).await {
        tracing::warn!(error = %e, "could not store the batch's idempotent response");
    }
    Ok((response, false))
}
