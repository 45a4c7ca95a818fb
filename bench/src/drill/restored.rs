//! What a restored log holds for the drill's tasks, read through the
//! `EventStore` trait: each task's versions with their positions, and the
//! newest of their events' times.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use sqlx::postgres::PgPoolOptions;
use tasklog_events::store::open;
use uuid::Uuid;

/// Streams read at once.
const READERS: usize = 4;

/// Per task: version to log position (commit), as the restored log has them.
#[derive(Debug, Default)]
pub struct Restored {
    pub streams: HashMap<Uuid, BTreeMap<u64, u64>>,
    pub newest_recorded: Option<DateTime<Utc>>,
    pub events: u64,
}

impl Restored {
    /// The position the log holds for this task at this version, if any.
    pub fn position_of(&self, id: Uuid, version: u64) -> Option<u64> {
        self.streams.get(&id).and_then(|v| v.get(&version)).copied()
    }

    pub fn record(&mut self, stream_id: &str, version: u64, commit: u64, at: DateTime<Utc>) {
        self.events += 1;
        if self.newest_recorded.is_none_or(|n| at > n) {
            self.newest_recorded = Some(at);
        }
        if let Some(id) = stream_id
            .strip_prefix("task-")
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            self.streams.entry(id).or_default().insert(version, commit);
        }
    }
}

/// Reads these tasks' streams from the log at `database_url`. Stream reads,
/// not the whole log: reading the log stops at the server's oldest running
/// transaction, which on a shared server may be anyone's.
pub async fn read(database_url: &str, ids: &BTreeSet<Uuid>) -> anyhow::Result<Restored> {
    let pool = PgPoolOptions::new()
        .max_connections(READERS as u32)
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    let store = open(None, pool).await.context("opening the restored log")?;
    let streams: Vec<_> = stream::iter(ids.iter().map(|id| {
        let store = store.clone();
        async move { store.read_stream(&format!("task-{id}"), 0, None).await }
    }))
    .buffer_unordered(READERS)
    .try_collect()
    .await?;
    let mut restored = Restored::default();
    for e in streams.iter().flatten() {
        restored.record(&e.stream_id, e.version, e.position.commit, e.recorded_at);
    }
    Ok(restored)
}
