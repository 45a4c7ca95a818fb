//! Given/when/then tests of the aggregate: given past events, when a command,
//! then these new events (or this refusal).

use chrono::{DateTime, Duration, TimeZone, Utc};
use uuid::Uuid;

use super::*;

struct Given(Vec<TaskEvent>);
struct When(TaskState, Result<Vec<TaskEvent>, TaskError>);

fn given(events: Vec<TaskEvent>) -> Given {
    Given(events)
}

impl Given {
    fn when(self, command: TaskCommand) -> When {
        let state = fold(&self.0);
        let result = decide(&state, command);
        When(state, result)
    }
}

impl When {
    fn then_expect(self, expected: Vec<TaskEvent>) -> TaskState {
        assert_eq!(self.1, Ok(expected));
        let events = self.1.unwrap_or_default();
        events.iter().fold(self.0, evolve)
    }

    fn then_fails_with(self, expected: TaskError) {
        assert_eq!(self.1, Err(expected));
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
}

fn later(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

struct Fixture {
    task: TaskId,
    owner: UserId,
    stranger: UserId,
}

fn fixture() -> Fixture {
    Fixture {
        task: TaskId(Uuid::now_v7()),
        owner: UserId(Uuid::new_v4()),
        stranger: UserId(Uuid::new_v4()),
    }
}

fn title(s: &str) -> TaskTitle {
    TaskTitle::parse(s).unwrap()
}

fn create(f: &Fixture) -> CreateTask {
    CreateTask {
        task_id: f.task,
        owner: f.owner,
        title: title("Write the report"),
        description: TaskDescription::default(),
        status: Status::Todo,
        priority: Priority::Medium,
        due_at: None,
        tags: Tags::default(),
        at: t0(),
    }
}

fn created(f: &Fixture) -> TaskEvent {
    let c = create(f);
    TaskEvent::Created(TaskCreated {
        task_id: c.task_id,
        owner_id: c.owner,
        title: c.title,
        description: c.description,
        status: c.status,
        priority: c.priority,
        due_at: c.due_at,
        tags: c.tags,
        occurred_at: c.at,
    })
}

fn update(actor: UserId, patch: TaskPatch, at: DateTime<Utc>) -> TaskCommand {
    TaskCommand::Update { actor, patch, at }
}

fn deleted(at: DateTime<Utc>) -> TaskEvent {
    TaskEvent::Deleted(TaskDeleted {
        status: Status::Todo,
        priority: Priority::Medium,
        occurred_at: at,
    })
}

#[test]
fn creating_a_new_task_records_task_created_with_every_field() {
    let f = fixture();
    let state = given(vec![])
        .when(TaskCommand::Create(create(&f)))
        .then_expect(vec![created(&f)]);
    let task = state.live().unwrap();
    assert_eq!(task.owner, f.owner);
    assert_eq!(task.created_at, t0());
    assert_eq!(task.updated_at, t0());
    assert_eq!(task.completed_at, None);
}

#[test]
fn creating_a_task_that_is_already_done_sets_completed_at() {
    let f = fixture();
    let mut c = create(&f);
    c.status = Status::Done;
    let state = given(vec![])
        .when(TaskCommand::Create(c))
        .then_expect(vec![TaskEvent::Created(TaskCreated {
            status: Status::Done,
            ..match created(&f) {
                TaskEvent::Created(e) => e,
                _ => unreachable!(),
            }
        })]);
    assert_eq!(state.live().unwrap().completed_at, Some(t0()));
}

#[test]
fn creating_a_task_whose_stream_exists_is_refused() {
    let f = fixture();
    given(vec![created(&f)])
        .when(TaskCommand::Create(create(&f)))
        .then_fails_with(TaskError::AlreadyExists);
}

#[test]
fn a_patch_emits_one_event_per_changed_field_only() {
    let f = fixture();
    let due = later(600);
    let patch = TaskPatch {
        title: Some(title("Write the report")), // unchanged
        description: Some(TaskDescription::parse("with figures").unwrap()),
        status: Some(Status::InProgress),
        priority: Some(Priority::Urgent),
        due_at: Some(Some(due)),
        tags: Some(Tags::parse(&["Work", "work", "q3"]).unwrap()),
    };
    let state = given(vec![created(&f)])
        .when(update(f.owner, patch, later(5)))
        .then_expect(vec![
            TaskEvent::DescriptionChanged(TaskDescriptionChanged {
                description: TaskDescription::parse("with figures").unwrap(),
                occurred_at: later(5),
            }),
            TaskEvent::StatusChanged(TaskStatusChanged {
                from: Status::Todo,
                to: Status::InProgress,
                occurred_at: later(5),
            }),
            TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::Medium,
                to: Priority::Urgent,
                occurred_at: later(5),
            }),
            TaskEvent::DueDateChanged(TaskDueDateChanged {
                due_at: Some(due),
                occurred_at: later(5),
            }),
            TaskEvent::TagsChanged(TaskTagsChanged {
                tags: Tags::parse(&["q3", "work"]).unwrap(),
                occurred_at: later(5),
            }),
        ]);
    let task = state.live().unwrap();
    assert_eq!(task.updated_at, later(5));
    assert_eq!(task.tags.to_strings(), vec!["q3", "work"]);
    assert_eq!(task.due_at, Some(due));
}

