//! Group commit: appends waiting at the same moment go to Postgres as one
//! batch in one transaction (one fsync), each with its own expected-version
//! check and its own result; a NOTIFY follows the commit, one in flight for
//! all the workers (migration 0003 says why it is not inside the
//! transaction).
//!
//! A few worker tasks take turns: each takes every append queued so far and
//! commits them together, so under load batches grow by themselves and with
//! one writer nothing waits.
//!
//! When a batch's statement fails, `settle` finds each append's true outcome
//! for the callers still waiting, within `settle_within`: the event ids make
//! re-running an append harmless (a stored one comes back as a duplicate).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

use super::append::{append_exactly, append_first, is_unique_violation};
use super::{AppendRow, NOTIFY_CHANNEL, outcome_of};
use crate::store::{AppendOutcome, ExpectedVersion, NewEvent, StoreError};

/// An append re-runs this often (a lost version race, a broken connection)
/// before its caller is told the log is unavailable.
const RERUNS: usize = 5;

/// Most appends one batch can carry: `append_seq`, an append's place in its
/// transaction, is a smallint numbered from 0 (migration 0004 checks the same).
pub const MAX_BATCH: usize = 32_768;

pub(super) struct Pending {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// Tuning of the group commit.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitSettings {
    /// Transactions in flight at once; each holds one connection. One by
    /// default: while it commits, the next batch gathers everything that
    /// arrives, so under load batches grow and commits, NOTIFYs and round
    /// trips per append shrink (bench/README.md, "Ninth session": about a fifth
    /// less CPU per create than four). More help when a commit's round trip
    /// is long against the time spent on a batch (a distant Postgres).
    pub workers: usize,
    /// Most appends in one transaction (at most `MAX_BATCH`).
    pub max_batch: usize,
    /// How long a batch whose statement failed may spend finding out what
    /// became of its appends (re-running them) before the callers still
    /// waiting are told the log is unavailable. Keep it below the callers'
    /// own timeout.
    pub settle_within: Duration,
    /// Events this store must have appended (so the log holds at least as
    /// many) before a batch of changes keeps its plan (`append.rs` says why).
    pub keep_plan_after: u64,
}

impl Default for GroupCommitSettings {
    fn default() -> Self {
        Self {
            workers: 1,
            max_batch: 128,
            settle_within: Duration::from_secs(5),
            // About 500 pages of events: fifty times the size below which
            // the planner prefers scanning the table to the index.
            keep_plan_after: 10_000,
        }
    }
}

