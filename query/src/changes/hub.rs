//! Who should look for new changes, known without polling: one background
//! task per process LISTENs on the projector's `tasklog_changes` notices,
//! keeps the change feed's position in a watch channel (for `X-Min-Position`
//! on the feed) and wakes the open streams of exactly the owners a notice
//! names. A lost connection (also one gone silent: see
//! `tasklog_readmodel::listener`) wakes every stream once it is back, so a
//! missed notice only delays a change, never loses it (streams read the
//! table, the notice only says when).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use tasklog_platform::read_pool::ReadPool;
use tasklog_readmodel::changes::CHANNEL;
use tasklog_readmodel::listener::{self, Notices};
use tasklog_readmodel::notice::{Notice, Touched};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::read_model::changes_position;

struct Inner {
    /// Where the listener connects.
    db: PgPool,
    /// Where the checkpoint is read: a read cut short (the listener's
    /// catch-up is bounded) closes its connection instead of leaving it to
    /// sqlx's release ping, which hangs on a connection gone silent.
    reads: ReadPool,
    /// The feed's commit position as last heard: never ahead of the table.
    position: watch::Sender<i64>,
    /// Bumped when anyone's changes may have arrived (a `*` notice, a reconnect).
    everyone: watch::Sender<u64>,
    /// One counter per owner with an open stream here, bumped on their notices.
    owners: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

#[derive(Clone)]
pub struct ChangeHub {
    inner: Arc<Inner>,
}

/// What a stream waits on: its owner's counter and everyone's.
pub struct Wakeup {
    hub: ChangeHub,
    owner: Uuid,
    mine: watch::Receiver<u64>,
    everyone: watch::Receiver<u64>,
}

impl Wakeup {
    /// Returns once a notice may concern the owner (at once if one came since
    /// the last call).
    pub async fn changed(&mut self) {
        tokio::select! {
            r = self.mine.changed() => { if r.is_err() { std::future::pending::<()>().await } }
            r = self.everyone.changed() => { if r.is_err() { std::future::pending::<()>().await } }
        }
    }
}

impl Drop for Wakeup {
    fn drop(&mut self) {
        let mut owners = self
            .hub
            .inner
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // `self.mine` still counts: 1 receiver left means it was the last.
        if owners
            .get(&self.owner)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            owners.remove(&self.owner);
        }
    }
}

impl ChangeHub {
    /// Starts the listening task; it stops when `stop` is cancelled.
    pub fn start(db: PgPool, reads: ReadPool, stop: CancellationToken) -> Self {
        let this = Self {
            inner: Arc::new(Inner {
                db,
                reads,
                position: watch::channel(0).0,
                everyone: watch::channel(0).0,
                owners: Mutex::new(HashMap::new()),
            }),
        };
        tokio::spawn(this.clone().listen(stop));
        this
    }

    pub fn current(&self) -> i64 {
        *self.inner.position.borrow()
    }

    pub fn subscribe(&self, owner: Uuid) -> Wakeup {
        let mine = self
            .inner
            .owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(owner)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Wakeup {
            hub: self.clone(),
            owner,
            mine,
            everyone: self.inner.everyone.subscribe(),
        }
    }

    /// Waits until the feed has reached `min`, at most `timeout`.
    ///
    /// # Errors
    /// The position reached when the time is up.
    pub async fn wait_for(&self, min: i64, timeout: Duration) -> Result<i64, i64> {
        let mut receiver = self.inner.position.subscribe();
        let waited = tokio::time::timeout(timeout, async move {
            receiver.wait_for(|p| *p >= min).await.map(|p| *p)
        })
        .await;
        if let Ok(Ok(position)) = waited {
            return Ok(position);
        }
        match self.resync().await {
            Some(position) if position >= min => Ok(position),
            _ => Err(self.current()),
        }
    }

    fn advance(&self, position: i64) {
        self.inner.position.send_if_modified(|current| {
            let newer = position > *current;
            if newer {
                *current = position;
            }
            newer
        });
    }

    fn wake(&self, touched: &Touched) {
        match touched {
            Touched::All => self.inner.everyone.send_modify(|n| *n += 1),
            Touched::Owners(list) => {
                let owners = self
                    .inner
                    .owners
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for owner in list {
                    if let Some(tx) = owners.get(owner) {
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    }

    async fn resync(&self) -> Option<i64> {
        match self.read_position().await {
            Ok(position) => {
                self.advance(position);
                self.wake(&Touched::All);
                Some(position)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the change feed's checkpoint");
                None
            }
        }
    }

    async fn read_position(&self) -> Result<i64, sqlx::Error> {
        let mut conn = self.inner.reads.get().await?;
        let position = changes_position(&mut *conn).await;
        conn.settle(position)
    }

    async fn listen(self, stop: CancellationToken) {
        listener::listen(&self.inner.db, CHANNEL, "change feed", &self, &stop).await;
    }
}

impl Notices for ChangeHub {
    /// Reads the feed's position and wakes every stream: notices may have
    /// been missed.
    async fn connected(&self) -> bool {
        self.resync().await.is_some()
    }

    async fn received(&self, payload: &str) {
        match Notice::parse(payload) {
            Some(notice) => {
                // Position first: a woken stream that reports it must not lag it.
                self.advance(i64::try_from(notice.commit).unwrap_or(i64::MAX));
                self.wake(&notice.touched);
            }
            None => {
                tracing::warn!(payload, "unreadable change notice");
                self.resync().await;
            }
        }
    }
}
