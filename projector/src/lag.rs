//! How far a projection is behind the log: in events and in milliseconds
//! (age of the oldest event it has not applied). Sampled for /metrics and
//! computed once for `status`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tasklog_events::{EventStore, Position};
use tokio_util::sync::CancellationToken;

use crate::error::ProjectorError;
use crate::projection::Projection;

/// Counting stops here: beyond it the number matters less than the alarm
/// (an adapter that must read to count stops sooner, see
/// `EventStore::count_after`).
pub const LAG_COUNT_CAP: u64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub events: u64,
    /// Whether `events` hit the counting cap (the lag is at least that).
    pub capped: bool,
    pub millis: u64,
}

/// The lag of a projection at `position`: the events the log holds after it
/// and the age of the oldest of them.
///
/// # Errors
/// When the log cannot be read.
pub async fn lag(
    store: &dyn EventStore,
    position: Option<Position>,
) -> Result<Lag, ProjectorError> {
    let (events, capped) = store.count_after(position, LAG_COUNT_CAP).await?;
    let millis = if events == 0 {
        0
    } else {
        store
            .read_all(position, 1)
            .await?
            .first()
            .map(|e| u64::try_from((Utc::now() - e.recorded_at).num_milliseconds()).unwrap_or(0))
            .unwrap_or(0)
    };
    Ok(Lag {
        events,
        capped,
        millis,
    })
}

/// Publishes `projector_lag_events` and `projector_lag_milliseconds` every
/// `every`, from the stored checkpoint (so standbys report it too).
pub async fn sample<P: Projection>(
    projection: Arc<P>,
    store: Arc<dyn EventStore>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let name = projection.name();
    let events = metrics::gauge!("projector_lag_events", "projection" => name);
    let millis = metrics::gauge!("projector_lag_milliseconds", "projection" => name);
    let position = metrics::gauge!("projector_checkpoint_commit_position", "projection" => name);
    let head = metrics::gauge!("projector_log_head_commit_position");
    loop {
        if let Ok(checkpoint) = projection.checkpoint().await {
            let at = P::position(&checkpoint);
            #[allow(clippy::cast_precision_loss)]
            position.set(at.map_or(0.0, |p| p.commit as f64));
            match lag(store.as_ref(), at).await {
                Ok(lag) => {
                    #[allow(clippy::cast_precision_loss)]
                    events.set(lag.events as f64);
                    #[allow(clippy::cast_precision_loss)]
                    millis.set(lag.millis as f64);
                }
                Err(e) => tracing::debug!(projection = name, error = %e, "lag sample failed"),
            }
            if let Ok(Some(h)) = store.head().await {
                #[allow(clippy::cast_precision_loss)]
                head.set(h.commit as f64);
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
