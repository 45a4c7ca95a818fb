//! The replay: the whole log read and folded in memory, in one stretch or
//! several at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tasklog_events::domain::{TaskEvent, TaskId, UserId};
use tasklog_events::{EventStore, Position, RecordedEvent};
use tasklog_readmodel::TASKS;

use super::{HELD_BACK, Progress, REPLAY_PAGE};
use crate::error::ProjectorError;
use crate::fold::{Decoded, TaskEventAt, TaskRow, decode_owned, erase_rows, fold_rows};
use crate::projection::report_skipped;

/// What folding one stretch of the log gives.
#[derive(Default)]
struct RangeFold {
    /// Tasks created in the stretch, as it leaves them (deleted ones gone).
    rows: HashMap<TaskId, TaskRow>,
    /// Events of tasks created before the stretch, in order, to fold onto
    /// the earlier stretches' result.
    pending: HashMap<TaskId, Vec<TaskEventAt>>,
    /// Tasks whose `TaskCreated` lies in the stretch.
    created: HashSet<TaskId>,
    /// Owners erased in the stretch: their rows from earlier stretches go
    /// at the merge.
    erased: Vec<UserId>,
    events: u64,
}

/// Reads the whole log and folds it in memory. With `ranges` > 1 (and a log
/// that can be cut, see `EventStore::split_points`) the log is cut at commit boundaries into stretches
/// replayed at once; each stretch is a pipeline of its own (a task reads
/// pages, blocking-pool threads decode them, order kept, and a task folds).
/// A task's events are folded in log order all the same: a stretch folds only
/// the tasks created in it and keeps the others' events for the merge.
pub(super) async fn replay(
    store: Arc<dyn EventStore>,
    total_hint: Option<u64>,
    ranges: usize,
    progress: &mut dyn Progress,
) -> Result<(HashMap<TaskId, TaskRow>, Option<Position>, u64), ProjectorError> {
    let head = store.head().await?;
    let Some(head_position) = head else {
        return Ok((HashMap::new(), None, 0));
    };
    let first = loop {
        match store.read_all(None, 1).await?.first() {
            Some(e) => break e.position,
            None => tokio::time::sleep(HELD_BACK).await,
        }
    };
    let cuts = store.split_points(first, head_position, ranges);
    let counter = Arc::new(AtomicU64::new(0));
    let mut folds = tokio::task::JoinSet::new();
    let mut bounds: Vec<Option<Position>> = vec![None];
    bounds.extend(cuts.iter().copied().map(Some));
    for (i, after) in bounds.iter().copied().enumerate() {
        let until = bounds
            .get(i + 1)
            .copied()
            .flatten()
            .unwrap_or(head_position);
        let (store, counter) = (store.clone(), counter.clone());
        folds.spawn(async move { (i, replay_range(store, after, until, i == 0, counter).await) });
    }
    let mut results: Vec<Option<RangeFold>> = (0..bounds.len()).map(|_| None).collect();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    while !folds.is_empty() {
        tokio::select! {
            done = folds.join_next() => {
                let Some(done) = done else { break };
                let (i, fold) = done.map_err(|e| ProjectorError::TaskFailed(format!("a replay task: {e}")))?;
                results[i] = Some(fold?);
            }
            _ = tick.tick() => {
                progress.replayed(counter.load(Ordering::Relaxed), total_hint);
            }
        }
    }
    let mut map: HashMap<TaskId, TaskRow> = HashMap::new();
    let mut events = 0;
    for fold in results.into_iter().flatten() {
        for (_, later) in fold.pending {
            fold_rows(&mut map, &later);
        }
        map.extend(fold.rows);
        erase_rows(&mut map, &fold.erased);
        events += fold.events;
    }
    progress.replayed(events, total_hint);
    Ok((map, head, events))
}

/// Folds the events after `after` up to and including `until`.
async fn replay_range(
    store: Arc<dyn EventStore>,
    after: Option<Position>,
    until: Position,
    first_range: bool,
    counter: Arc<AtomicU64>,
) -> Result<RangeFold, ProjectorError> {
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<Vec<RecordedEvent>>(4);
    let reader = tokio::spawn(async move {
        let mut position = after;
        while position < Some(until) {
            let mut page = store.read_all(position, REPLAY_PAGE).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                tokio::time::sleep(HELD_BACK).await;
                continue;
            };
            page.truncate(page.partition_point(|e| e.position <= until));
            position = Some(last);
            if page.is_empty() {
                break;
            }
            if pages_tx.send(page).await.is_err() {
                break;
            }
        }
        Ok::<_, ProjectorError>(())
    });
    let pages = futures::stream::poll_fn(move |cx| pages_rx.poll_recv(cx));
    let mut decoded = pages
        .map(|page| {
            tokio::task::spawn_blocking(move || {
                let n = page.len();
                (decode_owned(page), n)
            })
        })
        .buffered(2);
    let mut fold = RangeFold::default();
    while let Some(done) = decoded.next().await {
        let (decoded, n) =
            done.map_err(|e| ProjectorError::TaskFailed(format!("a decoder: {e}")))?;
        let Decoded {
            events: batch,
            skipped,
            erased,
            ..
        } = decoded;
        report_skipped(TASKS, &skipped);
        if first_range {
            fold_rows(&mut fold.rows, &batch);
        } else {
            let mut ours = Vec::with_capacity(batch.len());
            for e in batch {
                if matches!(e.event, TaskEvent::Created(_))
                    && !fold.pending.contains_key(&e.task_id)
                {
                    fold.created.insert(e.task_id);
                }
                if fold.created.contains(&e.task_id) {
                    ours.push(e);
                } else {
                    fold.pending.entry(e.task_id).or_default().push(e);
                }
            }
            fold_rows(&mut fold.rows, &ours);
        }
        if !erased.is_empty() {
            erase_rows(&mut fold.rows, &erased);
            for events in fold.pending.values_mut() {
                events.retain(|e| e.owner.is_none_or(|o| !erased.contains(&o)));
            }
            fold.erased.extend(erased);
        }
        fold.events += n as u64;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
    reader
        .await
        .map_err(|e| ProjectorError::TaskFailed(format!("the log reader: {e}")))??;
    Ok(fold)
}
