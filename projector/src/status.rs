//! `status`: each projection's checkpoint, the head of the log, the lag and
//! the lease holder.

use std::fmt::Write as _;

use sqlx::PgPool;
use tasklog_events::{EventStore, Position};
use tasklog_platform::redis::RedisHandle;

use tasklog_readmodel::{CHANGES, COUNTS, TASKS};

use crate::changes::ChangesProjection;
use crate::counts::CountsProjection;
use crate::error::ProjectorError;
use crate::lag::{Lag, lag};
use crate::lease::{Holder, holder, key_of};
use crate::projection::Projection;
use crate::tasks::TasksProjection;

#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub name: &'static str,
    pub generation: String,
    pub checkpoint: Option<Position>,
    pub lag: Option<Lag>,
    pub holder: Option<Holder>,
    /// Why the projection's store could not be read, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub head: Option<Position>,
    pub projections: Vec<ProjectionStatus>,
}

/// Gathers the status; a store that cannot be read shows as an error line
/// rather than failing the whole report.
///
/// # Errors
/// When the log's head cannot be read.
pub async fn status(
    db: &PgPool,
    store: &dyn EventStore,
    redis: &RedisHandle,
) -> Result<Status, ProjectorError> {
    let head = store.head().await?;
    let tasks = TasksProjection::new(db.clone());
    let mut projections = Vec::new();
    let tasks_status = match tasks.checkpoint().await {
        Ok(cp) => (cp.generation.to_string(), cp.position, None),
        Err(e) => (String::new(), None, Some(e.to_string())),
    };
    projections.push(one(db, store, TASKS, tasks_status).await);
    let counts = CountsProjection::new(redis.clone());
    let counts_status = match counts.checkpoint().await {
        Ok(cp) => (cp.generation(), cp.position(), None),
        Err(e) => (String::new(), None, Some(e.to_string())),
    };
    projections.push(one(db, store, COUNTS, counts_status).await);
    let changes_status = match ChangesProjection::new(db.clone()).checkpoint().await {
        Ok(position) => (String::new(), position, None),
        Err(e) => (String::new(), None, Some(e.to_string())),
    };
    projections.push(one(db, store, CHANGES, changes_status).await);
    Ok(Status { head, projections })
}

async fn one(
    db: &PgPool,
    store: &dyn EventStore,
    name: &'static str,
    (generation, checkpoint, error): (String, Option<Position>, Option<String>),
) -> ProjectionStatus {
    let lag = if error.is_none() {
        lag(store, checkpoint).await.ok()
    } else {
        None
    };
    ProjectionStatus {
        name,
        generation,
        checkpoint,
        lag,
        holder: holder(db, key_of(name)).await.ok().flatten(),
        error,
    }
}

fn show(p: Option<Position>) -> String {
    p.map_or_else(|| "(none)".to_owned(), |p| p.to_string())
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "log head: {}", show(self.head))?;
        for p in &self.projections {
            let mut line = format!("{:<7}", p.name);
            if let Some(e) = &p.error {
                let _ = write!(line, " unavailable: {e}");
            } else {
                let _ = write!(
                    line,
                    " generation {}  checkpoint {}",
                    p.generation,
                    show(p.checkpoint)
                );
                match p.lag {
                    Some(lag) => {
                        let plus = if lag.capped { "+" } else { "" };
                        let _ = write!(
                            line,
                            "  lag {}{plus} events, {:.1} s",
                            lag.events,
                            lag.millis as f64 / 1000.0
                        );
                    }
                    None => line.push_str("  lag unknown"),
                }
            }
            match &p.holder {
                Some(h) => {
                    let _ = write!(
                        line,
                        "  lease: {} (backend pid {}, from {}, since {})",
                        h.application_name,
                        h.backend_pid,
                        h.client_addr.as_deref().unwrap_or("local socket"),
                        h.since.format("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
                None => line.push_str("  lease: free (no projector running)"),
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}
