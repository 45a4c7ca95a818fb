//! One SSE stream: a task reads the owner's changes after the stream's place,
//! sends them as events (`id`, `event: <type>`, the change as JSON), and
//! sleeps until the hub says the owner has new ones. Events go through a
//! small buffer; a client that leaves it full for `slow_client` is cut off
//! rather than buffered for without bound, and every stream ends when the
//! service shuts down, so clients reconnect to another instance.
//!
//! Event ids: `<commit>` after the last of the owner's changes in a commit,
//! `<commit>/<prepare>` inside one (several changes can share a commit), so
//! resuming from any id neither repeats nor skips a change.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use tasklog_platform::read_pool::ReadPool;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::ChangeHub;
use super::slots::{RENEW_EVERY, Slot};
use crate::read_model::{After, Change, ChangeFilter, changes_after};

/// Changes read per query while catching up.
const BATCH: u32 = 200;
/// Events waiting for a client: a few batches' worth at most.
pub const BUFFER: usize = 256;
/// Wait before reading again after Postgres failed.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// A client that reads nothing for this long while events wait is cut off.
    pub slow_client: Duration,
}

/// Everything one stream needs.
pub struct StreamTask {
    pub db: ReadPool,
    pub hub: ChangeHub,
    pub owner: Uuid,
    pub after: After,
    pub slot: Slot,
    pub settings: StreamSettings,
    pub stop: CancellationToken,
}

/// The id that resumes right after `change`: `complete` when no later change
/// of the owner shares its commit.
pub fn event_id(change: &Change, complete: bool) -> String {
    if complete {
        change.position.to_string()
    } else {
        format!("{}/{}", change.position, change.prepare)
    }
}

fn event(change: &Change, complete: bool) -> Event {
    let event = Event::default()
        .id(event_id(change, complete))
        .event(&change.kind);
    match event.clone().json_data(change) {
        Ok(e) => e,
        // A change is plain JSON; this cannot happen, but must not panic.
        Err(_) => event.comment("unserialisable change"),
    }
}

impl StreamTask {
    /// Starts the stream's task; its events arrive on the returned receiver,
    /// which ends when the stream does.
    pub fn spawn(self) -> mpsc::Receiver<Result<Event, Infallible>> {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(async move {
            metrics::gauge!("sse_streams_open").increment(1.0);
            self.run(tx).await;
            metrics::gauge!("sse_streams_open").decrement(1.0);
        });
        rx
    }

    /// The next batch after `after`, on a connection held only for it.
    async fn read(&self, after: After, filter: &ChangeFilter) -> Result<Vec<Change>, sqlx::Error> {
        let mut conn = self.db.get().await?;
        let changes = changes_after(&mut *conn, self.owner, after, filter, BATCH).await;
        conn.settle(changes)
    }

    async fn run(self, tx: mpsc::Sender<Result<Event, Infallible>>) {
        let mut wakeup = self.hub.subscribe(self.owner);
        let mut after = self.after;
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.tick().await;
        let filter = ChangeFilter::default();
        loop {
            let changes = match self.read(after, &filter).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(error = %e, "an SSE stream cannot read changes; retrying");
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tx.closed() => return,
                        () = tokio::time::sleep(RETRY) => continue,
                    }
                }
            };
            let full = changes.len() == BATCH as usize;
            for (i, change) in changes.iter().enumerate() {
                // Rows of a commit are written together, so a short read holds
                // the whole of its last commit; a full one may stop inside it.
                let complete = match changes.get(i + 1) {
                    Some(next) => next.position != change.position,
                    None => !full,
                };
                let sent = tokio::select! {
                    () = self.stop.cancelled() => return,
                    sent = tx.send_timeout(Ok(event(change, complete)), self.settings.slow_client) => sent,
                };
                match sent {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => {
                        tracing::info!(owner = %self.owner, "SSE client too slow; disconnecting it");
                        metrics::counter!("sse_slow_clients_disconnected_total").increment(1);
                        return;
                    }
                    Err(SendTimeoutError::Closed(_)) => return,
                }
                after = After {
                    commit: change.position,
                    prepare: Some(change.prepare),
                };
            }
            if full {
                continue;
            }
            loop {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tx.closed() => return,
                    () = wakeup.changed() => break,
                    _ = renew.tick() => self.slot.renew().await,
                }
            }
        }
    }
}
