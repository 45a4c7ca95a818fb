//! A minimal Server-Sent Events reader, as a client of
//! `GET /v1/changes/stream` sees it: events with their id, type and JSON
//! data; comments (heartbeats) skipped. For the query service's tests and
//! the system tests alike; it takes any HTTP response with a body, such as
//! a `reqwest::Response`.

use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use futures_util::StreamExt;
use serde_json::Value;

/// Only a guard against a hung test, never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// One event of a stream.
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

    /// One event's lines (`field: value`); `None` for a comment-only block.
    fn parse(block: &str) -> anyhow::Result<Option<Self>> {
        let (mut id, mut event, mut data) = (String::new(), String::new(), Vec::new());
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => value.clone_into(&mut id),
                "event" => value.clone_into(&mut event),
                "data" => data.push(value),
                // "" is a comment; "retry" and unknown fields are ignored.
                _ => {}
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        let data = serde_json::from_str(&data.join("\n")).context("event data is JSON")?;
        Ok(Some(Self { id, event, data }))
    }
}

/// Reads events off a streaming response.
pub struct SseReader {
    body: BodyDataStream,
    buffer: Vec<u8>,
}

impl SseReader {
    pub fn new<B>(response: impl Into<axum::http::Response<B>>) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        Self {
            body: Body::new(response.into().into_body()).into_data_stream(),
            buffer: Vec::new(),
        }
    }

    /// The next event; `Ok(None)` when the server ended the stream.
    ///
    /// # Errors
    /// When the stream fails, stays silent for a minute, or sends data
    /// that is not JSON.
    pub async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            // Bytes, not text, until a whole event is in: a chunk may end
            // inside a character.
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).context("events are UTF-8")?;
                match SseEvent::parse(&block)? {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .context("the stream went silent")?;
            match chunk {
                Some(bytes) => self.buffer.extend_from_slice(&bytes?),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(chunks: &[&'static str]) -> SseReader {
        let chunks: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from_static(c.as_bytes())))
            .collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        SseReader::new(axum::http::Response::new(body))
    }

    #[tokio::test]
    async fn events_split_anywhere_read_whole_and_comments_are_skipped() {
        let mut r = reader(&[
            ": heartbeat\n\nid: 7/1\nevent: TaskCreated\nda",
            "ta: {\"task_id\":\"t\",\"version\":1,\"title\":\"caf\u{e9}",
            "\"}\n\nid:8\nevent:TaskDeleted\ndata:{\"task_id\":\"t\",\n",
            "data:\"version\":2}\n\n",
        ]);
        let first = r.next().await.unwrap().unwrap();
        assert_eq!(
            (first.id.as_str(), first.event.as_str()),
            ("7/1", "TaskCreated")
        );
        assert_eq!(first.data["title"], "caf\u{e9}");
        let second = r.next().await.unwrap().unwrap();
        assert_eq!(second.id, "8");
        assert_eq!(second.key(), ("t".to_owned(), 2));
        assert!(r.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_character_split_between_chunks_is_kept() {
        let word = "caf\u{e9}".as_bytes();
        let (head, tail) = word.split_at(word.len() - 1);
        let mut body = b"data: \"".to_vec();
        body.extend_from_slice(head);
        let mut rest = tail.to_vec();
        rest.extend_from_slice(b"\"\n\n");
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from(body)), Ok(Bytes::from(rest))];
        let mut r = SseReader::new(axum::http::Response::new(Body::from_stream(
            futures_util::stream::iter(chunks),
        )));
        assert_eq!(r.next().await.unwrap().unwrap().data, "caf\u{e9}");
    }
}
