//! What a restored log holds, read through the `EventStore` trait: each
//! task's versions with their positions, and the newest event's time.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use tasklog_events::store::open;
use uuid::Uuid;

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

/// Reads the whole log at `database_url`.
pub async fn read(database_url: &str) -> anyhow::Result<Restored> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    let store = open(None, pool).await.context("opening the restored log")?;
    let mut restored = Restored::default();
    let mut after = None;
    loop {
        let batch = store.read_all(after, 5000).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.position);
        for e in &batch {
            restored.record(&e.stream_id, e.version, e.position.commit, e.recorded_at);
        }
    }
    Ok(restored)
}
