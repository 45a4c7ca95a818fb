//! The webhook delivery worker: one more job of `tasklog-projector run`,
//! under a lease of its own (`WEBHOOKS_LEASE`), so one instance delivers and
//! a standby takes over when it dies.
//!
//! Each subscription follows the change feed (`readmodel.changes`, the
//! owner's changes in log order) from its own checkpoint, a log position in
//! `accounts.webhooks`: positions, not rows, so a rebuilt read model never
//! sends anything again. A wake-up comes with each change-feed batch
//! (`LISTEN tasklog_changes`) and every `WEBHOOK_POLL_MS` (retries coming
//! due, a lost notification). At most `WEBHOOK_WORKERS` subscriptions are
//! being delivered to at once, each by one task, so one subscription's
//! changes go out one at a time, in order.

pub mod backoff;
pub mod deliver;
pub mod send;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog_command::webhooks::store;
use tasklog_events::sealing::KeyEncryptionKey;
use tasklog_readmodel::changes::{CHANNEL, changes_position};
use tasklog_readmodel::listener::{self, Notices};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::lease::{Lease, LeaseTiming, WEBHOOKS_LEASE};
use deliver::{Deliverer, Turn};

/// Subscriptions looked at per round.
const DUE_PAGE: i64 = 10_000;

/// How often the delivery log is pruned (`store::LOG_RETENTION_DAYS`).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The worker's name in logs, metrics and the lease holder's name.
pub const WEBHOOKS: &str = "webhooks";

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Subscriptions delivered to at once (`WEBHOOK_WORKERS`).
    pub workers: usize,
    pub backoff: backoff::Backoff,
    /// How often due retries are looked for without a wake-up (`WEBHOOK_POLL_MS`).
    pub poll: Duration,
    /// `WEBHOOK_ALLOW_PRIVATE`: deliveries to loopback and private addresses.
    pub allow_private: bool,
    /// Per attempt, connect to last byte (10 s).
    pub timeout: Duration,
}

/// The worker's two databases: the same pool when the read model shares
/// the accounts' server.
#[derive(Clone)]
pub struct Pools {
    /// The subscriptions and the delivery log (`DATABASE_URL`).
    pub accounts: PgPool,
    /// The change feed, its notices and the lease (`READMODEL_DATABASE_URL`).
    pub readmodel: PgPool,
}

/// Runs the worker until `shutdown`: waits for its lease, delivers while it
/// holds it, stands by again if it loses it.
pub async fn run(
    pools: Pools,
    settings: WebhookSettings,
    kek: KeyEncryptionKey,
    timing: LeaseTiming,
    instance: String,
    shutdown: CancellationToken,
) {
    let sender = match send::Sender::new(settings.allow_private, settings.timeout) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; no webhooks will be sent");
            return;
        }
    };
    let deliverer = Arc::new(Deliverer {
        accounts: pools.accounts.clone(),
        readmodel: pools.readmodel.clone(),
        sender,
        backoff: settings.backoff,
        kek,
    });
    let holder = format!("{instance}/{WEBHOOKS}");
    let lease_gauge = metrics::gauge!("projector_lease_held", "projection" => WEBHOOKS);
    lease_gauge.set(0.0);
    loop {
        let Some(lease) =
            Lease::acquire(&pools.readmodel, WEBHOOKS_LEASE, &holder, timing, &shutdown).await
        else {
            return;
        };
        tracing::info!(projection = WEBHOOKS, "lease acquired; delivering webhooks");
        lease_gauge.set(1.0);
        let stop = shutdown.child_token();
        let lost = lease.lost().clone();
        let stop_on_loss = {
            let stop = stop.clone();
            tokio::spawn(async move {
                lost.cancelled().await;
                stop.cancel();
            })
        };
        deliver_while_held(&pools, &deliverer, &settings, &stop).await;
        stop_on_loss.abort();
        lease_gauge.set(0.0);
        lease.release().await;
        if shutdown.is_cancelled() {
            tracing::info!(projection = WEBHOOKS, "lease released on shutdown");
            return;
        }
        tracing::warn!(projection = WEBHOOKS, "lease lost; standing by");
    }
}

/// Wakes the worker on every change-feed batch, and once more whenever the
/// listener (re)connects: batches may have gone unheard meanwhile.
struct Wake(Arc<Notify>);

impl Notices for Wake {
    async fn connected(&self) -> bool {
        self.0.notify_one();
        true
    }

    async fn received(&self, _payload: &str) {
        self.0.notify_one();
    }
}

async fn listen(db: PgPool, notify: Arc<Notify>, stop: CancellationToken) {
    listener::listen(&db, CHANNEL, WEBHOOKS, &Wake(notify), &stop).await;
}

/// Where a subscription was found with nothing to send: its epoch and the
/// change feed's position then. Until either moves there is nothing to ask.
type IdleMark = (i32, i64);

