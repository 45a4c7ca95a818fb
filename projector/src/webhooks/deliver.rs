//! One subscription's turn: its next changes after its checkpoint, sent one
//! at a time in log order; each attempt logged with the checkpoint it moves
//! (or the retry it schedules) in one transaction. A failure ends the turn,
//! so nothing after a failed change is sent before it.

use chrono::Utc;
use serde::Serialize;
use sqlx::PgPool;
use tasklog_command::webhooks::store::{self, AttemptRecord, Outcome, Target};
use tasklog_command::webhooks::values::delivery_id;
use tasklog_events::sealing::KeyEncryptionKey;
use tasklog_readmodel::changes::{After, Change, ChangeFilter, changes_after};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::backoff::{Backoff, Next};
use super::send::{Sender, Sent};

/// Changes taken per turn: then another subscription gets the worker.
pub const TURN: u32 = 100;

/// A delivery's body: the change exactly as the feed shows it.
#[derive(Serialize)]
struct Delivery<'a> {
    delivery_id: Uuid,
    webhook_id: Uuid,
    change: &'a Change,
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing after the checkpoint (as of the change feed position read
    /// before the turn began).
    Idle,
    /// Sent what there was (maybe more remains), or scheduled a retry.
    Worked,
}

pub struct Deliverer {
    /// Where the subscriptions and the delivery log live (`DATABASE_URL`).
    pub accounts: PgPool,
    /// Where the change feed lives (`READMODEL_DATABASE_URL`).
    pub readmodel: PgPool,
    pub sender: Sender,
    pub backoff: Backoff,
    /// Opens the stored secrets (`DATA_KEY_ENCRYPTION_KEY`).
    pub kek: KeyEncryptionKey,
}

impl Deliverer {
    /// # Errors
    /// When Postgres fails; what was recorded stays recorded, and the rest is
    /// sent again later (at least once).
    pub async fn turn(
        &self,
        target: Target,
        stop: &CancellationToken,
    ) -> Result<Turn, sqlx::Error> {
        let filter = ChangeFilter {
            types: target.types.clone(),
            ..ChangeFilter::default()
        };
        let after = After {
            commit: target.commit,
            prepare: Some(target.prepare),
        };
        let changes = changes_after(&self.readmodel, target.owner, after, &filter, TURN).await?;
        if changes.is_empty() {
            return Ok(Turn::Idle);
        }
        let mut target = target;
        for change in &changes {
            if stop.is_cancelled() {
                break;
            }
            let id = delivery_id(target.id, target.epoch, change.position, change.prepare);
            let body = serde_json::to_vec(&Delivery {
                delivery_id: id,
                webhook_id: target.id,
                change,
            })
            .unwrap_or_default();
            let attempted_at = Utc::now();
            let sent = match target.signing_secrets(&self.kek) {
                Ok(secrets) => {
                    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                    self.sender.send(&target.url, &secrets, id, body).await
                }
                // Logged as a failed attempt and retried: the operator sees
                // it in the delivery log, and a corrected key resumes it.
                Err(e) => Sent::refused(format!(
                    "the webhook's secret does not open with this DATA_KEY_ENCRYPTION_KEY: {e}"
                )),
            };
            let attempt = target.attempts.saturating_add(1);
            let outcome = if sent.delivered() {
                Outcome::Delivered
            } else {
                let since = target.retry_since.unwrap_or(attempted_at);
                match self.backoff.next(
                    u32::try_from(attempt).unwrap_or(u32::MAX),
                    since,
                    Utc::now(),
                    rand::random::<f64>(),
                ) {
                    Next::RetryAt(at) => Outcome::Retry(at),
                    Next::GiveUp => Outcome::Failing,
                }
            };
            record_metrics(&sent, outcome);
            let record = AttemptRecord {
                delivery_id: id,
                commit: change.position,
                prepare: change.prepare,
                attempt,
                attempted_at,
                status_code: sent.status,
                latency_ms: i32::try_from(sent.latency.as_millis()).unwrap_or(i32::MAX),
                error: sent.error.clone(),
                response_body: sent.body.clone(),
            };
            let current = store::record(&self.accounts, &target, &record, outcome).await?;
            match outcome {
                Outcome::Delivered if current => {
                    target.attempts = 0;
                    target.retry_since = None;
                }
                Outcome::Failing => {
                    tracing::warn!(webhook_id = %target.id, error = ?sent.error,
                        "webhook retries ran out; marked failing until a replay");
                    break;
                }
                // Replayed or deleted meanwhile, or a retry is scheduled.
                _ => break,
            }
        }
        Ok(Turn::Worked)
    }
}

fn record_metrics(sent: &super::send::Sent, outcome: Outcome) {
    let label = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry(_) => "retry",
        Outcome::Failing => "gave_up",
    };
    metrics::counter!("webhook_attempts_total", "outcome" => label).increment(1);
    metrics::histogram!("webhook_attempt_seconds").record(sent.latency.as_secs_f64());
}
