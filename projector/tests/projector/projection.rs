//! Every event type lands in the read model and the counts; applying a batch
//! twice changes nothing.

use tasklog_events::domain::{Priority, Status, Tags, TaskDescription, TaskPatch, TaskTitle};
use tasklog_projector::catch_up;
use tasklog_projector::counts::CountsProjection;
use tasklog_projector::projection::{Applied, Projection};
use tasklog_projector::tasks::TasksProjection;

use crate::helpers::{World, all_rows, owners, read_row, t};

fn count(c: &std::collections::HashMap<String, i64>, field: &str) -> i64 {
    c.get(field).copied().unwrap_or(0)
}

#[tokio::test]
async fn every_event_type_lands_in_the_read_model_and_the_counts() {
    let mut w = World::new().await;
    let owner = owners(1)[0];
    let id = w
        .writer
        .create(owner, "  Plan the week  ", Status::Todo, Priority::Low)
        .await;
    let reached = catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    assert_eq!(reached, w.head().await);

    let row = read_row(w.pool(), id).await.expect("created row");
    assert_eq!(row.owner_id, owner.0);
    assert_eq!(row.title, "Plan the week");
    assert_eq!(row.description, "first\tline\nsecond \\ line");
    assert_eq!(
        (
            row.status.as_str(),
            row.priority.as_str(),
            row.priority_rank
        ),
        ("todo", "low", 0)
    );
    assert_eq!(
        row.tags,
        vec!["a \"quoted\" {tag}".to_owned(), "home".to_owned()]
    );
    assert_eq!(row.search, "plan the week first\tline\nsecond \\ line");
    assert_eq!(row.version, 0);
    assert_eq!(row.completed_at, None);
    // Event times, not recording times, truncated to what Postgres keeps.
    assert_eq!(row.created_at, t(0).trunc_subsecs_micro());
    let counts = w.counts(owner).await;
    assert_eq!(
        (
            count(&counts, "total"),
            count(&counts, "todo"),
            count(&counts, "low")
        ),
        (1, 1, 1)
    );

    // Each patch kind.
    w.writer
        .update(
            id,
            TaskPatch {
                title: Some(TaskTitle::parse("Plan the MONTH").unwrap()),
                description: Some(TaskDescription::parse("Calendar").unwrap()),
                priority: Some(Priority::Urgent),
                due_at: Some(Some(t(60 * 24))),
                tags: Some(Tags::parse(&["work"]).unwrap()),
                ..TaskPatch::default()
            },
            t(5),
        )
        .await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let row = read_row(w.pool(), id).await.unwrap();
    assert_eq!(row.title, "Plan the MONTH");
    assert_eq!(row.description, "Calendar");
    assert_eq!((row.priority.as_str(), row.priority_rank), ("urgent", 3));
    assert_eq!(row.due_at, Some(t(60 * 24).trunc_subsecs_micro()));
    assert_eq!(row.tags, vec!["work".to_owned()]);
    assert_eq!(row.search, "plan the month calendar");
    assert_eq!(row.updated_at, t(5).trunc_subsecs_micro());
    assert_eq!(row.version, 5, "one event per changed field");
    let counts = w.counts(owner).await;
    assert_eq!((count(&counts, "low"), count(&counts, "urgent")), (0, 1));

    // Into done sets completed_at; out of done clears it.
    w.writer
        .update(
            id,
            TaskPatch {
                status: Some(Status::Done),
                ..TaskPatch::default()
            },
            t(6),
        )
        .await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let row = read_row(w.pool(), id).await.unwrap();
    assert_eq!(row.status, "done");
    assert_eq!(row.completed_at, Some(t(6).trunc_subsecs_micro()));
    assert_eq!(
        (
            count(&w.counts(owner).await, "todo"),
            count(&w.counts(owner).await, "done")
        ),
        (0, 1)
    );

    w.writer
        .update(
            id,
            TaskPatch {
                status: Some(Status::InProgress),
                due_at: Some(None),
                ..TaskPatch::default()
            },
            t(7),
        )
        .await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let row = read_row(w.pool(), id).await.unwrap();
    assert_eq!(row.status, "in_progress");
    assert_eq!(row.completed_at, None);
    assert_eq!(row.due_at, None);
    let counts = w.counts(owner).await;
    assert_eq!(
        (count(&counts, "done"), count(&counts, "in_progress")),
        (0, 1)
    );

    // Delete removes the row and takes the task out of every count.
    let other = w
        .writer
        .create(owner, "Keep me", Status::Todo, Priority::High)
        .await;
    w.writer.delete(id).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    assert!(read_row(w.pool(), id).await.is_none());
    assert!(read_row(w.pool(), other).await.is_some());
    let counts = w.counts(owner).await;
    assert_eq!(
        [
            "total",
            "todo",
            "in_progress",
            "done",
            "low",
            "medium",
            "high",
            "urgent"
        ]
        .map(|f| count(&counts, f)),
        [1, 1, 0, 0, 0, 0, 1, 0]
    );
    assert!(w.verify().await.is_empty());
}

