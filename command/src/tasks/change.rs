//! Changing, deleting, restoring or reverting a task: read its stream,
//! `decide`, append with the version read. With `If-Match` a lost race is a 412; without it the command
//! is re-read and re-decided, so concurrent blind writers all land.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tasklog_events::domain::{
    TaskCommand, TaskError, TaskEvent, TaskId, TaskPatch, TaskState, decide, evolve,
};
use tasklog_events::task_stream::{self, TaskRecord, to_new_event};
use tasklog_events::{EventStore, ExpectedVersion, NewEvent, StoreError};
use uuid::Uuid;

use super::recent::{Recent, RecentTasks};
use super::{Ack, CommandContext, TaskCommandError, event_ids, revert};

/// Attempts of an unconditional command before it gives up with a 409. With
/// backoff capped at 50 ms this bounds a request to about a second of waiting.
const MAX_ATTEMPTS: u32 = 24;
const BACKOFF_BASE: Duration = Duration::from_millis(2);
const BACKOFF_CAP: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub enum Change {
    Update(TaskPatch),
    Delete,
    /// Bring a deleted task back (`restore.rs`).
    Restore,
    /// Make the fields what they were at this version (`revert.rs`).
    Revert {
        to_version: u64,
    },
}

/// What `If-Match` asks of the task's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`, or `*`: apply to whatever version is current.
    Latest,
    /// Apply only if the task is at one of these versions.
    AtVersion(Vec<u64>),
}

impl Precondition {
    fn allows(&self, version: u64) -> bool {
        match self {
            Precondition::Latest => true,
            Precondition::AtVersion(versions) => versions.contains(&version),
        }
    }
}

/// A task's stream, its state and where the stream ends.
pub(super) struct Loaded {
    pub(super) records: Vec<TaskRecord>,
    pub(super) state: TaskState,
    pub(super) version: u64,
    position: u64,
}

async fn load(store: &dyn EventStore, id: TaskId) -> Result<Option<Loaded>, TaskCommandError> {
    let records = task_stream::history(store, id, None).await?;
    let Some(last) = records.last() else {
        return Ok(None);
    };
    Ok(Some(Loaded {
        version: last.recorded.version,
        position: last.recorded.position.commit,
        state: records
            .iter()
            .fold(TaskState::Absent, |s, r| evolve(s, &r.event)),
        records,
    }))
}

/// The domain command for `change` on the task as `loaded`.
fn command(
    change: &Change,
    id: TaskId,
    loaded: &Loaded,
    ctx: &CommandContext,
) -> Result<TaskCommand, TaskCommandError> {
    match change {
        Change::Revert { to_version } => Ok(TaskCommand::Revert {
            actor: ctx.actor,
            target: Box::new(revert::target(loaded, id, ctx.actor, *to_version)?),
            at: Utc::now(),
        }),
        other => simple_command(other, ctx).ok_or(TaskCommandError::NotFound(id)),
    }
}

/// The domain command for a change that needs no history (all but a revert).
fn simple_command(change: &Change, ctx: &CommandContext) -> Option<TaskCommand> {
    let (actor, at) = (ctx.actor, Utc::now());
    Some(match change {
        Change::Update(patch) => TaskCommand::Update {
            actor,
            patch: patch.clone(),
            at,
        },
        Change::Delete => TaskCommand::Delete { actor, at },
        Change::Restore => TaskCommand::Restore { actor, at },
        Change::Revert { .. } => return None,
    })
}

/// `events`, decided on `state`, as the log stores them: with the owner
/// and actor in their metadata and ids from `first` (fresh when None).
fn to_append(
    id: TaskId,
    state: &TaskState,
    events: &[TaskEvent],
    change: &Change,
    ctx: &CommandContext,
    first: Option<Uuid>,
) -> Result<Vec<NewEvent>, TaskCommandError> {
    let owner = match state {
        TaskState::Live(task) | TaskState::Deleted(task) => task.owner,
        TaskState::Absent => return Err(TaskCommandError::NotFound(id)),
    };
    let mut metadata = ctx.metadata(owner);
    if let Change::Revert { to_version } = change {
        metadata.reverted_to = Some(*to_version);
    }
    let ids = event_ids(first.unwrap_or_else(Uuid::now_v7), events.len());
    Ok(events
        .iter()
        .zip(ids)
        .map(|(e, event_id)| to_new_event(e, event_id, metadata.clone()))
        .collect())
}

