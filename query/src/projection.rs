//! How far the Postgres read model is, known without asking per request: one
//! background task per process LISTENs on the projector's notifications and
//! keeps the latest commit position in a watch channel that requests read
//! (for `X-Projection-Position`) and wait on (for `X-Min-Position`). Each
//! notice also names whose rows changed; those owners' cached pages are
//! dropped before its position is published (see `page_cache`).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tasklog_readmodel::checkpoint::projection_position;
use tasklog_readmodel::notice::{CHANNEL, Notice, Touched};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::page_cache::PageCache;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The projection's position as this process last heard it: never ahead of
/// the read model, so it is a safe lower bound to report and to wait on.
#[derive(Clone)]
pub struct ProjectionWatch {
    sender: Arc<watch::Sender<u64>>,
    db: PgPool,
    pages: Arc<PageCache>,
}

impl ProjectionWatch {
    /// Starts the listening task; it stops when `stop` is cancelled.
    pub fn start(db: PgPool, pages: Arc<PageCache>, stop: CancellationToken) -> Self {
        let (sender, _) = watch::channel(0);
        let this = Self {
            sender: Arc::new(sender),
            db,
            pages,
        };
        tokio::spawn(this.clone().listen(stop));
        this
    }

    pub fn current(&self) -> u64 {
        *self.sender.borrow()
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

    /// Reads the checkpoint row: at start, after a reconnect and after an
    /// unreadable notice (notifications may have been missed).
    async fn resync(&self) -> Option<u64> {
        match projection_position(&self.db).await {
            Ok(position) => {
                // Whose rows changed up to there is unknown: after the read,
                // so that pages kept from now on reflect at least `position`.
                self.pages.all_changed();
                self.advance(position);
                Some(position)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the projection checkpoint");
                None
            }
        }
    }

    /// Reads the checkpoint row after a wait ran out. Pages are dropped only
    /// when the row is ahead of what was heard (notices were missed, so
    /// whose rows changed is unknown): a position that simply has not been
    /// projected yet leaves every other user's pages alone.
    async fn catch_up(&self) -> Option<u64> {
        let position = match projection_position(&self.db).await {
            Ok(position) => position,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the projection checkpoint");
                return None;
            }
        };
        if position > self.current() {
            self.pages.all_changed();
            self.advance(position);
        }
        Some(position)
    }

    /// Waits until the read model has reached `min`, at most `timeout`.
    ///
    /// # Errors
    /// The position reached when the time is up.
    pub async fn wait_for(&self, min: u64, timeout: Duration) -> Result<u64, u64> {
        let mut receiver = self.sender.subscribe();
        let waited = tokio::time::timeout(timeout, async move {
            receiver.wait_for(|p| *p >= min).await.map(|p| *p)
        })
        .await;
        if let Ok(Ok(position)) = waited {
            return Ok(position);
        }
        // A lost notification must not cost the client a 503: one read of
        // the row before giving up (only on this slow path).
        match self.catch_up().await {
            Some(position) if position >= min => Ok(position),
            _ => Err(self.current()),
        }
    }

    async fn listen(self, stop: CancellationToken) {
        let mut retry = FIRST_RETRY;
        while !stop.is_cancelled() {
            match self.connect().await {
                // After LISTEN: whatever commits from here on is announced.
                Ok(mut listener) => {
                    if self.resync().await.is_some() {
                        retry = FIRST_RETRY;
                        self.pages.resume();
                        let stopped = self.relay(&mut listener, &stop).await;
                        self.pages.suspend();
                        if stopped {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot listen for projection progress"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.db).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// Relays notifications until the listener fails (false) or `stop` (true).
    async fn relay(&self, listener: &mut PgListener, stop: &CancellationToken) -> bool {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return true,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => match Notice::parse(notification.payload()) {
                    Some(notice) => {
                        match &notice.touched {
                            Touched::Owners(owners) => self.pages.owners_changed(owners),
                            Touched::All => self.pages.all_changed(),
                        }
                        self.advance(notice.commit);
                    }
                    None => {
                        tracing::warn!(
                            payload = notification.payload(),
                            "unreadable projection notification"
                        );
                        self.resync().await;
                    }
                },
                // The connection dropped; it re-LISTENs only on the next call,
                // so anything committed until then goes unannounced: start over.
                Ok(None) => {
                    tracing::info!("projection listener lost its connection; reconnecting");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "projection listener failed; reconnecting");
                    return false;
                }
            }
        }
    }
}
