//! `SealedStore`: any `EventStore` with task payloads sealed on the way in
//! and opened on the way out, so the services, the projector and the log
//! copier work on plain payloads while the log holds ciphertext.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use uuid::Uuid;

use super::{DataKey, KeyRing, is_sealed, open, seal};
use crate::erasure;
use crate::store::{
    AppendOutcome, EventBatches, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError,
};

/// Only task streams carry personal text; the erasure streams carry none
/// and must stay writable after the key is gone.
const SEALED_STREAMS: &str = "task-";

/// Seals what is appended, opens what is read. A payload whose owner has no
/// key any more (erased) is handed out still sealed: readers treat
/// `sealing::is_sealed` payloads as erased.
#[derive(Clone)]
pub struct SealedStore {
    inner: Arc<dyn EventStore>,
    keys: Arc<dyn KeyRing>,
    shred_orphans: bool,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn EventStore>, keys: Arc<dyn KeyRing>) -> Self {
        Self {
            inner,
            keys,
            shred_orphans: false,
        }
    }

    /// For copying a log (`copy-log --seal`): a plaintext event of an owner
    /// whose account is gone is sealed under a key made for it and thrown
    /// away, so the copy holds none of an erased user's text, instead of
    /// failing as `Erased`.
    #[must_use]
    pub fn shredding_orphans(mut self) -> Self {
        self.shred_orphans = true;
        self
    }
}

/// Opens every sealed payload of `events` whose owner still has a key,
/// reading the keys of the batch in one go.
async fn open_all(keys: &dyn KeyRing, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
    let owners: BTreeSet<Uuid> = events
        .iter()
        .filter(|e| is_sealed(&e.data))
        .filter_map(|e| e.metadata.owner_id)
        .collect();
    if owners.is_empty() {
        return Ok(());
    }
    let owners: Vec<Uuid> = owners.into_iter().collect();
    let keys: HashMap<Uuid, DataKey> = keys.keys(&owners).await?;
    for event in events.iter_mut().filter(|e| is_sealed(&e.data)) {
        let Some((owner, key)) = event
            .metadata
            .owner_id
            .and_then(|o| keys.get(&o).map(|k| (o, k)))
        else {
            continue;
        };
        if let Err(error) = open(&mut event.data, key, owner, event.event_id) {
            // The key is there, the payload does not open: altered in the log.
            tracing::error!(stream = %event.stream_id, version = event.version, %error,
                "a sealed payload does not open under its owner's key; it reads as erased");
        }
    }
    Ok(())
}

#[async_trait]
impl EventStore for SealedStore {
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        // Logging an erasure: nothing more is sealed here under that key.
        if let Some(user) = stream_id
            .strip_prefix(erasure::STREAM_PREFIX)
            .and_then(|id| Uuid::parse_str(id).ok())
        {
            self.keys.forget(user);
        }
        if stream_id.starts_with(SEALED_STREAMS) {
            let mut keys: HashMap<Uuid, DataKey> = HashMap::new();
            // Already sealed (a copied log): the ciphertext goes as it is.
            for event in events.iter_mut().filter(|e| !is_sealed(&e.data)) {
                let Some(owner) = event.metadata.owner_id else {
                    continue;
                };
                let key = match keys.entry(owner) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(slot) => {
                        slot.insert(match self.keys.key_for_writing(owner).await? {
                            Some(key) => key,
                            None if self.shred_orphans => DataKey::generate(),
                            None => return Err(StoreError::Erased { owner }),
                        })
                    }
                };
                seal(&mut event.data, key, owner, event.event_id);
            }
        }
        self.inner.append(stream_id, expected, events).await
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_version: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self
            .inner
            .read_stream(stream_id, from_version, until)
            .await?;
        open_all(self.keys.as_ref(), &mut events).await?;
        Ok(events)
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = self.inner.read_all(after, max).await?;
        open_all(self.keys.as_ref(), &mut events).await?;
        Ok(events)
    }

    fn subscribe_all(&self, after: Option<Position>) -> EventBatches {
        let keys = self.keys.clone();
        self.inner
            .subscribe_all(after)
            .then(move |batch| {
                let keys = keys.clone();
                async move {
                    let mut events = batch?;
                    open_all(keys.as_ref(), &mut events).await?;
                    Ok(events)
                }
            })
            .boxed()
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