#[test]
fn a_patch_that_changes_nothing_emits_nothing() {
    let f = fixture();
    let same = TaskPatch {
        title: Some(title("  Write the report ")),
        status: Some(Status::Todo),
        priority: Some(Priority::Medium),
        due_at: Some(None),
        tags: Some(Tags::default()),
        description: Some(TaskDescription::default()),
    };
    given(vec![created(&f)])
        .when(update(f.owner, same, later(1)))
        .then_expect(vec![]);
    given(vec![created(&f)])
        .when(update(f.owner, TaskPatch::default(), later(1)))
        .then_expect(vec![]);
}

#[test]
fn clearing_the_due_date_records_a_due_date_change_to_none() {
    let f = fixture();
    let set = TaskEvent::DueDateChanged(TaskDueDateChanged {
        due_at: Some(later(60)),
        occurred_at: later(1),
    });
    let patch = TaskPatch {
        due_at: Some(None),
        ..TaskPatch::default()
    };
    let state = given(vec![created(&f), set])
        .when(update(f.owner, patch, later(2)))
        .then_expect(vec![TaskEvent::DueDateChanged(TaskDueDateChanged {
            due_at: None,
            occurred_at: later(2),
        })]);
    assert_eq!(state.live().unwrap().due_at, None);
}

#[test]
fn completed_at_is_set_on_entering_done_and_cleared_on_leaving_it() {
    let f = fixture();
    let done = TaskPatch {
        status: Some(Status::Done),
        ..TaskPatch::default()
    };
    let state = given(vec![created(&f)])
        .when(update(f.owner, done, later(3)))
        .then_expect(vec![TaskEvent::StatusChanged(TaskStatusChanged {
            from: Status::Todo,
            to: Status::Done,
            occurred_at: later(3),
        })]);
    assert_eq!(state.live().unwrap().completed_at, Some(later(3)));

    let reopened = TaskEvent::StatusChanged(TaskStatusChanged {
        from: Status::Done,
        to: Status::InProgress,
        occurred_at: later(4),
    });
    let state = evolve(state, &reopened);
    assert_eq!(state.live().unwrap().completed_at, None);
    assert_eq!(state.live().unwrap().status, Status::InProgress);
}

#[test]
fn another_users_patch_or_delete_is_refused_as_not_owner() {
    let f = fixture();
    let patch = TaskPatch {
        title: Some(title("mine now")),
        ..TaskPatch::default()
    };
    given(vec![created(&f)])
        .when(update(f.stranger, patch, later(1)))
        .then_fails_with(TaskError::NotOwner);
    given(vec![created(&f)])
        .when(TaskCommand::Delete {
            actor: f.stranger,
            at: later(1),
        })
        .then_fails_with(TaskError::NotOwner);
    // Even once deleted, a stranger learns nothing more than "not yours".
    given(vec![created(&f), deleted(later(1))])
        .when(TaskCommand::Delete {
            actor: f.stranger,
            at: later(2),
        })
        .then_fails_with(TaskError::NotOwner);
}

