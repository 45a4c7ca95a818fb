//! How far the Postgres read model is, known without asking per request: one
//! background task per process LISTENs on the projector's notifications and
//! keeps the latest commit position in a watch channel that requests read
//! (for `X-Projection-Position`) and wait on (for `X-Min-Position`). Each
//! notice also names whose rows changed; those owners' cached pages are
//! dropped before its position is published (see `page_cache`).
//!
//! The connection is kept by `tasklog_readmodel::listener`: a lost one
//! (also one gone silent, found by its heartbeat) turns the cache off until
//! it is back and the checkpoint is read again.
//!
//! With streaming replicas (`replicas`) the primary's notices are the
//! wake-up, not the news: a notice is queued, and applied (its owners'
//! pages dropped, its position published) only once every replica in the
//! rotation has replayed it, so nothing a replica has not replayed can
//! invalidate or fill the cache out of order, and the published position
//! holds on whichever replica a read goes to. A request whose
//! `X-Min-Position` is beyond it is sent to a replica that has replayed it,
//! or, when the wait is up, to the primary if the primary has it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use tasklog_platform::read_pool::ReadPool;
use tasklog_readmodel::checkpoint::projection_position;
use tasklog_readmodel::listener::{self, Notices};
use tasklog_readmodel::notice::{CHANNEL, Notice, Touched};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::page_cache::PageCache;
use crate::replicas::Replicas;

/// Where a request reads once its `X-Min-Position` (if any) holds.
#[derive(Clone)]
pub enum Route {
    /// Anywhere in the rotation (or the primary): the published position
    /// holds there, and the page cache may serve and keep the answer.
    Published,
    /// This pool has the position the request needs, the rotation as a
    /// whole not yet: read there, and leave the cache alone.
    Direct(ReadPool),
}

/// The projection's position as this process last heard it: never ahead of
/// the read model, so it is a safe lower bound to report and to wait on.
#[derive(Clone)]
pub struct ProjectionWatch {
    sender: Arc<watch::Sender<u64>>,
    /// The read model's primary: where the listener connects.
    db: PgPool,
    /// The read model's primary: requests' reads, and the checkpoint's (a
    /// read cut short closes its connection instead of leaving it to sqlx's
    /// release ping, which hangs on a connection gone silent).
    reads: ReadPool,
    pages: Arc<PageCache>,
    replicas: Arc<Replicas>,
    /// The highest position the primary announced (notice or checkpoint read).
    heard: Arc<AtomicU64>,
    /// Notices heard and not applied yet, in position order. The lock also
    /// makes applying and publishing one step.
    pending: Arc<Mutex<VecDeque<Notice>>>,
    /// Bumped whenever a replica was polled or a position published, for
    /// requests waiting on a replica.
    ticks: Arc<watch::Sender<u64>>,
}

impl ProjectionWatch {
    /// Starts the listening task (and one watcher per replica); they stop
    /// when `stop` is cancelled.
    pub fn start(
        db: PgPool,
        reads: ReadPool,
        pages: Arc<PageCache>,
        replicas: Arc<Replicas>,
        stop: CancellationToken,
    ) -> Self {
        let (sender, _) = watch::channel(0);
        let (ticks, _) = watch::channel(0);
        let this = Self {
            sender: Arc::new(sender),
            db,
            reads,
            pages,
            replicas,
            heard: Arc::default(),
            pending: Arc::default(),
            ticks: Arc::new(ticks),
        };
        tokio::spawn(this.clone().listen(stop.clone()));
        for index in 0..this.replicas.iter().count() {
            tokio::spawn(this.clone().watch_replica(index, stop.clone()));
        }
        this
    }

    pub fn current(&self) -> u64 {
        *self.sender.borrow()
    }

    /// The pool a `Route::Published` read uses: the next replica in the
    /// rotation, the primary when none is.
    pub fn read_pool(&self) -> ReadPool {
        self.replicas
            .pick()
            .map_or_else(|| self.reads.clone(), |r| r.pool.clone())
    }

    pub fn replicas(&self) -> &Replicas {
        &self.replicas
    }

