//! Group commit: appends waiting at the same moment go to Postgres as one
//! batch in one transaction (one fsync), each with its own expected-version
//! check and its own result; one NOTIFY follows the commit (migration 0003
//! says why it is not inside the transaction).
//!
//! A few worker tasks take turns: each takes every append queued so far and
//! commits them together, so under load batches grow by themselves and with
//! one writer nothing waits.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{AppendRow, NOTIFY_CHANNEL, is_unique_violation, outcome_of, to_i64};
use crate::store::{AppendOutcome, ExpectedVersion, NewEvent, StoreError};

/// Appends that lose a race on a version retry this often before giving up.
const RACE_RETRIES: usize = 5;

pub(super) struct Pending {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Tuning of the group commit.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Transactions in flight at once; each holds one connection.
    pub workers: usize,
    /// Most appends in one transaction.
    pub max_batch: usize,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self {
            workers: 4,
            max_batch: 128,
        }
    }
}

#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the workers on the current runtime. They stop when every clone
    /// of this handle is dropped.
    pub fn start(pool: PgPool, settings: GroupCommitSettings) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..settings.workers.max(1) {
            tokio::spawn(worker(pool.clone(), rx.clone(), settings.max_batch.max(1)));
        }
        Self { queue }
    }

    pub async fn submit(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            stream_id: stream_id.to_owned(),
            expected,
            events,
            reply,
        };
        self.queue
            .send(pending)
            .map_err(|_| StoreError::Unavailable("the append workers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the append worker stopped mid-batch".into()))?
    }
}

async fn worker(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    max_batch: usize,
) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            batch
        };
        commit(&pool, batch).await;
    }
}

/// Wakes subscribers after a commit. A failure only delays them until their
/// next poll, so it is logged and not reported to the appenders.
async fn notify(pool: &PgPool) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(pool)
        .await
    {
        tracing::debug!(error = %e, "could not notify subscribers; they will poll");
    }
}

async fn commit(pool: &PgPool, batch: Vec<Pending>) {
    match append_batch(pool, &batch).await {
        Ok(rows) if rows.len() == batch.len() => {
            // Before the replies, so a client that reads its write at once
            // finds subscribers already woken.
            if rows.iter().any(|r| r.outcome == "appended") {
                notify(pool).await;
            }
            for (pending, row) in batch.into_iter().zip(rows) {
                let _ = pending.reply.send(outcome_of(row, pending.expected));
            }
        }
        Ok(rows) => {
            let message = format!("batch of {} got {} results", batch.len(), rows.len());
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Corrupt(message.clone())));
            }
        }
        // A statement error (a version race with another transaction, most
        // likely) aborted everyone's transaction: run each append on its own,
        // so only the one that really conflicts fails.
        Err(e @ sqlx::Error::Database(_)) => {
            tracing::debug!(error = %e, appends = batch.len(), "batch aborted; appending one by one");
            for pending in batch {
                let result = append_alone(pool, &pending).await;
                let _ = pending.reply.send(result);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone().into())));
            }
        }
    }
}

async fn append_alone(pool: &PgPool, pending: &Pending) -> Result<AppendOutcome, StoreError> {
    let mut attempt = 0;
    loop {
        match append_batch(pool, std::slice::from_ref(pending)).await {
            Ok(mut rows) => {
                let row = rows
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("append returned no row".into()))?;
                if row.outcome == "appended" {
                    notify(pool).await;
                }
                return outcome_of(row, pending.expected);
            }
            // Another appender took the same version or id first; now that it
            // has committed, running again gives the exact outcome.
            Err(e) if is_unique_violation(&e) && attempt < RACE_RETRIES => attempt += 1,
            Err(e) => return Err(StoreError::unavailable(e)),
        }
    }
}

async fn append_batch(pool: &PgPool, batch: &[Pending]) -> Result<Vec<AppendRow>, sqlx::Error> {
    let total: usize = batch.iter().map(|p| p.events.len()).sum();
    let mut streams = Vec::with_capacity(batch.len());
    let mut expected = Vec::with_capacity(batch.len());
    let mut counts = Vec::with_capacity(batch.len());
    let mut ids = Vec::with_capacity(total);
    let mut types = Vec::with_capacity(total);
    let mut schemas = Vec::with_capacity(total);
    let mut data = Vec::with_capacity(total);
    let mut metadata = Vec::with_capacity(total);
    for p in batch {
        streams.push(p.stream_id.as_str());
        expected.push(match p.expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => Some(-1_i64),
            ExpectedVersion::Exact(v) => Some(to_i64(v)),
        });
        counts.push(i32::try_from(p.events.len()).unwrap_or(i32::MAX));
        for e in &p.events {
            ids.push(e.event_id);
            types.push(e.event_type.as_str());
            schemas.push(e.schema_version);
            data.push(&e.data);
            metadata.push(serde_json::to_value(&e.metadata).unwrap_or_default());
        }
    }
    sqlx::query_as::<_, AppendRow>(
        "SELECT outcome, stream_version, commit_position, prepare_position \
         FROM eventlog.append_batch($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&streams)
    .bind(&expected)
    .bind(&counts)
    .bind(&ids)
    .bind(&types)
    .bind(&schemas)
    .bind(&data)
    .bind(&metadata)
    .fetch_all(pool)
    .await
}
