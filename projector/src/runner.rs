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
async fn next_batch(stream: &mut EventBatches, max: usize, name: &'static str) -> Vec<RecordedEvent> {
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
    let checkpoint_gauge = metrics::gauge!("projector_checkpoint_commit_position", "projection" => name);
    let batch_events = metrics::histogram!("projector_batch_events", "projection" => name);
    let batch_seconds = metrics::histogram!("projector_batch_apply_seconds", "projection" => name);
    let applied_total = metrics::counter!("projector_events_applied_total", "projection" => name);
    let errors_total = metrics::counter!("projector_apply_errors_total", "projection" => name);

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
        if events.is_empty() {
            continue;
        }
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            match projection.apply(store, &checkpoint, events).await {
                Ok(Applied::Done(next)) => {
                    batch_seconds.record(started.elapsed().as_secs_f64());
                    batch_events.record(events.len() as f64);
                    applied_total.increment(events.len() as u64);
                    if let Some(p) = P::position(&next) {
                        #[allow(clippy::cast_precision_loss)]
                        checkpoint_gauge.set(p.commit as f64);
                    }
                    checkpoint = next;
                    break;
                }
                Ok(Applied::Moved(stored)) => {
                    tracing::info!(projection = name, from = ?checkpoint, to = ?stored,
                        "checkpoint moved by another writer (replay, second instance or rebuild); resuming from it");
                    checkpoint = stored;
                    stream = store.subscribe_all(P::position(&checkpoint));
                    break;
                }
                Err(e) => {
                    errors_total.increment(1);
                    tracing::warn!(projection = name, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "applying a batch failed; retrying");
                    if sleep_or_stop(backoff, shutdown, lost).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
