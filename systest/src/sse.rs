//! A minimal Server-Sent Events reader over a reqwest response, as a client
//! of `GET /v1/changes/stream` sees it: events with id, type and JSON data;
//! comments (heartbeats) skipped.

use std::time::Duration;

use anyhow::Context;
use reqwest::Response;
use serde_json::Value;

/// Only a guard against a hung test, never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    /// `(task_id, version)`: what identifies a change.
    pub fn key(&self) -> (String, u64) {
        (
            self.data["task_id"].as_str().unwrap_or_default().to_owned(),
            self.data["version"].as_u64().unwrap_or(u64::MAX),
        )
    }
}

pub struct SseReader {
    response: Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: Response) -> Self {
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).context("event data is JSON")?;
                return Ok(Some(SseEvent { id, event, data }));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .context("the stream went silent")??;
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return Ok(None),
            }
        }
    }
}
