//! The drill's record of what the service acknowledged: every write with the
//! task's id, its version and log position, and when it was sent and
//! answered; the quiet moment kept for a point-in-time restore; when the
//! server was killed.

use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Create,
    Patch,
    Delete,
}

/// One acknowledged write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Write {
    pub kind: Kind,
    pub id: Uuid,
    /// The stream version the reply named.
    pub version: u64,
    /// The log position (commit) the reply named.
    pub position: u64,
    /// Just before the request left: the write cannot have committed earlier.
    pub sent_at: DateTime<Utc>,
    /// Just after the reply came: the write had committed by then.
    pub acked_at: DateTime<Utc>,
}

/// A stretch in which no write was in flight: every write before it was
/// acknowledged before `from`, every write after it was sent after `to`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Quiet {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Quiet {
    /// The moment a point-in-time restore aims at: the middle.
    pub fn middle(&self) -> DateTime<Utc> {
        self.from + (self.to - self.from) / 2
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub writes: Vec<Write>,
    pub quiet: Option<Quiet>,
    pub killed_at: Option<DateTime<Utc>>,
    /// Requests that got no acknowledgement before the kill (ambiguous: they
    /// may or may not have been written; they are not counted as acknowledged).
    pub unacknowledged_before_kill: u64,
}

impl Ledger {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_vec(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}