#[test]
fn deleting_records_the_status_and_priority_it_had() {
    let f = fixture();
    let state = given(vec![created(&f)])
        .when(TaskCommand::Delete {
            actor: f.owner,
            at: later(9),
        })
        .then_expect(vec![deleted(later(9))]);
    assert!(matches!(state, TaskState::Deleted(_)));
}

#[test]
fn commands_on_a_deleted_task_are_refused() {
    let f = fixture();
    let history = vec![created(&f), deleted(later(1))];
    given(history.clone())
        .when(update(f.owner, TaskPatch::default(), later(2)))
        .then_fails_with(TaskError::Deleted);
    given(history)
        .when(TaskCommand::Delete {
            actor: f.owner,
            at: later(2),
        })
        .then_fails_with(TaskError::Deleted);
}

#[test]
fn commands_on_an_absent_task_are_not_found() {
    let f = fixture();
    given(vec![])
        .when(update(f.owner, TaskPatch::default(), later(1)))
        .then_fails_with(TaskError::NotFound);
    given(vec![])
        .when(TaskCommand::Delete {
            actor: f.owner,
            at: later(1),
        })
        .then_fails_with(TaskError::NotFound);
}

#[test]
fn evolve_ignores_events_that_do_not_fit_the_state() {
    let f = fixture();
    let stray = TaskEvent::TitleChanged(TaskTitleChanged {
        title: title("ghost"),
        occurred_at: later(1),
    });
    assert_eq!(evolve(TaskState::Absent, &stray), TaskState::Absent);
    let gone = fold(&[created(&f), deleted(later(1))]);
    assert_eq!(evolve(gone.clone(), &stray), gone);
}

fn restore(actor: UserId, at: DateTime<Utc>) -> TaskCommand {
    TaskCommand::Restore { actor, at }
}

fn restored(f: &Fixture, at: DateTime<Utc>) -> TaskEvent {
    let TaskEvent::Created(c) = created(f) else {
        unreachable!()
    };
    TaskEvent::Restored(TaskRestored {
        task_id: c.task_id,
        owner_id: c.owner_id,
        title: c.title,
        description: c.description,
        status: c.status,
        priority: c.priority,
        due_at: c.due_at,
        tags: c.tags,
        created_at: c.occurred_at,
        completed_at: None,
        occurred_at: at,
    })
}

#[test]
fn restoring_a_deleted_task_brings_it_back_as_it_was() {
    let f = fixture();
    let retitled = TaskEvent::TitleChanged(TaskTitleChanged {
        title: title("Renamed"),
        occurred_at: later(1),
    });
    let before = fold(&[created(&f), retitled.clone()]);
    let state = given(vec![created(&f), retitled, deleted(later(2))])
        .when(restore(f.owner, later(3)))
        .then_expect(vec![TaskEvent::Restored(TaskRestored {
            title: title("Renamed"),
            ..match restored(&f, later(3)) {
                TaskEvent::Restored(r) => r,
                _ => unreachable!(),
            }
        })]);
    let (task, was) = (state.live().unwrap(), before.live().unwrap());
    assert_eq!(task.title, was.title);
    assert_eq!(task.created_at, was.created_at);
    assert_eq!(task.updated_at, later(3));
}

#[test]
fn restoring_a_live_task_is_refused_as_not_deleted() {
    let f = fixture();
    given(vec![created(&f)])
        .when(restore(f.owner, later(1)))
        .then_fails_with(TaskError::NotDeleted);
    given(vec![created(&f), deleted(later(1)), restored(&f, later(2))])
        .when(restore(f.owner, later(3)))
        .then_fails_with(TaskError::NotDeleted);
}