async fn deliver_while_held(
    pools: &Pools,
    deliverer: &Arc<Deliverer>,
    settings: &WebhookSettings,
    stop: &CancellationToken,
) {
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen(pools.readmodel.clone(), wake.clone(), stop.clone()));
    let mut running: JoinSet<(Uuid, Option<IdleMark>)> = JoinSet::new();
    let mut busy: HashSet<Uuid> = HashSet::new();
    let mut idle: HashMap<Uuid, IdleMark> = HashMap::new();
    // Which subscription each running turn is for, so that one that panicked
    // is not left busy for ever.
    let mut turns: HashMap<tokio::task::Id, Uuid> = HashMap::new();
    let mut page_after = Uuid::nil();
    let workers = settings.workers.max(1);
    let mut next_prune = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            // In batches, so no one statement holds many row locks for long.
            for _ in 0..100 {
                match store::prune(&pools.accounts, 10_000).await {
                    Ok(10_000) => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot prune the webhook delivery log yet");
                        break;
                    }
                }
            }
        }
        let started_after = page_after;
        // With every worker busy there is nothing to hand out: wait below.
        let round = if running.len() < workers {
            let busy: Vec<Uuid> = busy.iter().copied().collect();
            Some(fetch_round(pools, &busy, page_after).await)
        } else {
            None
        };
        match round {
            None => {}
            Some(Ok((feed_at, due))) => {
                // The next round goes on after this page, or from the start;
                // or, when the workers fill up, after the last one given a
                // turn: round-robin, so busy webhooks cannot starve the rest.
                page_after = match due.last() {
                    Some(last) if due.len() as i64 == DUE_PAGE => last.id,
                    _ => Uuid::nil(),
                };
                let mut last_taken = None;
                for target in due {
                    if running.len() >= workers {
                        if let Some(last) = last_taken {
                            page_after = last;
                        }
                        break;
                    }
                    if idle.get(&target.id) == Some(&(target.epoch, feed_at)) {
                        continue;
                    }
                    busy.insert(target.id);
                    let target_id = target.id;
                    let deliverer = deliverer.clone();
                    let stop = stop.clone();
                    let handle = running.spawn(async move {
                        let (id, epoch) = (target.id, target.epoch);
                        match deliverer.turn(target, &stop).await {
                            Ok(Turn::Idle) => (id, Some((epoch, feed_at))),
                            Ok(Turn::Worked) => (id, None),
                            Err(e) => {
                                tracing::warn!(webhook_id = %id, error = %e, "a webhook turn failed; it is retried");
                                (id, None)
                            }
                        }
                    });
                    turns.insert(handle.id(), target_id);
                    last_taken = Some(target_id);
                }
            }
            Some(Err(e)) => {
                // Before the command service has migrated, the table is missing.
                let missing =
                    matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01"));
                if missing {
                    tracing::debug!(error = %e, "no webhook table yet");
                } else {
                    tracing::warn!(error = %e, "cannot read webhook subscriptions; retrying");
                }
            }
        }
        // A round that began mid-way and reached the end goes on from the
        // start at once, while workers are free.
        if !started_after.is_nil() && page_after.is_nil() && running.len() < workers {
            continue;
        }
        // A wake-up while all workers are busy is kept by `Notify` for later.
        tokio::select! {
            () = stop.cancelled() => {}
            () = wake.notified() => {}
            () = tokio::time::sleep(settings.poll) => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                settle(done, &mut turns, &mut busy, &mut idle);
            }
        }
        while let Some(done) = running.try_join_next_with_id() {
            settle(done, &mut turns, &mut busy, &mut idle);
        }
    }
    // Let attempts in flight finish and be recorded (each ends within the
    // 10 s timeout); a lost lease stops them the same way, and the checkpoint
    // keeps at-least-once either way.
    let drained = tokio::time::timeout(settings.timeout + Duration::from_secs(2), async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        running.abort_all();
    }
    listener.abort();
}

/// The change feed's position, then the subscriptions due. In this order:
/// rows a turn cannot see yet then belong to a later position, which ends
/// the idle mark.
async fn fetch_round(
    pools: &Pools,
    busy: &[Uuid],
    page_after: Uuid,
) -> Result<(i64, Vec<store::Target>), sqlx::Error> {
    let feed_at = changes_position(&pools.readmodel).await?;
    let due = store::due(&pools.accounts, busy, page_after, DUE_PAGE).await?;
    Ok((feed_at, due))
}

type TurnResult = Result<(tokio::task::Id, (Uuid, Option<IdleMark>)), tokio::task::JoinError>;

fn settle(
    done: TurnResult,
    turns: &mut HashMap<tokio::task::Id, Uuid>,
    busy: &mut HashSet<Uuid>,
    idle: &mut HashMap<Uuid, IdleMark>,
) {
    match done {
        Ok((task, (id, mark))) => {
            turns.remove(&task);
            finish(busy, idle, id, mark);
        }
        Err(e) => {
            if let Some(id) = turns.remove(&e.id()) {
                tracing::error!(webhook_id = %id, error = %e, "a webhook turn panicked; it is retried");
                finish(busy, idle, id, None);
            }
        }
    }
}

fn finish(
    busy: &mut HashSet<Uuid>,
    idle: &mut HashMap<Uuid, IdleMark>,
    id: Uuid,
    mark: Option<IdleMark>,
) {
    busy.remove(&id);
    match mark {
        Some(mark) => {
            idle.insert(id, mark);
        }
        None => {
            idle.remove(&id);
        }
    }
}
