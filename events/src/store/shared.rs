//! One tail of the log for every subscriber in a process.
//!
//! The projector runs several projections, and each tails the whole log: on
//! Postgres every commit's notice made each of them read the log, find it
//! empty again, probe for held-back events and open (decrypt) the same
//! events, so the log's reads grew with the number of projections. Behind a
//! [`SharedTail`], one subscription of the wrapped store reads each batch
//! once and hands it to every subscriber. A subscriber whose position is
//! older than a batch's start (it subscribed late, from an old checkpoint, or
//! fell more than the channel holds behind) reads the missing stretch with
//! `read_all` first, so each still gets every event once, in order, with no
//! gap: the contract of [`EventStore::subscribe_all`].
//!
//! The tail starts at the log's head, not at the first subscriber's
//! position: a projection far behind (counts rebuilt after a Redis loss)
//! catches up on its own reads, at its own pace, and never holds back the
//! others. Each subscriber learns where the tail stands when it joins, so it
//! fills the stretch up to there even if no further write comes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};

/// Batches the channel keeps for a subscriber that is busy applying; one
/// further behind reads its gap from the log.
const CHANNEL_BATCHES: usize = 8;
/// Events per read when a subscriber fills a gap.
const GAP_PAGE: usize = 1_000;
/// A gap the log does not show yet (an older transaction still running holds
/// it back): look again after this, and back off up to `MAX_RETRY`.
const GAP_RETRY: Duration = Duration::from_millis(10);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// A batch read by the tail: `events` follow `after` directly in the log.
#[derive(Clone)]
struct Batch {
    after: Option<Position>,
    events: Arc<Vec<RecordedEvent>>,
}

impl Batch {
    /// Where the log stands after this batch.
    fn up_to(&self) -> Option<Position> {
        self.events.last().map(|e| e.position).or(self.after)
    }

    /// No events: only where the tail stands, so that a subscriber behind
    /// it reads up to there on its own.
    fn marker(up_to: Option<Position>) -> Self {
        Self {
            after: up_to,
            events: Arc::new(Vec::new()),
        }
    }
}

/// The running tail, as subscribers find it.
struct Running {
    tx: broadcast::Sender<Batch>,
    /// Every event up to here has been sent; `None` until the tail has read
    /// the log's head at its start.
    sent_up_to: Option<Option<Position>>,
}

type Slot = Arc<Mutex<Option<Running>>>;

/// Wraps a store so that its `subscribe_all` subscribers share one tail; every
/// other call goes to the wrapped store as it is.
pub struct SharedTail {
    inner: Arc<dyn EventStore>,
    /// `None` before the first subscriber and after the last one left (the
    /// tail stops then, and the next subscriber starts a new one).
    tail: Slot,
}

impl SharedTail {
    pub fn new(inner: Arc<dyn EventStore>) -> Self {
        Self {
            inner,
            tail: Arc::new(Mutex::new(None)),
        }
    }
}

/// Sends `batch` and records how far the tail has sent, both under the lock
/// a joining subscriber takes: it either receives the batch or starts after it.
fn publish(slot: &Slot, tx: &broadcast::Sender<Batch>, batch: Batch) {
    let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(running) = current.as_mut().filter(|r| r.tx.same_channel(tx)) {
        running.sent_up_to = Some(batch.up_to());
    }
    let _ = tx.send(batch);
}