#[test]
fn restoring_someone_elses_or_an_absent_task_is_refused() {
    let f = fixture();
    given(vec![created(&f), deleted(later(1))])
        .when(restore(f.stranger, later(2)))
        .then_fails_with(TaskError::NotOwner);
    given(vec![])
        .when(restore(f.owner, later(2)))
        .then_fails_with(TaskError::NotFound);
}

#[test]
fn a_restored_task_can_be_changed_and_deleted_again() {
    let f = fixture();
    let history = vec![created(&f), deleted(later(1)), restored(&f, later(2))];
    given(history.clone())
        .when(update(
            f.owner,
            TaskPatch {
                title: Some(title("Again")),
                ..TaskPatch::default()
            },
            later(3),
        ))
        .then_expect(vec![TaskEvent::TitleChanged(TaskTitleChanged {
            title: title("Again"),
            occurred_at: later(3),
        })]);
    let state = given(history)
        .when(TaskCommand::Delete {
            actor: f.owner,
            at: later(3),
        })
        .then_expect(vec![deleted(later(3))]);
    assert!(matches!(state, TaskState::Deleted(_)));
}

fn revert(actor: UserId, target: &TaskState, at: DateTime<Utc>) -> TaskCommand {
    TaskCommand::Revert {
        actor,
        target: Box::new(target.live().unwrap().clone()),
        at,
    }
}

#[test]
fn reverting_emits_one_change_event_per_field_that_differs_from_the_target() {
    let f = fixture();
    let history = vec![
        created(&f),
        TaskEvent::TitleChanged(TaskTitleChanged {
            title: title("Second"),
            occurred_at: later(1),
        }),
        TaskEvent::StatusChanged(TaskStatusChanged {
            from: Status::Todo,
            to: Status::Done,
            occurred_at: later(2),
        }),
    ];
    let at_version_0 = fold(&history[..1]);
    let state = given(history)
        .when(revert(f.owner, &at_version_0, later(3)))
        .then_expect(vec![
            TaskEvent::TitleChanged(TaskTitleChanged {
                title: title("Write the report"),
                occurred_at: later(3),
            }),
            TaskEvent::StatusChanged(TaskStatusChanged {
                from: Status::Done,
                to: Status::Todo,
                occurred_at: later(3),
            }),
        ]);
    let (task, target) = (state.live().unwrap(), at_version_0.live().unwrap());
    assert_eq!(task.title, target.title);
    assert_eq!(task.status, target.status);
    assert_eq!(task.completed_at, None);
}

#[test]
fn reverting_to_the_current_fields_emits_nothing() {
    let f = fixture();
    let now = fold(&[created(&f)]);
    given(vec![created(&f)])
        .when(revert(f.owner, &now, later(1)))
        .then_expect(vec![]);
}

#[test]
fn reverting_a_deleted_task_restores_it_first() {
    let f = fixture();
    let history = vec![
        created(&f),
        TaskEvent::PriorityChanged(TaskPriorityChanged {
            from: Priority::Medium,
            to: Priority::High,
            occurred_at: later(1),
        }),
        deleted(later(2)),
    ];
    let at_version_0 = fold(&history[..1]);
    let state = given(history)
        .when(revert(f.owner, &at_version_0, later(3)))
        .then_expect(vec![
            TaskEvent::Restored(TaskRestored {
                priority: Priority::High,
                ..match restored(&f, later(3)) {
                    TaskEvent::Restored(r) => r,
                    _ => unreachable!(),
                }
            }),
            TaskEvent::PriorityChanged(TaskPriorityChanged {
                from: Priority::High,
                to: Priority::Medium,
                occurred_at: later(3),
            }),
        ]);
    assert_eq!(state.live().unwrap().priority, Priority::Medium);
}

#[test]
fn reverting_someone_elses_task_is_refused() {
    let f = fixture();
    let now = fold(&[created(&f)]);
    given(vec![created(&f)])
        .when(revert(f.stranger, &now, later(1)))
        .then_fails_with(TaskError::NotOwner);
}
