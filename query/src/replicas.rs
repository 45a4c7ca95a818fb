//! The read model's streaming replicas (`READ_REPLICA_URLS`): where reads
//! go, and how far each replica has replayed.
//!
//! A hot standby relays no NOTIFY, so each replica is watched by polling its
//! own copy of the checkpoint row: every `REPLICA_POLL_MS` when it has
//! caught up with what the primary announced, every `FAST_POLL` while it is
//! behind an announced position (the primary's notice is the wake-up, the
//! standby's checkpoint row the proof that it has replayed that far).
//!
//! A replica is in the rotation while it answers and its lag (how long it
//! has been behind the primary's announced position) is at most
//! `REPLICA_MAX_LAG_MS`. It comes back by itself once it answers and has
//! replayed at least the position this process publishes, so a read sent to
//! any replica in the rotation reflects at least that position (see
//! `ProjectionWatch::publish`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use tasklog_platform::read_pool::ReadPool;
use tokio::sync::Notify;

use tasklog_readmodel::checkpoint::projection_position;

/// How often a replica behind an announced position is asked again.
const FAST_POLL: Duration = Duration::from_millis(2);
/// A replica that does not answer a poll within this is out of the rotation.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);

/// One hot standby of the read model's server.
pub struct Replica {
    /// `host:port`, for logs, metrics and readiness.
    pub name: String,
    pub pool: ReadPool,
    /// The checkpoint it has replayed (commit position).
    position: AtomicU64,
    up: AtomicBool,
    in_rotation: AtomicBool,
    lag_ms: AtomicU64,
}

impl Replica {
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }

    pub fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::SeqCst)
    }

    fn report(&self) -> Value {
        json!({
            "up": self.up.load(Ordering::SeqCst),
            "in_rotation": self.in_rotation(),
            "position": self.position(),
            "lag_ms": self.lag_ms.load(Ordering::SeqCst),
        })
    }
}

/// What one poll saw, for the rotation decision.
struct Poll {
    position: Option<u64>,
    /// When it first fell behind the announced position, if it is behind.
    behind_since: Option<Instant>,
}

pub struct Replicas {
    list: Vec<Arc<Replica>>,
    next: AtomicUsize,
    max_lag: Duration,
    poll: Duration,
    /// Woken when the primary announces a new position.
    announced: Notify,
}

