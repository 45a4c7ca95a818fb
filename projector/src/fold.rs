//! The pure part of projecting: decoding a batch of recorded events, folding
//! them into the rows they touch with the domain's `evolve`, and the count
//! deltas they cause. No I/O here; the Postgres and Redis projections and
//! `rebuild`/`verify` all share it, so they cannot disagree.

use std::collections::{HashMap, HashSet};

use tasklog_events::Position;
use tasklog_events::RecordedEvent;
use tasklog_events::domain::{
    Priority, Status, Task, TaskEvent, TaskId, TaskState, UserId, evolve,
};
use tasklog_events::erasure::UserErased;
use tasklog_events::sealing::is_sealed;

/// A live task as the read model holds it: the domain's task and the version
/// of the last event of its stream that was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub task: Task,
    pub version: u64,
}

/// One decoded event of a task stream.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEventAt {
    pub task_id: TaskId,
    pub version: u64,
    pub position: Position,
    /// From `TaskCreated`, else from the event's metadata; `None` when an old
    /// event carries neither (the counts projection then looks it up).
    pub owner: Option<UserId>,
    pub event: TaskEvent,
}

/// A recorded event the projections pass over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub position: Position,
    pub stream_id: String,
    pub reason: String,
}

/// A batch decoded: its task events in order, what could not be read, and
/// the owners it erases.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Task events, none of an owner erased in the batch.
    pub events: Vec<TaskEventAt>,
    pub skipped: Vec<Skipped>,
    /// Owners whose `UserErased` is in the batch: every row, change and
    /// count of theirs goes, in the batch's transaction.
    pub erased: Vec<UserId>,
    /// Task events still sealed: their owner's key is gone (erased), so they
    /// are left out like their owner's other events, not reported as corrupt.
    pub sealed: usize,
}

/// Decodes the task events of a batch, in order. Events of other streams are
/// not ours (skipped silently); task events that cannot be decoded are
/// reported, so the caller can log and count them instead of stalling forever.
pub fn decode_batch(events: &[RecordedEvent]) -> Decoded {
    decode_each(events.iter().map(|e| (e, e.data.clone())))
}

/// `decode_batch` for events the caller gives up: payloads are moved, not copied.
pub fn decode_owned(mut events: Vec<RecordedEvent>) -> Decoded {
    let payloads: Vec<serde_json::Value> = events
        .iter_mut()
        .map(|e| std::mem::take(&mut e.data))
        .collect();
    decode_each(events.iter().zip(payloads))
}

fn decode_each<'a>(
    events: impl Iterator<Item = (&'a RecordedEvent, serde_json::Value)>,
) -> Decoded {
    let mut decoded = Vec::new();
    let mut skipped = Vec::new();
    let mut erased = Vec::new();
    let mut sealed = 0;
    for (recorded, data) in events {
        let Some(task_id) = TaskId::from_stream_id(&recorded.stream_id) else {
            if let Some(erasure) = UserErased::from_recorded(recorded) {
                erased.push(erasure.user_id);
            }
            continue;
        };
        if is_sealed(&data) {
            sealed += 1;
            continue;
        }
        match TaskEvent::decode(&recorded.event_type, recorded.schema_version, data) {
            Ok(event) => {
                let owner = match &event {
                    TaskEvent::Created(c) => Some(c.owner_id),
                    TaskEvent::Restored(r) => Some(r.owner_id),
                    _ => recorded.metadata.owner_id.map(UserId),
                };
                decoded.push(TaskEventAt {
                    task_id,
                    version: recorded.version,
                    position: recorded.position,
                    owner,
                    event,
                });
            }
            Err(e) => skipped.push(Skipped {
                position: recorded.position,
                stream_id: recorded.stream_id.clone(),
                reason: e.to_string(),
            }),
        }
    }
    if !erased.is_empty() {
        // Plaintext events of an erased owner (written before sealing) are
        // in the batch only before the erasure: they go with it.
        decoded.retain(|e| e.owner.is_none_or(|o| !erased.contains(&o)));
    }
    Decoded {
        events: decoded,
        skipped,
        erased,
        sealed,
    }
}

