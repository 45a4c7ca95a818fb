//! How far a projection is behind the log: in events and in milliseconds
//! (age of the oldest event it has not applied). Sampled for /metrics and
//! computed once for `status`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tasklog_events::{EventStore, Position};
use tokio_util::sync::CancellationToken;

use crate::error::ProjectorError;
use crate::projection::Projection;
use tasklog_readmodel::checkpoint::to_db;

/// Counting stops here: beyond it the number matters less than the alarm.
pub const LAG_COUNT_CAP: i64 = 10_000_000;

/// How events behind a position are counted.
#[derive(Clone)]
pub enum LagProbe {
    /// The Postgres log: an index-only count in the log's own order.
    Postgres(PgPool),
    /// Any other log: read up to this many events and count them.
    Read(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    pub events: u64,
    /// Whether `events` hit the counting cap (the lag is at least that).
    pub capped: bool,
    pub millis: u64,
}

impl LagProbe {
    /// The lag of a projection at `position`.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub async fn lag(
        &self,
        store: &dyn EventStore,
        position: Option<Position>,
    ) -> Result<Lag, ProjectorError> {
        let (events, capped) = match self {
            LagProbe::Postgres(db) => {
                let (commit, prepare) = to_db(position);
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM (SELECT 1 FROM eventlog.events \
                     WHERE (tx_id, position) > (($1::bigint >> 16)::text::xid8, $2) LIMIT $3) behind",
                )
                .bind(commit)
                .bind(prepare)
                .bind(LAG_COUNT_CAP)
                .fetch_one(db)
                .await?;
                (u64::try_from(n).unwrap_or(0), n >= LAG_COUNT_CAP)
            }
            LagProbe::Read(cap) => {
                let n = store.read_all(position, *cap).await?.len();
                (n as u64, n >= *cap)
            }
        };
        let millis = if events == 0 {
            0
        } else {
            store
                .read_all(position, 1)
                .await?
                .first()
                .map(|e| {
                    u64::try_from((Utc::now() - e.recorded_at).num_milliseconds()).unwrap_or(0)
                })
                .unwrap_or(0)
        };
        Ok(Lag {
            events,
            capped,
            millis,
        })
    }
}

/// Publishes `projector_lag_events` and `projector_lag_milliseconds` every
/// `every`, from the stored checkpoint (so standbys report it too).
pub async fn sample<P: Projection>(
    projection: Arc<P>,
    store: Arc<dyn EventStore>,
    probe: LagProbe,
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
            match probe.lag(store.as_ref(), at).await {
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
