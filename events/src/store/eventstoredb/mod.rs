//! The EventStoreDB/KurrentDB event log, through the `kurrentdb` gRPC client.
//!
//! Streams map one to one. The log is `$all` filtered server-side on the
//! `task-` prefix; a position is the `$all` (commit, prepare) pair. Every event
//! an append writes over gRPC is its own implicit commit (commit = prepare), so
//! a checkpoint on any event is a commit boundary.

mod mapping;
mod read;
mod subscription;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, ReadAllOptions, ReadStreamOptions,
    StreamPosition, SubscriptionFilter,
};
use uuid::Uuid;

use self::mapping::{Known, STREAM_PREFIX, classify, store_error};
use super::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};

/// How long a readiness probe waits for the server.
const PING_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL's own message names the bad part; the URL itself (which may hold
    /// a password) is never repeated.
    #[error("EVENT_STORE_URL is not a valid EventStoreDB/KurrentDB connection string: {0}")]
    Url(String),
    #[error("cannot create the EventStoreDB/KurrentDB client: {0}")]
    Client(String),
}

#[derive(Clone)]
pub struct EsdbEventStore {
    client: Client,
}

impl EsdbEventStore {
    /// Builds a client for `url` (`esdb://`, `kurrentdb://`, their `+discover`
    /// forms). It connects lazily, so a server that is down shows in `ping`.
    ///
    /// # Errors
    /// When the URL does not parse or the client cannot be created.
    pub fn connect(url: &str) -> Result<Self, ConnectError> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|e: kurrentdb::ClientSettingsParseError| ConnectError::Url(e.to_string()))?;
        // The client spawns its connection task on this runtime; outside one,
        // say so instead of panicking.
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ConnectError::Client(format!("needs a tokio runtime: {e}")))?;
        let client = Client::with_runtime_handle(runtime, settings)
            .map_err(|e| ConnectError::Client(e.to_string()))?;
        Ok(Self { client })
    }

    fn task_streams() -> SubscriptionFilter {
        SubscriptionFilter::on_stream_name()
            .add_prefix(STREAM_PREFIX)
            .add_prefix(crate::erasure::STREAM_PREFIX)
    }
}

#[async_trait]
impl EventStore for EsdbEventStore {
    #[tracing::instrument(skip(self, events), fields(events = events.len()))]
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        // The server answers a retry with the first result but does not say it
        // was one, reports half-known ids as a version conflict, and for `Any`
        // only remembers recent ids: this look-up makes all three exact.
        let window = self.retry_window(stream_id, expected, ids.len()).await?;
        if let Some(outcome) = retry_outcome(classify(&window, &ids))? {
            return Ok(outcome);
        }
        let data = events
            .into_iter()
            .map(mapping::event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let options =
            AppendToStreamOptions::default().stream_state(mapping::stream_state(expected));
        match self
            .client
            .append_to_stream(stream_id, &options, data)
            .await
        {
            Ok(written) => Ok(AppendOutcome {
                version: written.next_expected_version,
                position: mapping::to_position(written.position),
                duplicate: false,
            }),
            Err(e @ kurrentdb::Error::WrongExpectedVersion { .. }) => {
                // The same ids may have landed meanwhile (a retry racing its
                // original); only a real conflict is reported as one.
                let window = self.retry_window(stream_id, expected, ids.len()).await?;
                match retry_outcome(classify(&window, &ids))? {
                    Some(outcome) => Ok(outcome),
                    // `Any` never conflicts: the server says this when some of
                    // the ids are stored and others are not.
                    None if expected == ExpectedVersion::Any => {
                        Err(StoreError::IdempotencyMismatch)
                    }
                    None => Err(store_error(e, expected)),
                }
            }
            Err(e) => Err(store_error(e, expected)),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let options = ReadStreamOptions::default().position(StreamPosition::Position(from_version));
        let mut events = self.read(stream_id, &options).await?;
        // The server has no time filter; task streams are short enough to filter here.
        if let Some(until) = until {
            events.retain(|e| e.recorded_at <= until);
        }
        Ok(events)
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let want = max.max(1);
        let mut events: Vec<RecordedEvent> = Vec::new();
        let mut from = after;
        loop {
            // `$all` reads include the event at the start position; ask for one more.
            let page = self.read_all_page(from, want + 1).await?;
            let exhausted = page.len() <= want;
            let fresh = page
                .into_iter()
                .filter(|e| from.is_none_or(|f| e.position > f));
            events.extend(fresh);
            from = events.last().map(|e| e.position).or(from);
            if let Some(end) = mapping::commit_boundary(&events, want) {
                events.truncate(end);
                return Ok(events);
            }
            if exhausted {
                return Ok(events);
            }
        }
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventBatches {
        subscription::subscribe(self.client.clone(), Self::task_streams(), after)
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .filter(Self::task_streams())
            .max_count(1);
        Ok(self
            .read_all_with(&options)
            .await?
            .first()
            .map(|e| e.position))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // A real round trip: the client connects lazily and caches its channel.
        let options = ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1)
            .deadline(PING_DEADLINE);
        let mut read = self
            .client
            .read_all(&options)
            .await
            .map_err(StoreError::unavailable)?;
        read.next().await.map_err(StoreError::unavailable)?;
        Ok(())
    }
}

/// A stored retry becomes the first result; half-known ids are refused.
fn retry_outcome(known: Known) -> Result<Option<AppendOutcome>, StoreError> {
    match known {
        Known::None => Ok(None),
        Known::All { version, position } => Ok(Some(AppendOutcome {
            version,
            position,
            duplicate: true,
        })),
        Known::Some => Err(StoreError::IdempotencyMismatch),
    }
}

#[cfg(test)]
mod tests;
