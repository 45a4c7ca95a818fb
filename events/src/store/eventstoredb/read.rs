//! Reads behind the adapter: one stream (missing reads as empty), the window
//! where a retried append would be stored, and filtered pages of `$all`.

use kurrentdb::{ReadAllOptions, ReadStreamOptions, StreamPosition};

use super::EsdbEventStore;
use super::mapping::{self, recorded_event, store_error};
use crate::store::{ExpectedVersion, Position, RecordedEvent, StoreError};

impl EsdbEventStore {
    /// Reads events of one stream; a stream that does not exist reads as empty.
    pub(super) async fn read(
        &self,
        stream_id: &str,
        options: &ReadStreamOptions,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let any = ExpectedVersion::Any;
        let mut read = match self.client.read_stream(stream_id, options).await {
            Ok(read) => read,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(e, any)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(e) = resolved.event.as_ref() {
                        events.push(recorded_event(e)?);
                    }
                }
                Ok(None) => return Ok(events),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(e, any)),
            }
        }
    }

    /// The stored events where a retry of an append of `count` events at
    /// `expected` would have landed: the versions right after `expected`, or
    /// the stream's last `count` events for `Any`.
    pub(super) async fn retry_window(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let from = match expected {
            ExpectedVersion::Any => StreamPosition::End,
            ExpectedVersion::NoStream => StreamPosition::Start,
            ExpectedVersion::Exact(v) => StreamPosition::Position(v.saturating_add(1)),
        };
        let options = ReadStreamOptions::default().position(from).max_count(count);
        self.read(stream_id, &options).await
    }

    pub(super) async fn read_all_page(
        &self,
        from: Option<Position>,
        count: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let start = match from {
            Some(p) if p != Position::START => StreamPosition::Position(mapping::from_position(p)),
            _ => StreamPosition::Start,
        };
        let options = ReadAllOptions::default()
            .position(start)
            .filter(Self::task_streams())
            .max_count(count);
        self.read_all_with(&options).await
    }

    pub(super) async fn read_all_with(
        &self,
        options: &ReadAllOptions,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let any = ExpectedVersion::Any;
        let mut read = self
            .client
            .read_all(options)
            .await
            .map_err(|e| store_error(e, any))?;
        let mut events = Vec::new();
        while let Some(resolved) = read.next().await.map_err(|e| store_error(e, any))? {
            if let Some(e) = resolved.event.as_ref() {
                events.push(recorded_event(e)?);
            }
        }
        Ok(events)
    }
}