/// Drops every row of the `erased` owners: what a `UserErased` does to a
/// fold kept in memory (`verify`, `rebuild`).
pub fn erase_rows(rows: &mut HashMap<TaskId, TaskRow>, erased: &[UserId]) {
    if !erased.is_empty() {
        rows.retain(|_, row| !erased.contains(&row.task.owner));
    }
}

/// Each touched task's first event in the batch, in order.
fn first_events(events: &[TaskEventAt]) -> impl Iterator<Item = &TaskEventAt> {
    let mut seen = HashSet::new();
    events.iter().filter(move |e| seen.insert(e.task_id))
}

/// The ids of the tasks a batch touches, in order of first appearance.
pub fn touched_ids(events: &[TaskEventAt]) -> Vec<TaskId> {
    first_events(events).map(|e| e.task_id).collect()
}

/// The touched tasks whose stored row the fold needs: those whose first
/// event in the batch is not their creation. A task created in the batch
/// starts from nothing (a stream's event 0 is its `TaskCreated`), so
/// reading its row would only find none.
pub fn ids_with_history(events: &[TaskEventAt]) -> Vec<TaskId> {
    first_events(events)
        .filter(|e| e.version > 0)
        .map(|e| e.task_id)
        .collect()
}

/// What a batch does to the read model.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowChanges {
    /// Rows to insert or overwrite (live after the batch and changed by it).
    pub upserts: Vec<TaskId>,
    /// Tasks not live after the batch: deleted, or created and deleted in it.
    pub deletes: Vec<TaskId>,
}

impl RowChanges {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Folds `events` into `rows`, which must hold the current row of every
/// touched task that has one (and may hold any others). Afterwards `rows`
/// holds the touched tasks' new rows; the result names what changed.
///
/// An event at or below a live row's version was applied already and changes
/// nothing. (A deleted task leaves no row to compare with: replays are kept
/// out by the checkpoint, this is only a second line of defence.)
pub fn fold_rows(rows: &mut HashMap<TaskId, TaskRow>, events: &[TaskEventAt]) -> RowChanges {
    let mut changed: HashSet<TaskId> = HashSet::new();
    // Tasks that became not-live in this batch (deleted, or never live).
    let mut gone: HashSet<TaskId> = HashSet::new();
    for e in events {
        let state = match rows.remove(&e.task_id) {
            Some(row) if e.version <= row.version => {
                rows.insert(e.task_id, row);
                continue;
            }
            Some(row) => TaskState::Live(row.task),
            // A deleted task has no row; its restore carries the whole task.
            None => match &e.event {
                TaskEvent::Restored(r) => TaskState::Deleted(r.task()),
                _ => TaskState::Absent,
            },
        };
        match evolve(state, &e.event) {
            TaskState::Live(task) => {
                rows.insert(
                    e.task_id,
                    TaskRow {
                        task,
                        version: e.version,
                    },
                );
                gone.remove(&e.task_id);
                changed.insert(e.task_id);
            }
            TaskState::Deleted(_) | TaskState::Absent => {
                gone.insert(e.task_id);
                changed.remove(&e.task_id);
            }
        }
    }
    let order = touched_ids(events);
    RowChanges {
        upserts: order
            .iter()
            .copied()
            .filter(|id| changed.contains(id))
            .collect(),
        deletes: order
            .iter()
            .copied()
            .filter(|id| gone.contains(id))
            .collect(),
    }
}

/// Live tasks of one owner, by status and by priority.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: i64,
    pub todo: i64,
    pub in_progress: i64,
    pub done: i64,
    pub low: i64,
    pub medium: i64,
    pub high: i64,
    pub urgent: i64,
}