/// Reads the wrapped store's subscription from the log's head and passes each
/// batch on, until a batch finds nobody listening.
async fn run_tail(inner: Arc<dyn EventStore>, tx: broadcast::Sender<Batch>, slot: Slot) {
    let mut backoff = GAP_RETRY;
    let head = loop {
        match inner.head().await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "the shared log tail cannot read the head; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    };
    // Tells the subscribers already waiting how far to read on their own.
    publish(&slot, &tx, Batch::marker(head));
    let mut after = head;
    let mut batches = inner.subscribe_all(head);
    while let Some(item) = batches.next().await {
        match item {
            Ok(events) if !events.is_empty() => {
                let batch = Batch {
                    after,
                    events: Arc::new(events),
                };
                after = batch.up_to();
                publish(&slot, &tx, batch);
            }
            Ok(_) => {}
            // The wrapped subscription retries by itself.
            Err(e) => tracing::warn!(error = %e, "the shared log tail could not read; retrying"),
        }
        // Decided under the lock a new subscriber takes, so none can join a
        // tail that is about to stop.
        let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.receiver_count() == 0 {
            if current.as_ref().is_some_and(|r| r.tx.same_channel(&tx)) {
                *current = None;
            }
            return;
        }
    }
}

/// One subscriber: the shared batches after its position, its gaps read from
/// the log.
struct Follower {
    inner: Arc<dyn EventStore>,
    rx: broadcast::Receiver<Batch>,
    position: Option<Position>,
    /// A batch that starts after `position`: the gap before it is read first.
    waiting: Option<Batch>,
    /// Between reads of a gap the log does not show yet (held back by an
    /// older transaction still running on the server).
    retry: Duration,
}

impl Follower {
    async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let batch = match self.waiting.take() {
                Some(batch) => batch,
                None => match self.rx.recv().await {
                    Ok(batch) => batch,
                    // Dropped batches show as a gap before the next one.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => {
                        // The tail stopped (only when nobody listened): never
                        // for a live subscriber, but do not spin if it did.
                        tokio::time::sleep(GAP_RETRY).await;
                        return Err(StoreError::Unavailable(
                            "the shared log tail stopped".into(),
                        ));
                    }
                },
            };
            if batch.after > self.position {
                self.waiting = Some(batch);
                let page = self.inner.read_all(self.position, GAP_PAGE).await?;
                let Some(last) = page.last().map(|e| e.position) else {
                    tokio::time::sleep(self.retry).await;
                    self.retry = (self.retry * 2).min(MAX_RETRY);
                    continue;
                };
                self.retry = GAP_RETRY;
                self.position = Some(last);
                return Ok(page);
            }
            let start = batch
                .events
                .partition_point(|e| Some(e.position) <= self.position);
            if let Some(last) = batch.events.last().filter(|_| start < batch.events.len()) {
                self.position = Some(last.position);
                return Ok(batch.events[start..].to_vec());
            }
        }
    }
}

#[async_trait]
impl EventStore for SharedTail {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append(stream_id, expected, events).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream_id, from_version, until).await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, max).await
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventBatches {
        let (rx, sent_up_to) = {
            let mut current = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
            match current.as_ref() {
                Some(running) => (running.tx.subscribe(), running.sent_up_to),
                None => {
                    let (tx, rx) = broadcast::channel(CHANNEL_BATCHES);
                    tokio::spawn(run_tail(self.inner.clone(), tx.clone(), self.tail.clone()));
                    *current = Some(Running {
                        tx,
                        sent_up_to: None,
                    });
                    (rx, None)
                }
            }
        };
        // Joining a running tail: what it sent before is read from the log.
        let waiting = sent_up_to.map(Batch::marker);
        let follower = Follower {
            inner: self.inner.clone(),
            rx,
            position: after,
            waiting,
            retry: GAP_RETRY,
        };
        Box::pin(stream::unfold(follower, |mut follower| async move {
            let batch = follower.next_batch().await;
            Some((batch, follower))
        }))
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn count_after(
        &self,
        after: Option<Position>,
        cap: u64,
    ) -> Result<(u64, bool), StoreError> {
        self.inner.count_after(after, cap).await
    }

    async fn approximate_len(&self) -> Result<Option<u64>, StoreError> {
        self.inner.approximate_len().await
    }

    fn split_points(&self, first: Position, head: Position, parts: usize) -> Vec<Position> {
        self.inner.split_points(first, head, parts)
    }
}