trait Micro {
    fn trunc_subsecs_micro(self) -> Self;
}

impl Micro for chrono::DateTime<chrono::Utc> {
    fn trunc_subsecs_micro(self) -> Self {
        chrono::SubsecRound::trunc_subsecs(self, 6)
    }
}

#[tokio::test]
async fn a_batch_applied_twice_changes_nothing_in_either_projection() {
    let mut w = World::new().await;
    tasklog_readmodel::migrate(w.pool()).await.unwrap();
    let people = owners(3);
    w.writer.busy_history(&people, 30).await;
    let events = w.all_events().await;
    assert!(events.len() > 50);
    let (first, second) = events.split_at(events.len() / 2);

    let tasks = TasksProjection::new(w.pool().clone());
    let counts = CountsProjection::new(w.redis.clone());
    let t0 = tasks.checkpoint().await.unwrap();
    let c0 = counts.checkpoint().await.unwrap();
    let Applied::Done(t1) = tasks.apply(w.store.as_ref(), &t0, first).await.unwrap() else {
        panic!("first apply");
    };
    let Applied::Done(c1) = counts.apply(w.store.as_ref(), &c0, first).await.unwrap() else {
        panic!("first apply");
    };
    let rows_after_first = all_rows(w.pool()).await;
    let counts_after_first: Vec<_> = {
        let mut v = Vec::new();
        for o in &people {
            v.push(w.counts(*o).await);
        }
        v
    };

    // A crash between commit and ack: the same batch comes again after the old checkpoint.
    assert_eq!(
        tasks.apply(w.store.as_ref(), &t0, first).await.unwrap(),
        Applied::Moved(t1)
    );
    assert!(matches!(
        counts.apply(w.store.as_ref(), &c0, first).await.unwrap(),
        Applied::Moved(_) | Applied::Done(_)
    ));
    // A replay from an older checkpoint through the runner's path (`catch_up`).
    assert_eq!(all_rows(w.pool()).await, rows_after_first);
    for (o, before) in people.iter().zip(&counts_after_first) {
        assert_eq!(&w.counts(*o).await, before, "counts changed on replay");
    }

    // The rest goes on from the stored checkpoints and ends exact.
    tasks.apply(w.store.as_ref(), &t1, second).await.unwrap();
    counts.apply(w.store.as_ref(), &c1, second).await.unwrap();
    assert_eq!(w.tasks_checkpoint().await, w.head().await);
    assert_eq!(w.counts_checkpoint().await, w.head().await);
    // And once more, the whole log from the start: refused, nothing moves.
    assert!(matches!(
        tasks.apply(w.store.as_ref(), &t0, &events).await.unwrap(),
        Applied::Moved(_)
    ));
    // (Redis knows the batch ends where it stands: a duplicate, counted once.)
    assert!(matches!(
        counts.apply(w.store.as_ref(), &c0, &events).await.unwrap(),
        Applied::Moved(_) | Applied::Done(_)
    ));
    let diffs = w.verify().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[tokio::test]
async fn verify_passes_on_a_correct_read_model_and_reports_tampering() {
    let mut w = World::new().await;
    let people = owners(2);
    let ids = w.writer.busy_history(&people, 20).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    assert_eq!(w.verify().await, Vec::<String>::new());

    let victim = ids[1];
    sqlx::query(
        "UPDATE readmodel.tasks SET title = 'tampered', version = version + 1 WHERE id = $1",
    )
    .bind(victim.0)
    .execute(w.pool())
    .await
    .unwrap();
    let gone = ids[2];
    sqlx::query("DELETE FROM readmodel.tasks WHERE id = $1")
        .bind(gone.0)
        .execute(w.pool())
        .await
        .unwrap();
    let key = tasklog_readmodel::counts::CountKeys::new(&w.prefix).owner("g1", people[0].0);
    w.redis
        .run(|mut c| async move {
            redis::cmd("HINCRBY")
                .arg(&key)
                .arg("high")
                .arg(5)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .unwrap();

    let diffs = w.verify().await;
    let has = |needle: &str| diffs.iter().any(|d| d.contains(needle));
    assert!(
        has(&format!("task {victim}: title: stored \"tampered\"")),
        "{diffs:#?}"
    );
    assert!(has(&format!("task {victim}: version")), "{diffs:#?}");
    assert!(
        has(&format!("task {gone}: live in the log but missing")),
        "{diffs:#?}"
    );
    assert!(
        has(&format!("counts owner {}: high", people[0])),
        "{diffs:#?}"
    );
    assert_eq!(diffs.len(), 4, "{diffs:#?}");
}

/// Split brain: two writers project at once with no lease between them (as
/// when a cut-off holder finishes its last batch while a standby starts).
/// The checkpoint compare alone must keep every effect exactly once.
#[tokio::test]
async fn two_writers_without_a_lease_still_apply_every_event_exactly_once() {
    use tasklog_projector::runner::project_while_held;
    use tokio_util::sync::CancellationToken;

    let mut w = World::new().await;
    tasklog_readmodel::migrate(w.pool()).await.unwrap();
    let people = owners(3);
    let stop = CancellationToken::new();
    let never = CancellationToken::new();
    let mut writers = Vec::new();
    for batch_size in [7, 13] {
        let (db, store, redis) = (w.pool().clone(), w.dyn_store(), w.redis.clone());
        let (stop, never) = (stop.clone(), never.clone());
        writers.push(tokio::spawn(async move {
            let tasks = TasksProjection::new(db);
            let counts = CountsProjection::new(redis);
            tokio::join!(
                project_while_held(&tasks, store.as_ref(), batch_size, &stop, &never),
                project_while_held(&counts, store.as_ref(), batch_size, &stop, &never),
            );
        }));
    }
    w.writer.busy_history(&people, 60).await;
    w.wait_caught_up().await;
    stop.cancel();
    for writer in writers {
        writer.await.unwrap();
    }
    let diffs = w.verify().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}

/// The query service drops cached answers of exactly these owners.
#[tokio::test]
async fn each_batch_notifies_its_position_and_whose_rows_it_changed() {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use sqlx::postgres::PgListener;
    use tasklog_readmodel::notice::{self, Notice, Touched};

    let mut w = World::new().await;
    let people = owners(4);
    let (patched, deleted, created, untouched) = (people[0], people[1], people[2], people[3]);
    let kept = w
        .writer
        .create(patched, "Kept", Status::Todo, Priority::Low)
        .await;
    let gone = w
        .writer
        .create(deleted, "Gone", Status::Todo, Priority::Low)
        .await;
    w.writer
        .create(untouched, "Untouched", Status::Todo, Priority::Low)
        .await;
    catch_up(w.pool(), w.store.as_ref(), None).await.unwrap();

    let mut listener = PgListener::connect_with(w.pool()).await.unwrap();
    listener.listen(notice::CHANNEL).await.unwrap();
    w.writer
        .update(
            kept,
            TaskPatch {
                status: Some(Status::Done),
                ..TaskPatch::default()
            },
            t(1),
        )
        .await;
    w.writer.delete(gone).await;
    w.writer
        .create(created, "New", Status::Todo, Priority::Low)
        .await;
    let reached = catch_up(w.pool(), w.store.as_ref(), None)
        .await
        .unwrap()
        .expect("a position");

    let mut notified = BTreeSet::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notice before the last position")
            .unwrap();
        let notice = Notice::parse(n.payload()).expect("a notice");
        match notice.touched {
            Touched::Owners(owners) => notified.extend(owners),
            Touched::All => panic!("a batch names its owners: {}", n.payload()),
        }
        if notice.commit == reached.commit {
            break;
        }
        assert!(notice.commit < reached.commit, "{}", n.payload());
    }
    assert_eq!(
        notified,
        BTreeSet::from([patched.0, deleted.0, created.0]),
        "not {untouched:?}"
    );
}

/// A crash between two partitions' scripts leaves the counts partitions at
/// different positions. The projection then reads on from the oldest, and a
/// partition that is ahead must count only what comes after its own
/// checkpoint, or it counts those events twice.
#[tokio::test]
async fn counts_partitions_left_apart_by_a_crash_count_each_event_once() {
    use tasklog_readmodel::counts::partition_of;

    let mut w = World::new().await;
    tasklog_readmodel::migrate(w.pool()).await.unwrap();
    let people = loop {
        let people = owners(4);
        let first = partition_of(people[0].0);
        if people.iter().any(|p| partition_of(p.0) != first) {
            break people;
        }
    };
    w.writer.busy_history(&people, 24).await;
    let events = w.all_events().await;
    let third = events.len() / 3;
    let (first, rest) = events.split_at(third);
    let second = &rest[..third];

    let counts = CountsProjection::new(w.redis.clone());
    let c0 = counts.checkpoint().await.unwrap();
    let Applied::Done(c1) = counts.apply(w.store.as_ref(), &c0, first).await.unwrap() else {
        panic!("first apply");
    };
    // Of the second batch's scripts, only the first owner's partition ran.
    let ahead = usize::from(partition_of(people[0].0));
    let second_end = second.last().unwrap().position;
    let mut only_ahead = c1.clone();
    for (p, partition) in only_ahead.partitions.iter_mut().enumerate() {
        if p != ahead {
            partition.position = Some(second_end);
        }
    }
    assert!(matches!(
        counts
            .apply(w.store.as_ref(), &only_ahead, second)
            .await
            .unwrap(),
        Applied::Done(_)
    ));

    // Restarted: it reads on from the oldest partition, over events the
    // partition ahead has already counted.
    let restarted = counts.checkpoint().await.unwrap();
    assert_eq!(restarted.position(), c1.position());
    assert_eq!(restarted.partitions[ahead].position, Some(second_end));
    let Applied::Done(_) = counts
        .apply(w.store.as_ref(), &restarted, rest)
        .await
        .unwrap()
    else {
        panic!("the rest");
    };
    assert_eq!(w.counts_checkpoint().await, w.head().await);
    let diffs = w.verify().await;
    assert!(diffs.is_empty(), "{diffs:#?}");
}