impl Counts {
    /// The Redis hash fields, in the order of `to_array`.
    pub const FIELDS: [&'static str; 8] = tasklog_readmodel::counts::FIELDS;

    pub fn to_array(self) -> [i64; 8] {
        [
            self.total,
            self.todo,
            self.in_progress,
            self.done,
            self.low,
            self.medium,
            self.high,
            self.urgent,
        ]
    }

    pub fn from_array(a: [i64; 8]) -> Self {
        let [total, todo, in_progress, done, low, medium, high, urgent] = a;
        Self {
            total,
            todo,
            in_progress,
            done,
            low,
            medium,
            high,
            urgent,
        }
    }

    pub fn is_zero(self) -> bool {
        self == Self::default()
    }

    fn status_mut(&mut self, s: Status) -> &mut i64 {
        match s {
            Status::Todo => &mut self.todo,
            Status::InProgress => &mut self.in_progress,
            Status::Done => &mut self.done,
        }
    }

    fn priority_mut(&mut self, p: Priority) -> &mut i64 {
        match p {
            Priority::Low => &mut self.low,
            Priority::Medium => &mut self.medium,
            Priority::High => &mut self.high,
            Priority::Urgent => &mut self.urgent,
        }
    }

    /// Adds (`sign` 1) or takes away (-1) one task with this status and priority.
    pub fn add_task(&mut self, status: Status, priority: Priority, sign: i64) {
        self.total += sign;
        *self.status_mut(status) += sign;
        *self.priority_mut(priority) += sign;
    }

    /// What one event changes in its owner's counts; events carry what was
    /// before (`from`, the deleted or restored task's status and priority),
    /// so no state is needed.
    pub fn apply_event(&mut self, event: &TaskEvent) {
        match event {
            TaskEvent::Created(e) => self.add_task(e.status, e.priority, 1),
            TaskEvent::StatusChanged(e) => {
                *self.status_mut(e.from) -= 1;
                *self.status_mut(e.to) += 1;
            }
            TaskEvent::PriorityChanged(e) => {
                *self.priority_mut(e.from) -= 1;
                *self.priority_mut(e.to) += 1;
            }
            TaskEvent::Deleted(e) => self.add_task(e.status, e.priority, -1),
            TaskEvent::Restored(e) => self.add_task(e.status, e.priority, 1),
            TaskEvent::TitleChanged(_)
            | TaskEvent::DescriptionChanged(_)
            | TaskEvent::DueDateChanged(_)
            | TaskEvent::TagsChanged(_) => {}
        }
    }
}

/// The change in every owner's counts that a batch causes. Events without an
/// owner are left out and returned, for the caller to resolve.
pub fn count_deltas(events: &[TaskEventAt]) -> (HashMap<UserId, Counts>, Vec<TaskId>) {
    let mut deltas: HashMap<UserId, Counts> = HashMap::new();
    let mut unowned = Vec::new();
    for e in events {
        match e.owner {
            Some(owner) => deltas.entry(owner).or_default().apply_event(&e.event),
            None => unowned.push(e.task_id),
        }
    }
    (deltas, unowned)
}

/// The counts of a set of live tasks, per owner: what Redis must hold.
pub fn counts_of<'a>(rows: impl IntoIterator<Item = &'a TaskRow>) -> HashMap<UserId, Counts> {
    let mut counts: HashMap<UserId, Counts> = HashMap::new();
    for row in rows {
        counts
            .entry(row.task.owner)
            .or_default()
            .add_task(row.task.status, row.task.priority, 1);
    }
    counts
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use tasklog_events::domain::{
        Tags, TaskCreated, TaskDeleted, TaskDescription, TaskDescriptionChanged,
        TaskDueDateChanged, TaskPriorityChanged, TaskStatusChanged, TaskTagsChanged, TaskTitle,
        TaskTitleChanged,
    };
    use uuid::Uuid;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
    }

    struct Given {
        task: TaskId,
        owner: UserId,
        next_version: u64,
        events: Vec<TaskEventAt>,
    }

    impl Given {
        fn a_task() -> Self {
            Self {
                task: TaskId(Uuid::now_v7()),
                owner: UserId(Uuid::new_v4()),
                next_version: 0,
                events: vec![],
            }
        }

        fn then_event(mut self, event: TaskEvent) -> Self {
            self.events.push(TaskEventAt {
                task_id: self.task,
                version: self.next_version,
                position: Position::new(self.next_version + 1, 0),
                owner: Some(self.owner),
                event,
            });
            self.next_version += 1;
            self
        }

        fn created(self, status: Status, priority: Priority) -> Self {
            let (task, owner) = (self.task, self.owner);
            self.then_event(TaskEvent::Created(TaskCreated {
                task_id: task,
                owner_id: owner,
                title: TaskTitle::parse("Write the projector").unwrap(),
                description: TaskDescription::parse("Set-based").unwrap(),
                status,
                priority,
                due_at: None,
                tags: Tags::parse(&["work"]).unwrap(),
                occurred_at: t0(),
            }))
        }

        fn at(minutes: i64) -> DateTime<Utc> {
            t0() + Duration::minutes(minutes)
        }

        fn fold(&self) -> (HashMap<TaskId, TaskRow>, RowChanges) {
            let mut rows = HashMap::new();
            let changes = fold_rows(&mut rows, &self.events);
            (rows, changes)
        }
    }

    #[test]
    fn given_a_created_task_then_one_row_holds_every_field_and_version_zero() {
        let given = Given::a_task().created(Status::Todo, Priority::High);
        let (rows, changes) = given.fold();
        assert_eq!(changes.upserts, vec![given.task]);
        assert!(changes.deletes.is_empty());
        let row = &rows[&given.task];
        assert_eq!(row.version, 0);
        assert_eq!(row.task.owner, given.owner);
        assert_eq!(row.task.title.as_str(), "Write the projector");
        assert_eq!(row.task.created_at, t0());
        assert_eq!(row.task.updated_at, t0());
        assert_eq!(row.task.completed_at, None);
    }

    #[test]
    fn given_each_patch_kind_then_its_field_and_updated_at_change() {
        let due = Given::at(60 * 24);
        let given = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(TaskEvent::TitleChanged(TaskTitleChanged {
                title: TaskTitle::parse("Renamed").unwrap(),
                occurred_at: Given::at(1),
            }))
            .then_event(TaskEvent::DescriptionChanged(TaskDescriptionChanged {
                description: TaskDescription::parse("new words").unwrap(),
                occurred_at: Given::at(2),
            }))
            .then_event(TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::Low,
                to: Priority::Urgent,
                occurred_at: Given::at(3),
            }))
            .then_event(TaskEvent::DueDateChanged(TaskDueDateChanged {
                due_at: Some(due),
                occurred_at: Given::at(4),
            }))
            .then_event(TaskEvent::TagsChanged(TaskTagsChanged {
                tags: Tags::parse(&["a", "b"]).unwrap(),
                occurred_at: Given::at(5),
            }));
        let (rows, _) = given.fold();
        let row = &rows[&given.task];
        assert_eq!(row.task.title.as_str(), "Renamed");
        assert_eq!(row.task.description.as_str(), "new words");
        assert_eq!(row.task.priority, Priority::Urgent);
        assert_eq!(row.task.due_at, Some(due));
        assert_eq!(row.task.tags.to_strings(), vec!["a", "b"]);
        assert_eq!(row.task.updated_at, Given::at(5));
        assert_eq!(row.task.created_at, t0());
        assert_eq!(row.version, 5);
    }

    #[test]
    fn given_status_into_done_then_completed_at_is_set_and_out_of_done_clears_it() {
        let into_done = Given::a_task()
            .created(Status::InProgress, Priority::Medium)
            .then_event(TaskEvent::StatusChanged(TaskStatusChanged {
                from: Status::InProgress,
                to: Status::Done,
                occurred_at: Given::at(7),
            }));
        let (rows, _) = into_done.fold();
        assert_eq!(rows[&into_done.task].task.completed_at, Some(Given::at(7)));

        let reopened = into_done.then_event(TaskEvent::StatusChanged(TaskStatusChanged {
            from: Status::Done,
            to: Status::Todo,
            occurred_at: Given::at(8),
        }));
        let (rows, _) = reopened.fold();
        assert_eq!(rows[&reopened.task].task.completed_at, None);
        assert_eq!(rows[&reopened.task].task.status, Status::Todo);
    }

    #[test]
    fn given_a_delete_then_the_row_goes_even_when_created_in_the_same_batch() {
        let given = Given::a_task()
            .created(Status::Done, Priority::Low)
            .then_event(TaskEvent::Deleted(TaskDeleted {
                status: Status::Done,
                priority: Priority::Low,
                occurred_at: Given::at(1),
            }));
        let (rows, changes) = given.fold();
        assert!(rows.is_empty());
        assert!(changes.upserts.is_empty());
        assert_eq!(changes.deletes, vec![given.task]);
    }

    fn restored_at(given: &Given, minutes: i64) -> TaskEvent {
        let (rows, _) = given.fold();
        let task = &rows[&given.task].task;
        TaskEvent::Restored(tasklog_events::domain::TaskRestored::of(
            task,
            Given::at(minutes),
        ))
    }

    #[test]
    fn given_a_restore_in_a_later_batch_then_the_row_comes_back_as_it_was() {
        let live = Given::a_task()
            .created(Status::Done, Priority::High)
            .then_event(TaskEvent::TitleChanged(TaskTitleChanged {
                title: TaskTitle::parse("Kept").unwrap(),
                occurred_at: Given::at(1),
            }));
        let restore = restored_at(&live, 3);
        let (before, _) = live.fold();
        let given = live
            .then_event(TaskEvent::Deleted(TaskDeleted {
                status: Status::Done,
                priority: Priority::High,
                occurred_at: Given::at(2),
            }))
            .then_event(restore);
        // The delete was projected already: no row is left for the restore.
        let mut rows = HashMap::new();
        let changes = fold_rows(&mut rows, &given.events[3..]);
        assert_eq!(changes.upserts, vec![given.task]);
        let row = &rows[&given.task];
        let was = &before[&given.task].task;
        assert_eq!(row.version, 3);
        assert_eq!(row.task.title, was.title);
        assert_eq!(row.task.completed_at, was.completed_at);
        assert_eq!(row.task.created_at, was.created_at);
        assert_eq!(row.task.updated_at, Given::at(3));
        let (deltas, _) = count_deltas(&given.events);
        assert_eq!(deltas[&given.owner], counts_of(rows.values())[&given.owner]);
    }

    #[test]
    fn given_a_row_already_at_the_events_version_when_replayed_then_nothing_changes() {
        let given = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(TaskEvent::TitleChanged(TaskTitleChanged {
                title: TaskTitle::parse("Once").unwrap(),
                occurred_at: Given::at(1),
            }));
        let (mut rows, _) = given.fold();
        let before = rows.clone();
        let again = fold_rows(&mut rows, &given.events);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(rows, before);
    }

    #[test]
    fn given_a_lifecycle_then_count_deltas_match_the_counts_of_the_live_rows() {
        let kept = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(TaskEvent::StatusChanged(TaskStatusChanged {
                from: Status::Todo,
                to: Status::Done,
                occurred_at: Given::at(1),
            }))
            .then_event(TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::Low,
                to: Priority::High,
                occurred_at: Given::at(2),
            }));
        let mut deleted = Given::a_task().created(Status::InProgress, Priority::Urgent);
        deleted.owner = kept.owner;
        for e in &mut deleted.events {
            e.owner = Some(kept.owner);
            if let TaskEvent::Created(c) = &mut e.event {
                c.owner_id = kept.owner;
            }
        }
        let deleted = deleted.then_event(TaskEvent::Deleted(TaskDeleted {
            status: Status::InProgress,
            priority: Priority::Urgent,
            occurred_at: Given::at(3),
        }));
        let events: Vec<TaskEventAt> = kept
            .events
            .iter()
            .chain(deleted.events.iter())
            .cloned()
            .collect();

        let (deltas, unowned) = count_deltas(&events);
        assert!(unowned.is_empty());
        let mut rows = HashMap::new();
        fold_rows(&mut rows, &events);
        let expected = counts_of(rows.values());
        assert_eq!(deltas, expected);
        assert_eq!(
            deltas[&kept.owner],
            Counts {
                total: 1,
                done: 1,
                high: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn given_a_batch_then_only_tasks_not_created_in_it_need_their_stored_row() {
        let title = |minutes| {
            TaskEvent::TitleChanged(TaskTitleChanged {
                title: TaskTitle::parse("Renamed").unwrap(),
                occurred_at: Given::at(minutes),
            })
        };
        let fresh = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(title(1));
        let mut older = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(title(1));
        // Only its patch is in this batch: its creation came in an earlier one.
        older.events.remove(0);
        let batch: Vec<TaskEventAt> = older
            .events
            .iter()
            .chain(&fresh.events)
            .chain(&older.events)
            .cloned()
            .collect();
        assert_eq!(ids_with_history(&batch), vec![older.task]);
        assert!(ids_with_history(&fresh.events).is_empty());
    }

    #[test]
    fn given_an_event_without_an_owner_then_it_is_returned_for_lookup() {
        let mut given = Given::a_task()
            .created(Status::Todo, Priority::Low)
            .then_event(TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::Low,
                to: Priority::High,
                occurred_at: Given::at(1),
            }));
        given.events[1].owner = None;
        let (_, unowned) = count_deltas(&given.events);
        assert_eq!(unowned, vec![given.task]);
    }

    #[test]
    fn given_an_erasure_then_its_owners_events_go_sealed_ones_are_not_corrupt_and_rows_are_dropped()
    {
        use tasklog_events::Metadata;
        use tasklog_events::erasure::{UserErased, stream_id};
        let (erased, other) = (UserId(Uuid::new_v4()), UserId(Uuid::new_v4()));
        let created = |owner: UserId, title: &str| {
            let task = TaskId(Uuid::now_v7());
            let event = TaskEvent::Created(TaskCreated {
                task_id: task,
                owner_id: owner,
                title: TaskTitle::parse(title).unwrap(),
                description: TaskDescription::parse("").unwrap(),
                status: Status::Todo,
                priority: Priority::Low,
                due_at: None,
                tags: Tags::parse::<&str>(&[]).unwrap(),
                occurred_at: t0(),
            });
            (task, event.to_data())
        };
        let recorded =
            |stream: String, kind: &str, data: serde_json::Value, owner: UserId| RecordedEvent {
                position: Position::new(1, 1),
                stream_id: stream,
                version: 0,
                event_id: Uuid::new_v4(),
                event_type: kind.into(),
                schema_version: 2,
                data,
                metadata: Metadata {
                    owner_id: Some(owner.0),
                    ..Metadata::default()
                },
                recorded_at: t0(),
            };
        let (plain_task, plain) = created(erased, "written before sealing");
        let (_, mut sealed) = created(erased, "sealed, key gone");
        tasklog_events::sealing::seal(
            &mut sealed,
            &tasklog_events::sealing::DataKey::generate(),
            erased.0,
            Uuid::new_v4(),
        );
        let (kept_task, kept) = created(other, "someone else's");
        let erasure = UserErased {
            user_id: erased,
            occurred_at: t0(),
        }
        .to_new_event(Uuid::new_v4(), None);
        let batch = vec![
            recorded(plain_task.stream_id(), "TaskCreated", plain, erased),
            recorded(
                TaskId(Uuid::now_v7()).stream_id(),
                "TaskCreated",
                sealed,
                erased,
            ),
            recorded(kept_task.stream_id(), "TaskCreated", kept, other),
            recorded(stream_id(erased), &erasure.event_type, erasure.data, erased),
        ];
        let decoded = decode_batch(&batch);
        assert_eq!(decoded.erased, vec![erased]);
        assert_eq!(decoded.sealed, 1);
        assert!(decoded.skipped.is_empty(), "{:?}", decoded.skipped);
        let ids: Vec<TaskId> = decoded.events.iter().map(|e| e.task_id).collect();
        assert_eq!(ids, vec![kept_task]);

        // Rows of the owner from earlier batches go too.
        let mut rows = HashMap::new();
        let earlier = decode_batch(&batch[..1]);
        fold_rows(&mut rows, &earlier.events);
        fold_rows(&mut rows, &decoded.events);
        assert_eq!(rows.len(), 2);
        erase_rows(&mut rows, &decoded.erased);
        assert_eq!(rows.keys().copied().collect::<Vec<_>>(), vec![kept_task]);
    }

    #[test]
    fn decoding_skips_foreign_streams_and_reports_unreadable_task_events() {
        use tasklog_events::Metadata;
        let task = TaskId(Uuid::now_v7());
        let owner = Uuid::new_v4();
        let recorded = |stream: String, event_type: &str, data: serde_json::Value| RecordedEvent {
            position: Position::new(1, 1),
            stream_id: stream,
            version: 1,
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            schema_version: 1,
            data,
            metadata: Metadata {
                owner_id: Some(owner),
                ..Metadata::default()
            },
            recorded_at: t0(),
        };
        let batch = vec![
            recorded("account-1".into(), "Whatever", serde_json::json!({})),
            recorded(task.stream_id(), "TaskTitleChanged", serde_json::json!({})),
            recorded(
                task.stream_id(),
                "TaskTitleChanged",
                serde_json::json!({"title": "ok", "occurred_at": "2026-01-01T00:00:00Z"}),
            ),
        ];
        let Decoded {
            events: decoded,
            skipped,
            ..
        } = decode_batch(&batch);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].owner, Some(UserId(owner)));
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].stream_id, task.stream_id());
    }
}
