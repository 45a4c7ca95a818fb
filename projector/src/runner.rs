//! Running one projection live: hold its lease, tail the log from its
//! checkpoint, apply batch after batch, and keep going through outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use sqlx::PgPool;
use tasklog_events::{EventBatches, EventStore, RecordedEvent};
use tokio_util::sync::CancellationToken;

use crate::lease::{Lease, LeaseTiming, key_of};
use crate::projection::{Applied, Projection, after};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Most events applied in one transaction (batches ready together are merged).
    pub batch_size: usize,
    pub lease: LeaseTiming,
    /// Shown as the lease holder (`application_name` of the lease connection).
    pub instance: String,
}

/// Runs `projection` until `shutdown`: waits for its lease, projects while it
/// holds it, and stands by again if it loses it. Never returns an error:
/// every failure is logged and retried.
pub async fn run<P: Projection + 'static>(
    projection: Arc<P>,
    store: Arc<dyn EventStore>,
    db: PgPool,
    settings: RunnerSettings,
    shutdown: CancellationToken,
) {
    let name = projection.name();
    let holder = format!("{}/{}", settings.instance, name);
    let lease_gauge = metrics::gauge!("projector_lease_held", "projection" => name);
    lease_gauge.set(0.0);
    loop {
        let Some(lease) =
            Lease::acquire(&db, key_of(name), &holder, settings.lease, &shutdown).await
        else {
            return;
        };
        tracing::info!(projection = name, "lease acquired; projecting");
        lease_gauge.set(1.0);
        project_while_held(
            projection.as_ref(),
            store.as_ref(),
            settings.batch_size,
            &shutdown,
            lease.lost(),
        )
        .await;
        lease_gauge.set(0.0);
        lease.release().await;
        if shutdown.is_cancelled() {
            tracing::info!(projection = name, "lease released on shutdown");
            return;
        }
        tracing::warn!(projection = name, "lease lost; standing by");
    }
}

async fn stopped(a: &CancellationToken, b: &CancellationToken) {
    tokio::select! {
        () = a.cancelled() => {}
        () = b.cancelled() => {}
    }
}