/// Appends `new_events` (the `events` decided on `known`), expecting the
/// stream still at `known.version`. The task is remembered as they leave
/// it, or forgotten when the stream had moved on (a conflict).
async fn append_on(
    store: &dyn EventStore,
    recent: &RecentTasks,
    id: TaskId,
    known: &Recent,
    events: &[TaskEvent],
    new_events: Vec<NewEvent>,
) -> Result<Ack, StoreError> {
    let expected = ExpectedVersion::Exact(known.version);
    match store.append(&id.stream_id(), expected, new_events).await {
        Ok(outcome) => {
            let ack = Ack::appended(id, &outcome);
            let state = events.iter().fold(known.state.clone(), evolve);
            recent.remember(
                id,
                Arc::new(Recent {
                    state,
                    version: ack.version,
                    position: ack.position,
                }),
            );
            Ok(ack)
        }
        Err(e) => {
            if matches!(e, StoreError::Conflict { .. }) {
                recent.forget(id);
            }
            Err(e)
        }
    }
}

/// The change decided on the task's remembered state (`recent.rs`), when
/// that goes through cleanly, or a precondition the remembered state fails
/// while nothing follows it in the stream. None: decide on the stream as
/// read instead (nothing remembered, a revert, a decision the remembered
/// state refuses, an unmet precondition on a state the stream has moved
/// past, nothing to change, or a conflict, after which the entry is
/// dropped).
async fn change_recent(
    store: &dyn EventStore,
    recent: &RecentTasks,
    id: TaskId,
    change: &Change,
    precondition: &Precondition,
    ctx: &CommandContext,
) -> Result<Option<Ack>, TaskCommandError> {
    let Some(command) = simple_command(change, ctx) else {
        return Ok(None);
    };
    let Some(known) = recent.get(id) else {
        return Ok(None);
    };
    let Ok(events) = decide(&known.state, command) else {
        return Ok(None);
    };
    if !precondition.allows(known.version) {
        return refuse_if_current(store, id, &known).await;
    }
    if events.is_empty() {
        return Ok(None);
    }
    let new_events = to_append(id, &known.state, &events, change, ctx, None)?;
    match append_on(store, recent, id, &known, &events, new_events).await {
        Ok(ack) => Ok(Some(ack)),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The 412 for a precondition the remembered state `known` fails, once the
/// stream shows nothing appended after it: then `known` is the task as it
/// stands, and reading just past its version costs one index probe where
/// reading the stream costs its whole history. None when the stream has
/// moved on (another instance wrote it): decide on the stream as read.
/// Called only after `known` accepted the actor's command, so ownership
/// still comes before the precondition.
async fn refuse_if_current(
    store: &dyn EventStore,
    id: TaskId,
    known: &Recent,
) -> Result<Option<Ack>, TaskCommandError> {
    let after = store
        .read_stream(&id.stream_id(), known.version + 1, None)
        .await?;
    if after.is_empty() {
        Err(TaskCommandError::PreconditionFailed {
            current: Some(known.version),
        })
    } else {
        Ok(None)
    }
}

/// Full jitter: a random wait below a cap that doubles per attempt, so
/// writers that collided spread out instead of colliding again.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(10))
        .min(BACKOFF_CAP);
    let micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(rand::random_range(0..micros))
}

/// # Errors
/// `NotFound` (absent, not the actor's, or deleted unless restored or
/// reverted), `NotDeleted` (a restore of a live task), `BadRevertTarget`,
/// `PreconditionFailed`,
/// `Contended` after `MAX_ATTEMPTS`, or a failing store.
pub async fn change_task(
    store: &dyn EventStore,
    recent: &RecentTasks,
    id: TaskId,
    change: &Change,
    precondition: &Precondition,
    ctx: &CommandContext,
) -> Result<Ack, TaskCommandError> {
    if let Some(ack) = change_recent(store, recent, id, change, precondition, ctx).await? {
        return Ok(ack);
    }
    change_task_once(store, recent, id, change, precondition, ctx, None).await
}

/// The answer of an append whose first event has id `first` (and the rest
/// ids derived from it), if the stream holds it: a retried request whose
/// first run appended and then died before it answered.
fn appended_before(loaded: &Loaded, id: TaskId, first: Uuid) -> Option<Ack> {
    let start = loaded
        .records
        .iter()
        .position(|r| r.recorded.event_id == first)?;
    let ours = &loaded.records[start..];
    let last = ours
        .iter()
        .zip(event_ids(first, ours.len()))
        .take_while(|(r, expected)| r.recorded.event_id == *expected)
        .last()
        .map(|(r, _)| r)?;
    Some(Ack {
        id: id.0,
        version: last.recorded.version,
        position: last.recorded.position.commit,
    })
}

/// `change_task` whose events get `first` and ids derived from it, when
/// given: the same on every retry of the request (its `Idempotency-Key`), so
/// a retry after a crash between the append and the answer finds its events
/// in the stream and answers as the first run did, instead of deciding
/// again on a state it already changed.
///
/// # Errors
/// As `change_task`.
#[tracing::instrument(skip_all, fields(task_id = %id, actor = %ctx.actor))]
pub async fn change_task_once(
    store: &dyn EventStore,
    recent: &RecentTasks,
    id: TaskId,
    change: &Change,
    precondition: &Precondition,
    ctx: &CommandContext,
    first: Option<Uuid>,
) -> Result<Ack, TaskCommandError> {
    for attempt in 0..MAX_ATTEMPTS {
        let Some(loaded) = load(store, id).await? else {
            return Err(TaskCommandError::NotFound(id));
        };
        let known = Arc::new(Recent {
            state: loaded.state.clone(),
            version: loaded.version,
            position: loaded.position,
        });
        recent.remember(id, known.clone());
        if let Some(ack) = first.and_then(|first| appended_before(&loaded, id, first)) {
            // Only the owner's request can have appended under these ids.
            return Ok(ack);
        }
        // Ownership before the precondition: another user's task must be a
        // 404 whatever version the client names.
        let events = match decide(&loaded.state, command(change, id, &loaded, ctx)?) {
            Ok(events) => events,
            Err(TaskError::NotDeleted) => return Err(TaskCommandError::NotDeleted(id)),
            Err(reason) => {
                tracing::debug!(%reason, "command refused");
                return Err(TaskCommandError::NotFound(id));
            }
        };
        if !precondition.allows(loaded.version) {
            return Err(TaskCommandError::PreconditionFailed {
                current: Some(loaded.version),
            });
        }
        if events.is_empty() {
            return Ok(Ack {
                id: id.0,
                version: loaded.version,
                position: loaded.position,
            });
        }
        let new_events = to_append(id, &loaded.state, &events, change, ctx, first)?;
        match append_on(store, recent, id, &known, &events, new_events).await {
            Ok(ack) => return Ok(ack),
            Err(StoreError::Conflict { actual, .. }) => {
                if *precondition != Precondition::Latest {
                    return Err(TaskCommandError::PreconditionFailed { current: actual });
                }
                tracing::debug!(attempt, ?actual, "lost a race; re-reading");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(TaskCommandError::Contended {
        attempts: MAX_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tasklog_events::domain::{TaskTitle, UserId};

    use super::*;
    use crate::tasks::fake_store::AlwaysConflicting;

    #[test]
    fn backoff_stays_under_a_cap_that_grows_then_stops() {
        for attempt in 0..40 {
            let cap = BACKOFF_BASE
                .saturating_mul(1 << attempt.min(10))
                .min(BACKOFF_CAP);
            assert!(backoff(attempt) < cap, "attempt {attempt}");
        }
        assert_eq!(
            BACKOFF_BASE.saturating_mul(1 << 10).min(BACKOFF_CAP),
            BACKOFF_CAP
        );
    }

    fn ctx(actor: UserId) -> CommandContext {
        CommandContext {
            actor,
            request_id: "r".into(),
            idempotency_key: None,
        }
    }

    fn retitle() -> Change {
        Change::Update(TaskPatch {
            title: Some(TaskTitle::parse("new").unwrap()),
            ..TaskPatch::default()
        })
    }

    #[tokio::test]
    async fn a_writer_that_keeps_losing_gives_up_after_the_bound_with_contended() {
        let (id, owner) = (TaskId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let store = AlwaysConflicting::with_task(id, owner);
        let got = change_task(
            &store,
            &RecentTasks::disabled(),
            id,
            &retitle(),
            &Precondition::Latest,
            &ctx(owner),
        )
        .await;
        assert!(matches!(
            got,
            Err(TaskCommandError::Contended {
                attempts: MAX_ATTEMPTS
            })
        ));
        assert_eq!(store.appends.load(Ordering::SeqCst), MAX_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn a_conditional_writer_that_loses_once_is_refused_at_once() {
        let (id, owner) = (TaskId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let store = AlwaysConflicting::with_task(id, owner);
        let at_zero = Precondition::AtVersion(vec![0]);
        let got = change_task(
            &store,
            &RecentTasks::disabled(),
            id,
            &retitle(),
            &at_zero,
            &ctx(owner),
        )
        .await;
        assert!(matches!(
            got,
            Err(TaskCommandError::PreconditionFailed { current: Some(1) })
        ));
        assert_eq!(store.appends.load(Ordering::SeqCst), 1);
    }

    /// Given a store whose task is remembered at version 0, its stream's
    /// end, when `actor` (the owner when None) retitles it with `If-Match:
    /// "3"`: the store, to look into, and the answer.
    async fn unmet_if_match_on_remembered(
        actor: Option<UserId>,
    ) -> (AlwaysConflicting, Result<Ack, TaskCommandError>) {
        let (id, owner) = (TaskId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let store = AlwaysConflicting::with_task(id, owner);
        let recent = RecentTasks::with_capacity_bytes(1 << 20);
        let loaded = task_stream::load(&store, id, None).await.unwrap();
        recent.remember(
            id,
            Arc::new(Recent {
                state: loaded.state,
                version: 0,
                position: 1,
            }),
        );
        store.reads.lock().unwrap().clear();
        let got = change_task(
            &store,
            &recent,
            id,
            &retitle(),
            &Precondition::AtVersion(vec![3]),
            &ctx(actor.unwrap_or(owner)),
        )
        .await;
        (store, got)
    }

    #[tokio::test]
    async fn an_unmet_if_match_on_a_remembered_current_task_reads_only_past_it() {
        let (store, got) = unmet_if_match_on_remembered(None).await;
        assert!(
            matches!(
                got,
                Err(TaskCommandError::PreconditionFailed { current: Some(0) })
            ),
            "{got:?}"
        );
        assert_eq!(*store.reads.lock().unwrap(), vec![1]);
        assert_eq!(store.appends.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_unmet_if_match_on_anothers_remembered_task_is_a_404() {
        let (store, got) = unmet_if_match_on_remembered(Some(UserId(Uuid::now_v7()))).await;
        assert!(matches!(got, Err(TaskCommandError::NotFound(_))), "{got:?}");
        assert_eq!(store.appends.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn preconditions_allow_only_their_versions() {
        assert!(Precondition::Latest.allows(7));
        assert!(Precondition::AtVersion(vec![3, 4]).allows(4));
        assert!(!Precondition::AtVersion(vec![3]).allows(4));
    }
}
