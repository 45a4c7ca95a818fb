//! Tailing `$all`: a catch-up subscription from a checkpoint, filtered on the
//! `task-` prefix server-side, that resubscribes after a disconnect from the last
//! event it handed out, so nothing is lost or repeated.
//!
//! The client's `next_subscription_event` is not cancel-safe (a dropped call
//! drops the gRPC stream), so a task pumps it into a channel and batching waits
//! on the channel instead.

use std::time::Duration;

use futures::stream;
use kurrentdb::{
    Client, StreamPosition, SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter,
};
use tokio::sync::mpsc;

use super::mapping::{self, from_position, recorded_event};
use crate::store::{EventBatches, ExpectedVersion, Position, RecordedEvent, StoreError};

const BATCH: usize = 1000;
/// How long a batch waits for more events that are already on their way.
const LINGER: Duration = Duration::from_millis(2);
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One message of the pump: an event, a sign that everything before it was
/// sent (checkpoint, caught up), or the subscription's end.
type Item = Result<Option<RecordedEvent>, StoreError>;

/// Collects consecutive events into batches that never split a commit and
/// never repeat an event at or before the last one handed out.
#[derive(Debug)]
pub(super) struct Batcher {
    after: Option<Position>,
    pending: Vec<RecordedEvent>,
    max: usize,
}

impl Batcher {
    pub(super) fn new(after: Option<Position>, max: usize) -> Self {
        Self {
            after,
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// Where a (re)subscription starts: after the last event handed out.
    pub(super) fn after(&self) -> Option<Position> {
        self.after
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds an event; returns a full batch once `event` opens a new commit.
    pub(super) fn offer(&mut self, event: RecordedEvent) -> Option<Vec<RecordedEvent>> {
        let seen = self
            .pending
            .last()
            .map(|e| e.position)
            .or(self.after)
            .is_some_and(|p| event.position <= p);
        if seen {
            return None;
        }
        let full = self.pending.len() >= self.max
            && self
                .pending
                .last()
                .is_some_and(|last| last.position.commit != event.position.commit);
        let batch = if full { self.flush() } else { None };
        self.pending.push(event);
        batch
    }

    /// Hands out what is pending (the caller knows its last commit is complete).
    pub(super) fn flush(&mut self) -> Option<Vec<RecordedEvent>> {
        let last = self.pending.last()?.position;
        self.after = Some(last);
        Some(std::mem::take(&mut self.pending))
    }

    /// Forgets what was not handed out; a resubscription delivers it again.
    pub(super) fn reset(&mut self) {
        self.pending.clear();
    }
}

struct Tail {
    client: Client,
    filter: SubscriptionFilter,
    batcher: Batcher,
    events: Option<mpsc::Receiver<Item>>,
    backoff: Duration,
}

impl Tail {
    fn subscribe(&mut self) -> mpsc::Receiver<Item> {
        let start = match self.batcher.after() {
            Some(p) if p != Position::START => StreamPosition::Position(from_position(p)),
            _ => StreamPosition::Start,
        };
        let options = SubscribeToAllOptions::default()
            .position(start)
            .filter(self.filter.clone());
        let client = self.client.clone();
        let (tx, rx) = mpsc::channel(BATCH);
        tokio::spawn(async move {
            let mut sub = client.subscribe_to_all(&options).await;
            loop {
                let item = tokio::select! {
                    // The consumer is gone: close the server's stream now, not at
                    // the next event.
                    () = tx.closed() => return,
                    next = sub.next_subscription_event() => pump_item(next),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        rx
    }

    async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let rx = match self.events.take() {
                Some(rx) => rx,
                None => self.subscribe(),
            };
            let rx = self.events.insert(rx);
            let item = if self.batcher.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(LINGER, rx.recv()).await {
                    Ok(item) => item,
                    // Quiet: what is pending is all there is for now.
                    Err(_) => Some(Ok(None)),
                }
            };
            match item {
                Some(Ok(Some(event))) => {
                    if let Some(batch) = self.batcher.offer(event) {
                        self.backoff = FIRST_RETRY;
                        return Ok(batch);
                    }
                }
                Some(Ok(None)) => {
                    if let Some(batch) = self.batcher.flush() {
                        self.backoff = FIRST_RETRY;
                        return Ok(batch);
                    }
                }
                Some(Err(e)) => return Err(self.disconnected(e).await),
                None => {
                    let e = StoreError::unavailable(kurrentdb::Error::ConnectionClosed);
                    return Err(self.disconnected(e).await);
                }
            }
        }
    }

    /// Drops the subscription and what it had not handed out, waits, and lets
    /// the next call resubscribe after the last event handed out.
    async fn disconnected(&mut self, e: StoreError) -> StoreError {
        tracing::warn!(error = %e, after = ?self.batcher.after(), "$all subscription dropped; resubscribing");
        self.events = None;
        self.batcher.reset();
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        e
    }
}

fn pump_item(next: kurrentdb::Result<SubscriptionEvent>) -> Item {
    match next {
        Ok(SubscriptionEvent::EventAppeared(resolved)) => match resolved.event.as_ref() {
            Some(e) => recorded_event(e).map(Some),
            None => Ok(None),
        },
        // Checkpoints, caught-up and the other markers only arrive between
        // commits: a boundary, nothing to hand out.
        Ok(_) => Ok(None),
        Err(e) => Err(mapping::store_error(e, ExpectedVersion::Any)),
    }
}

pub(super) fn subscribe(
    client: Client,
    filter: SubscriptionFilter,
    after: Option<Position>,
) -> EventBatches {
    let tail = Tail {
        client,
        filter,
        batcher: Batcher::new(after, BATCH),
        events: None,
        backoff: FIRST_RETRY,
    };
    Box::pin(stream::unfold(tail, |mut tail| async move {
        let batch = tail.next_batch().await;
        Some((batch, tail))
    }))
}

#[cfg(test)]
mod tests;