/// Sleeps `wait`, or less when told to stop; true when stopped.
async fn sleep_or_stop(wait: Duration, a: &CancellationToken, b: &CancellationToken) -> bool {
    tokio::select! {
        () = stopped(a, b) => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// The next batch: waits for one, then merges whatever else is ready at once,
/// up to `max` events. Errors from the subscription are logged (it retries
/// by itself).
async fn next_batch(
    stream: &mut EventBatches,
    max: usize,
    name: &'static str,
) -> Vec<RecordedEvent> {
    let mut batch = Vec::new();
    while batch.is_empty() {
        match stream.next().await {
            Some(Ok(events)) => batch = events,
            Some(Err(e)) => {
                tracing::warn!(projection = name, error = %e, "reading the log failed; the subscription retries");
            }
            None => {
                // A subscription never ends; if one did, avoid a hot loop.
                tokio::time::sleep(FIRST_BACKOFF).await;
            }
        }
    }
    while batch.len() < max {
        match stream.next().now_or_never() {
            Some(Some(Ok(more))) => batch.extend(more),
            _ => break,
        }
    }
    batch
}

/// Splits a batch into pieces of about `max` events, cutting only between
/// commits: the checkpoint must never sit inside a commit, or a reader told
/// "position P is projected" would see part of P's append.
pub fn split_at_commits(events: &[RecordedEvent], max: usize) -> Vec<&[RecordedEvent]> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for i in 1..events.len() {
        if i - start >= max.max(1) && events[i].position.commit != events[i - 1].position.commit {
            pieces.push(&events[start..i]);
            start = i;
        }
    }
    if start < events.len() {
        pieces.push(&events[start..]);
    }
    pieces
}

struct Meters {
    checkpoint: metrics::Gauge,
    batch_events: metrics::Histogram,
    batch_seconds: metrics::Histogram,
    applied: metrics::Counter,
    errors: metrics::Counter,
}

enum Step {
    Applied,
    /// The checkpoint moved under us: resubscribe from it.
    Moved,
    Stop,
}

/// Projects until shutdown or loss of the lease. A batch once taken is
/// finished (or abandoned only after a failed attempt), so SIGTERM lets the
/// current batch commit.
pub async fn project_while_held<P: Projection>(
    projection: &P,
    store: &dyn EventStore,
    batch_size: usize,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
) {
    let name = projection.name();
    let meters = Meters {
        checkpoint: metrics::gauge!("projector_checkpoint_commit_position", "projection" => name),
        batch_events: metrics::histogram!("projector_batch_events", "projection" => name),
        batch_seconds: metrics::histogram!("projector_batch_apply_seconds", "projection" => name),
        applied: metrics::counter!("projector_events_applied_total", "projection" => name),
        errors: metrics::counter!("projector_apply_errors_total", "projection" => name),
    };

    let mut backoff = FIRST_BACKOFF;
    let mut checkpoint = loop {
        match projection.checkpoint().await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "cannot read the checkpoint; retrying");
                if sleep_or_stop(backoff, shutdown, lost).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut stream = store.subscribe_all(P::position(&checkpoint));
    loop {
        let batch = tokio::select! {
            biased;
            () = stopped(shutdown, lost) => return,
            batch = next_batch(&mut stream, batch_size, name) => batch,
        };
        let events = after(&batch, P::position(&checkpoint));
        for piece in split_at_commits(events, batch_size) {
            match apply_piece(
                projection,
                store,
                &mut checkpoint,
                piece,
                &meters,
                shutdown,
                lost,
            )
            .await
            {
                Step::Applied => {}
                Step::Moved => {
                    stream = store.subscribe_all(P::position(&checkpoint));
                    break;
                }
                Step::Stop => return,
            }
        }
    }
}

/// Applies one piece, retrying failures with backoff until it is in, the
/// checkpoint turns out moved, or the projection must stop.
#[tracing::instrument(skip_all, fields(projection = projection.name(), events = events.len()))]
async fn apply_piece<P: Projection>(
    projection: &P,
    store: &dyn EventStore,
    checkpoint: &mut P::Checkpoint,
    events: &[RecordedEvent],
    meters: &Meters,
    shutdown: &CancellationToken,
    lost: &CancellationToken,
) -> Step {
    let name = projection.name();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        match projection.apply(store, checkpoint, events).await {
            Ok(Applied::Done(next)) => {
                meters.batch_seconds.record(started.elapsed().as_secs_f64());
                #[allow(clippy::cast_precision_loss)]
                meters.batch_events.record(events.len() as f64);
                meters.applied.increment(events.len() as u64);
                if let Some(p) = P::position(&next) {
                    #[allow(clippy::cast_precision_loss)]
                    meters.checkpoint.set(p.commit as f64);
                }
                *checkpoint = next;
                return Step::Applied;
            }
            Ok(Applied::Moved(stored)) => {
                tracing::info!(projection = name, from = ?checkpoint, to = ?stored,
                    "checkpoint moved by another writer (replay, second instance or rebuild); resuming from it");
                *checkpoint = stored;
                return Step::Moved;
            }
            Err(e) => {
                meters.errors.increment(1);
                tracing::warn!(projection = name, error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "applying a batch failed; retrying");
                if sleep_or_stop(backoff, shutdown, lost).await {
                    return Step::Stop;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use tasklog_events::{Metadata, Position};
    use uuid::Uuid;

    use super::*;

    fn at(commit: u64, prepare: u64) -> RecordedEvent {
        RecordedEvent {
            position: Position::new(commit, prepare),
            stream_id: "task-x".into(),
            version: prepare,
            event_id: Uuid::new_v4(),
            event_type: "TaskCreated".into(),
            schema_version: 2,
            data: serde_json::Value::Null,
            metadata: Metadata::default(),
            recorded_at: Utc::now(),
        }
    }

    #[test]
    fn batches_are_split_near_the_size_but_never_inside_a_commit() {
        let events = [
            at(1, 1),
            at(1, 2),
            at(1, 3),
            at(2, 4),
            at(3, 5),
            at(3, 6),
            at(4, 7),
        ];
        let sizes: Vec<usize> = split_at_commits(&events, 2)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        let sizes: Vec<usize> = split_at_commits(&events, 100)
            .iter()
            .map(|p| p.len())
            .collect();
        assert_eq!(sizes, vec![7]);
        assert!(split_at_commits(&[], 5).is_empty());
    }
}
