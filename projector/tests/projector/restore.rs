//! A restored task comes back into the read model and the counts as it was,
//! and `verify` agrees, whether the delete was projected in an earlier batch
//! or in the same one.

use tasklog_events::domain::{Priority, Status, TaskPatch, TaskTitle};
use tasklog_projector::catch_up;

use crate::helpers::{World, owners, read_row, t};

fn count(c: &std::collections::HashMap<String, i64>, field: &str) -> i64 {
    c.get(field).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_restored_task_is_back_in_the_read_model_and_counts_and_verify_is_clean() {
    let mut w = World::new().await;
    let owner = owners(1)[0];
    let id = w
        .writer
        .create(owner, "Come back", Status::Done, Priority::High)
        .await;
    let renamed = TaskPatch {
        title: Some(TaskTitle::parse("Came back").unwrap()),
        ..TaskPatch::default()
    };
    w.writer.update(id, renamed, t(5)).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let before = read_row(w.pool(), id).await.expect("live row");

    w.writer.delete(id).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    assert!(read_row(w.pool(), id).await.is_none());
    assert_eq!(count(&w.counts(owner).await, "total"), 0);

    w.writer.restore(id, t(100)).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    let after = read_row(w.pool(), id).await.expect("restored row");
    assert_eq!(
        (
            &after.title,
            &after.description,
            &after.status,
            &after.priority
        ),
        (
            &before.title,
            &before.description,
            &before.status,
            &before.priority
        )
    );
    assert_eq!(after.tags, before.tags);
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(after.completed_at, before.completed_at);
    assert_eq!(after.version, 3);
    assert_eq!(
        after.updated_at,
        chrono::SubsecRound::trunc_subsecs(t(100), 6)
    );
    let counts = w.counts(owner).await;
    assert_eq!(
        (
            count(&counts, "total"),
            count(&counts, "done"),
            count(&counts, "high")
        ),
        (1, 1, 1)
    );
    assert_eq!(w.verify().await, Vec::<String>::new());

    // Deleted and restored within one batch.
    let other = w
        .writer
        .create(owner, "Blink", Status::Todo, Priority::Low)
        .await;
    w.writer.delete(other).await;
    w.writer.restore(other, t(120)).await;
    catch_up(w.pool(), w.store.as_ref(), Some(&w.redis))
        .await
        .unwrap();
    assert_eq!(read_row(w.pool(), other).await.expect("row").version, 2);
    assert_eq!(count(&w.counts(owner).await, "total"), 2);
    assert_eq!(w.verify().await, Vec::<String>::new());
}