impl GroupCommitSettings {
    /// `max_batch` within what one transaction can number.
    fn batch_limit(&self) -> usize {
        self.max_batch.clamp(1, MAX_BATCH)
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
        let notifier = Arc::new(Notifier::new(pool.clone()));
        let appended = Arc::new(Appended::new(settings.keep_plan_after));
        for _ in 0..settings.workers.max(1) {
            tokio::spawn(worker(
                pool.clone(),
                rx.clone(),
                notifier.clone(),
                appended.clone(),
                settings,
            ));
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

/// A lower bound of the log's size: the events this store's batches
/// appended. Rows of the log are never removed, so once it passes the
/// threshold it stays past it.
struct Appended {
    events: AtomicU64,
    keep_plan_after: u64,
}

impl Appended {
    fn new(keep_plan_after: u64) -> Self {
        Self {
            events: AtomicU64::new(0),
            keep_plan_after,
        }
    }

    fn keeps_plan(&self) -> bool {
        self.events.load(Ordering::Relaxed) >= self.keep_plan_after
    }

    /// Counts the events of the appends `rows` report as appended.
    fn count(&self, batch: &[Pending], rows: &[AppendRow]) {
        let events: usize = batch
            .iter()
            .zip(rows)
            .filter(|(_, row)| row.outcome == "appended")
            .map(|(pending, _)| pending.events.len())
            .sum();
        self.events
            .fetch_add(u64::try_from(events).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

async fn worker(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    notifier: Arc<Notifier>,
    appended: Arc<Appended>,
    settings: GroupCommitSettings,
) {
    let max_batch = settings.batch_limit();
    loop {
        let mut batch = {
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
        // A caller that stopped waiting (its request timed out or its client
        // left) has been answered already; writing for it now would store
        // what it was told may not be stored.
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let written = match pool.acquire().await {
            Ok(mut conn) => append_first(&mut conn, &batch, appended.keeps_plan()).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(rows) => {
                appended.count(&batch, &rows);
                answer(&notifier, batch, rows, false).await;
            }
            Err(e) => {
                let deadline = Instant::now() + settings.settle_within;
                settle(&pool, &notifier, batch, e, deadline).await;
            }
        }
    }
}

/// Wakes subscribers after commits, with one NOTIFY in flight for all the
/// workers: each NOTIFY is a committed transaction of its own (migration
/// 0003 says why), and under load the workers commit faster than one per
/// NOTIFY. A commit that asks while one is in flight is covered by the next,
/// which begins after it asked, so after its commit. A failure only delays
/// subscribers until their next poll, so it is logged and not reported to
/// the appenders.
struct Notifier {
    pool: PgPool,
    /// Requests so far, each made after its commit.
    asked: AtomicU64,
    /// The requests a NOTIFY begun after them has covered; held while one is
    /// in flight.
    covered: Mutex<u64>,
}

impl Notifier {
    fn new(pool: PgPool) -> Self {
        Self {
            pool,
            asked: AtomicU64::new(0),
            covered: Mutex::new(0),
        }
    }

    /// Returns once a NOTIFY begun after this call has completed.
    async fn after_commit(&self) {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut covered = self.covered.lock().await;
        if *covered >= ticket {
            return;
        }
        let upto = self.asked.load(Ordering::SeqCst);
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&self.pool)
            .await
        {
            tracing::debug!(error = %e, "could not notify subscribers; they will poll");
        }
        *covered = upto;
    }
}

/// Replies to each append of a batch with its row of the append function.
/// `settled`: the batch ran again after a failure, so an earlier run may have
/// committed without waking anyone.
async fn answer(notifier: &Notifier, batch: Vec<Pending>, rows: Vec<AppendRow>, settled: bool) {
    if rows.len() != batch.len() {
        let message = format!("batch of {} got {} results", batch.len(), rows.len());
        for pending in batch {
            let _ = pending
                .reply
                .send(Err(StoreError::Corrupt(message.clone())));
        }
        return;
    }
    // Before the replies, so a client that reads its write at once finds
    // subscribers already woken.
    if rows
        .iter()
        .any(|r| r.outcome == "appended" || (settled && r.outcome == "duplicate"))
    {
        notifier.after_commit().await;
    }
    for (pending, row) in batch.into_iter().zip(rows) {
        let _ = pending.reply.send(outcome_of(row, pending.expected));
    }
}

/// What a failed statement says about the appends it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Nothing was committed, and one append may be the cause (a version or
    /// event-id race with another transaction, a value the server refused):
    /// run each on its own so only that one fails.
    PerAppend,
    /// The commit may have happened or not (the connection broke, the
    /// backend was terminated around the commit), or the transaction was
    /// rolled back as a whole for a passing reason (deadlock, serialization):
    /// run the batch again with the same event ids.
    Unknown,
    /// Nothing was committed and running again now fails the same way (no
    /// connection to be had, the server is read-only or out of resources):
    /// tell every caller the log is unavailable.
    Refused,
}

fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .map_or(Failure::PerAppend, |c| classify_sqlstate(&c)),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Configuration(_) => {
            Failure::Refused
        }
        // I/O, TLS, protocol and decoding errors: the statement may have run.
        _ => Failure::Unknown,
    }
}

fn classify_sqlstate(code: &str) -> Failure {
    match code {
        // Terminated or crashed backends can report it after their commit.
        "57P01" | "57P02" => Failure::Unknown,
        _ => match code.get(..2) {
            // Connection exceptions; transaction rollbacks (deadlock,
            // serialization, statement completion unknown).
            Some("08" | "40") => Failure::Unknown,
            // Invalid transaction state (read-only), insufficient resources,
            // operator intervention (cancel, cannot connect now), system and
            // internal errors.
            Some("25" | "53" | "57" | "58" | "XX") => Failure::Refused,
            _ => Failure::PerAppend,
        },
    }
}

fn unavailable(e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string().into())
}

/// A connection by `deadline` at the latest.
async fn acquire(
    pool: &PgPool,
    deadline: Instant,
) -> Result<PoolConnection<sqlx::Postgres>, sqlx::Error> {
    tokio::time::timeout_at(deadline, pool.acquire())
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Finds out, within `deadline`, what became of a batch whose statement
/// failed, and answers each caller still waiting with that: its outcome, or
/// "unavailable" when the log could not tell in time.
async fn settle(
    pool: &PgPool,
    notifier: &Notifier,
    mut batch: Vec<Pending>,
    mut error: sqlx::Error,
    deadline: Instant,
) {
    let mut reruns = 0;
    loop {
        batch.retain(|p| !p.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        match classify(&error) {
            Failure::PerAppend => {
                tracing::debug!(error = %error, appends = batch.len(), "batch aborted; appending one by one");
                return one_by_one(pool, notifier, batch, deadline).await;
            }
            Failure::Unknown if reruns < RERUNS && Instant::now() < deadline => {
                tracing::debug!(error = %error, appends = batch.len(), "batch outcome unknown; running it again");
                reruns += 1;
                let rerun = match acquire(pool, deadline).await {
                    Ok(mut conn) => append_exactly(&mut conn, &batch).await,
                    Err(e) => Err(e),
                };
                match rerun {
                    Ok(rows) => return answer(notifier, batch, rows, true).await,
                    Err(e) => error = e,
                }
            }
            Failure::Unknown | Failure::Refused => {
                tracing::debug!(error = %error, appends = batch.len(), "batch failed");
                for pending in batch {
                    let _ = pending.reply.send(Err(unavailable(&error)));
                }
                return;
            }
        }
    }
}

/// Each append in a transaction of its own, for the callers still waiting,
/// until `deadline`; the rest are told the log is unavailable.
async fn one_by_one(pool: &PgPool, notifier: &Notifier, batch: Vec<Pending>, deadline: Instant) {
    for pending in batch {
        if pending.reply.is_closed() {
            continue;
        }
        let result = append_alone(pool, notifier, &pending, deadline).await;
        let _ = pending.reply.send(result);
    }
}

async fn append_alone(
    pool: &PgPool,
    notifier: &Notifier,
    pending: &Pending,
    deadline: Instant,
) -> Result<AppendOutcome, StoreError> {
    let mut reruns = 0;
    loop {
        let result = match acquire(pool, deadline).await {
            Ok(mut conn) => append_exactly(&mut conn, std::slice::from_ref(pending)).await,
            Err(e) => Err(e),
        };
        let error = match result {
            Ok(mut rows) => {
                let row = rows
                    .pop()
                    .ok_or_else(|| StoreError::Corrupt("append returned no row".into()))?;
                if row.outcome == "appended" || (reruns > 0 && row.outcome == "duplicate") {
                    notifier.after_commit().await;
                }
                return outcome_of(row, pending.expected);
            }
            Err(e) => e,
        };
        // Another appender took the same version or id first (now that it
        // has committed, running again gives the exact outcome), or the
        // connection broke (running again finds the events if they were
        // stored).
        let again = is_unique_violation(&error) || classify(&error) == Failure::Unknown;
        if !again || reruns >= RERUNS || Instant::now() >= deadline || pending.reply.is_closed() {
            return Err(unavailable(&error));
        }
        reruns += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_never_outgrows_the_append_numbering() {
        let settings = |max_batch| GroupCommitSettings {
            max_batch,
            ..GroupCommitSettings::default()
        };
        assert_eq!(settings(100_000).batch_limit(), 32_768);
        assert_eq!(settings(0).batch_limit(), 1);
        assert_eq!(settings(128).batch_limit(), 128);
        // Numbered from 0, the last append of a full batch is a smallint's top.
        assert_eq!(i16::try_from(MAX_BATCH - 1), Ok(i16::MAX));
    }

    #[test]
    fn errors_are_sorted_by_what_they_say_about_the_batch() {
        for (code, want) in [
            ("23505", Failure::PerAppend),
            ("22P02", Failure::PerAppend),
            ("57P01", Failure::Unknown),
            ("08006", Failure::Unknown),
            ("40P01", Failure::Unknown),
            ("40001", Failure::Unknown),
            ("25006", Failure::Refused),
            ("53300", Failure::Refused),
            ("57014", Failure::Refused),
            ("XX000", Failure::Refused),
        ] {
            assert_eq!(classify_sqlstate(code), want, "{code}");
        }
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), Failure::Refused);
        let io = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(classify(&sqlx::Error::Io(io)), Failure::Unknown);
    }
}