    /// Positions only move forward: a late or repeated notification is ignored.
    fn advance(&self, position: u64) {
        self.sender.send_if_modified(|current| {
            let newer = position > *current;
            if newer {
                *current = position;
            }
            newer
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Notice>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies the notices every read source has replayed, then publishes
    /// that position (with the lock held: one step).
    fn publish(&self, pending: &mut VecDeque<Notice>) {
        let heard = self.heard.load(Ordering::SeqCst);
        let target = match self.replicas.rotation_floor() {
            None => heard,
            // Without a listener nothing is announced and the cache is off:
            // the replicas' own progress is all there is to go by.
            Some(floor) if !self.pages.is_live() => floor,
            Some(floor) => floor.min(heard),
        };
        while pending.front().is_some_and(|n| n.commit <= target) {
            if let Some(notice) = pending.pop_front() {
                match &notice.touched {
                    Touched::Owners(owners) => self.pages.owners_changed(owners),
                    Touched::All => self.pages.all_changed(),
                }
            }
        }
        self.advance(target);
        self.ticks.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// A notice (or a checkpoint read) from the primary.
    fn heard(&self, notice: Notice) {
        let mut pending = self.lock();
        self.heard.fetch_max(notice.commit, Ordering::SeqCst);
        let at = pending.partition_point(|n| n.commit <= notice.commit);
        pending.insert(at, notice);
        self.publish(&mut pending);
        drop(pending);
        self.replicas.announce();
    }

    async fn read_checkpoint(&self) -> Result<u64, sqlx::Error> {
        let mut conn = self.reads.get().await?;
        let position = projection_position(&mut *conn).await;
        conn.settle(position)
    }

    /// Reads the primary's checkpoint row: at start, after a reconnect
    /// (notifications may have been missed) and after an unreadable notice.
    /// Whose rows changed up to there is unknown: every page
    /// goes once the read sources have replayed it.
    async fn resync(&self) -> Option<u64> {
        match self.read_checkpoint().await {
            Ok(position) => {
                self.heard(Notice {
                    commit: position,
                    touched: Touched::All,
                });
                Some(position)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the projection checkpoint");
                None
            }
        }
    }

    /// Reads the primary's checkpoint row after a wait ran out. Pages are
    /// dropped only when the row is ahead of what was heard (notices were
    /// missed, so whose rows changed is unknown), and, with replicas, only
    /// once they have replayed it.
    async fn catch_up(&self) -> Option<u64> {
        let position = match self.read_checkpoint().await {
            Ok(position) => position,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the projection checkpoint");
                return None;
            }
        };
        if position > self.heard.load(Ordering::SeqCst) {
            self.heard(Notice {
                commit: position,
                touched: Touched::All,
            });
        }
        Some(position)
    }

    /// Waits until `min` holds somewhere, at most `timeout`: the published
    /// position, else a replica in the rotation that has replayed it, else
    /// (when the time is up) the primary.
    ///
    /// # Errors
    /// The published position when the time is up and no source has `min`.
    pub async fn wait_for(&self, min: u64, timeout: Duration) -> Result<Route, u64> {
        let mut ticks = self.ticks.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.current() >= min {
                return Ok(Route::Published);
            }
            if let Some(replica) = self.replicas.pick_at(min) {
                return Ok(Route::Direct(replica.pool.clone()));
            }
            if tokio::time::timeout_at(deadline, ticks.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        // A lost notification must not cost the client a 503: one read of
        // the primary's row before giving up (only on this slow path).
        match self.catch_up().await {
            _ if self.current() >= min => Ok(Route::Published),
            Some(primary) if primary >= min => Ok(Route::Direct(self.reads.clone())),
            _ => Err(self.current()),
        }
    }

    /// Polls one replica until `stop` (see `replicas`).
    async fn watch_replica(self, index: usize, stop: CancellationToken) {
        let replicas = self.replicas.clone();
        let this = self.clone();
        replicas
            .watch(
                index,
                move || this.heard.load(Ordering::SeqCst),
                move |decide| {
                    let mut pending = self.lock();
                    decide(self.current());
                    self.publish(&mut pending);
                },
                stop,
            )
            .await;
    }

    async fn listen(self, stop: CancellationToken) {
        listener::listen(&self.db, CHANNEL, "projection", &self, &stop).await;
    }
}

impl Notices for ProjectionWatch {
    /// Reads the checkpoint (notices may have been missed), then lets the
    /// cache serve again.
    async fn connected(&self) -> bool {
        if self.resync().await.is_none() {
            return false;
        }
        self.pages.resume();
        true
    }

    async fn received(&self, payload: &str) {
        match Notice::parse(payload) {
            Some(notice) => self.heard(notice),
            None => {
                tracing::warn!(payload, "unreadable projection notification");
                self.resync().await;
            }
        }
    }

    /// Nothing is served from memory while notices may go unheard.
    fn disconnected(&self) {
        self.pages.suspend();
    }
}