impl Replicas {
    /// # Errors
    /// When a URL does not parse (the message names `READ_REPLICA_URLS`).
    pub fn new(
        urls: &[String],
        template: &tasklog_platform::config::DatabaseSettings,
        max_lag: Duration,
        poll: Duration,
    ) -> Result<Self, tasklog_platform::config::ConfigError> {
        let mut list = Vec::with_capacity(urls.len());
        for url in urls {
            let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
                tasklog_platform::config::ConfigError::new("READ_REPLICA_URLS", e.to_string())
            })?;
            let name = format!("{}:{}", options.get_host(), options.get_port());
            let settings = tasklog_platform::config::DatabaseSettings {
                url: url.clone(),
                ..template.clone()
            };
            let pool = ReadPool::new(&settings, "tasklog-query")?;
            list.push(Arc::new(Replica {
                name,
                pool,
                position: AtomicU64::new(0),
                up: AtomicBool::new(false),
                in_rotation: AtomicBool::new(false),
                lag_ms: AtomicU64::new(0),
            }));
        }
        Ok(Self {
            list,
            next: AtomicUsize::new(0),
            max_lag,
            poll,
            announced: Notify::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Replica>> {
        self.list.iter()
    }

    /// The lowest position among replicas in the rotation; `None` when none
    /// is (reads then go to the primary).
    pub fn rotation_floor(&self) -> Option<u64> {
        self.list
            .iter()
            .filter(|r| r.in_rotation())
            .map(|r| r.position())
            .min()
    }

    /// The next replica in the rotation (round robin); `None`: use the primary.
    pub fn pick(&self) -> Option<&Arc<Replica>> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.list[(start + i) % n])
            .find(|r| r.in_rotation())
    }

    /// A replica in the rotation that has replayed `min`, if any.
    pub fn pick_at(&self, min: u64) -> Option<&Arc<Replica>> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.list[(start + i) % n])
            .find(|r| r.in_rotation() && r.position() >= min)
    }

    /// The primary announced a new position: behind replicas poll at once.
    pub fn announce(&self) {
        self.announced.notify_waiters();
    }

    /// Each replica's state, for `/health/ready`.
    pub fn report(&self) -> Value {
        Value::Object(
            self.list
                .iter()
                .map(|r| (r.name.clone(), r.report()))
                .collect(),
        )
    }

    /// Polls replica `index` until `stop`. `heard` is the primary's
    /// announced position; `locked` runs the rotation decision (given the
    /// published position) inside the caller's publish step, so a replica
    /// joins the rotation only at or past what is published.
    pub async fn watch<H, L>(
        self: Arc<Self>,
        index: usize,
        heard: H,
        locked: L,
        stop: tokio_util::sync::CancellationToken,
    ) where
        H: Fn() -> u64 + Send,
        L: Fn(&mut dyn FnMut(u64)) + Send,
    {
        let Some(replica) = self.list.get(index).cloned() else {
            return;
        };
        let mut state = Poll {
            position: None,
            behind_since: None,
        };
        while !stop.is_cancelled() {
            let announced = heard();
            let answer = tokio::time::timeout(POLL_TIMEOUT, Self::poll(&replica.pool)).await;
            state.position = match answer {
                Ok(Ok(position)) => Some(position),
                Ok(Err(e)) => {
                    tracing::debug!(replica = %replica.name, error = %e, "replica poll failed");
                    None
                }
                Err(_) => None,
            };
            locked(&mut |published| self.decide(&replica, &mut state, announced, published));
            let behind = state.position.is_some_and(|p| p < heard());
            let wait = if behind { FAST_POLL } else { self.poll };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.announced.notified(), if !behind => {}
            }
        }
    }

    /// One read of the replica's checkpoint row.
    async fn poll(pool: &ReadPool) -> Result<u64, sqlx::Error> {
        let mut conn = pool.get().await?;
        let position = projection_position(&mut *conn).await;
        conn.settle(position)
    }

    fn decide(&self, replica: &Replica, state: &mut Poll, announced: u64, published: u64) {
        let name = replica.name.clone();
        let Some(position) = state.position else {
            if replica.up.swap(false, Ordering::SeqCst) {
                tracing::warn!(replica = %name, "replica unreachable; out of the rotation");
            }
            replica.in_rotation.store(false, Ordering::SeqCst);
            metrics::gauge!("tasklog_replica_up", "replica" => name.clone()).set(0.0);
            metrics::gauge!("tasklog_replica_in_rotation", "replica" => name).set(0.0);
            return;
        };
        replica.up.store(true, Ordering::SeqCst);
        replica.position.fetch_max(position, Ordering::SeqCst);
        let now = Instant::now();
        let lag = if position >= announced {
            state.behind_since = None;
            Duration::ZERO
        } else {
            now - *state.behind_since.get_or_insert(now)
        };
        let lag_ms = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
        replica.lag_ms.store(lag_ms, Ordering::SeqCst);
        let was = replica.in_rotation();
        // Back in only at or past what this process has published, so the
        // published position holds on every replica in the rotation.
        let now_in = lag <= self.max_lag && (was || position >= published);
        replica.in_rotation.store(now_in, Ordering::SeqCst);
        if was != now_in {
            if now_in {
                tracing::info!(replica = %name, position, "replica in the rotation");
            } else {
                tracing::warn!(replica = %name, lag_ms, "replica lags; out of the rotation");
            }
        }
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("tasklog_replica_up", "replica" => name.clone()).set(1.0);
            metrics::gauge!("tasklog_replica_lag_ms", "replica" => name.clone()).set(lag_ms as f64);
            metrics::gauge!("tasklog_replica_position", "replica" => name.clone())
                .set(position as f64);
            metrics::gauge!("tasklog_replica_in_rotation", "replica" => name).set(if now_in {
                1.0
            } else {
                0.0
            });
        }
    }
}
