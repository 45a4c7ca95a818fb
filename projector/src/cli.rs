//! The `tasklog-projector` command line: run, rebuild, verify, status,
//! copy-log. Settings come from the environment (see README); a bad one stops
//! it with a one-line reason. In the library so that the system tests can
//! build the same binary.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::progress::Reporter;
use crate::rebuild::{RebuildOptions, rebuild};
use crate::{Application, Settings, migrate, status, verify};
use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tasklog_events::sealing::{self, KeyEncryptionKey, PgKeyRing, SealedStore};
use tasklog_events::store::copy::{CopyProgress, copy_log};
use tasklog_events::store::postgres::GroupCommitSettings;
use tasklog_events::store::{open, open_existing, open_when_ready};
use tasklog_events::{EventStore, Position};
use tasklog_platform::causes;
use tasklog_platform::config::Env;
use tasklog_platform::database::{self, MIGRATE_JOB_WAIT};
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::shutdown_on_signal;
use tasklog_platform::telemetry;

#[derive(Parser)]
#[command(
    name = "tasklog-projector",
    version,
    about = "Projects the Tasklog event log into the read model and counts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tail the log and keep the read model and the counts up to date.
    Run,
    /// Apply the read model's migrations as the owner and exit (the
    /// deploy's migrate step, after `tasklog-command migrate`, before `run`
    /// starts as its runtime role).
    Migrate,
    /// Replay the whole log into a fresh generation and swap it in without downtime.
    Rebuild {
        /// Connections building indexes at once.
        #[arg(long, default_value_t = 2)]
        index_parallelism: usize,
        /// Stretches of the log replayed at once (Postgres log only; cut at
        /// transactions). Helps with idle cores; on a busy 2-core machine it did not.
        #[arg(long, default_value_t = 1)]
        replay_ranges: usize,
        /// Leave the Redis counts as they are.
        #[arg(long)]
        skip_redis: bool,
    },
    /// Fold the log in memory and report every difference with the read model and counts.
    Verify {
        /// Do not check the Redis counts.
        #[arg(long)]
        skip_redis: bool,
    },
    /// Show checkpoints, the log head, lag and lease holders.
    Status,
    /// Copy one event log into another, keeping stream versions and event ids.
    CopyLog {
        /// The source log: a postgres:// URL or an esdb:// / kurrentdb:// URL.
        #[arg(long)]
        from: String,
        /// The target log, same forms.
        #[arg(long)]
        to: String,
        /// Resume after this source position (commit/prepare), as printed by an interrupted run.
        #[arg(long)]
        after: Option<Position>,
        /// Seal the copy: every task event is written sealed under its
        /// owner's data key (made for accounts that have none yet), read
        /// from DATABASE_URL's accounts with DATA_KEY_ENCRYPTION_KEY; events
        /// of erased accounts are sealed under a key thrown away. How a log
        /// written before sealing is re-encrypted.
        #[arg(long)]
        seal: bool,
    },
}

/// Parses the arguments and runs the subcommand to its end.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tasklog-projector: {}", causes::of(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = Env::from_process();
    // One-shot commands print their answer; logs only for what goes wrong.
    let quiet = !matches!(cli.command, Command::Run) && env.get("RUST_LOG").is_none();
    let telemetry = if quiet {
        let format = env.get("LOG_FORMAT").unwrap_or("pretty");
        telemetry::init(
            &Env::from_pairs([("RUST_LOG", ONE_SHOT_LOG_FILTER), ("LOG_FORMAT", format)]),
            SERVICE_NAME,
        )?
    } else {
        telemetry::init(&env, SERVICE_NAME)?
    };
    let result = run_command(cli, &env).await;
    if let Err(e) = &result {
        tracing::error!(error = %causes::of(e), "tasklog-projector failed");
    }
    // Last, so the spans of the drain (and of a failed start) are sent too.
    telemetry.shutdown().await;
    result
}

const SERVICE_NAME: &str = "tasklog-projector";

/// The log filter of a one-shot command when `RUST_LOG` says nothing:
/// Tasklog's own warnings, and of the libraries only errors, so that
/// sqlx's "slow statement" warnings (a rebuild's COPY and index builds are
/// slow on purpose) stay out of the progress lines and the answer.
pub const ONE_SHOT_LOG_FILTER: &str = "error,tasklog_projector=warn,tasklog_events=warn,\
     tasklog_readmodel=warn,tasklog_platform=warn";

async fn run_command(cli: Cli, env: &Env) -> anyhow::Result<ExitCode> {
    if let Command::CopyLog {
        from,
        to,
        after,
        seal,
    } = cli.command
    {
        let keys = if seal {
            let settings = Settings::from_env(env)?;
            let pool = database::pool(&settings.database, SERVICE_NAME)?;
            Some(Arc::new(PgKeyRing::new(
                pool,
                KeyEncryptionKey::new(settings.data_key.0),
            )))
        } else {
            None
        };
        return copy(&from, &to, after, keys).await;
    }
    let settings = Settings::from_env(env)?;
    match cli.command {
        Command::Run => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_on_signal()).await?;
            tracing::info!("tasklog-projector stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rebuild {
            index_parallelism,
            replay_ranges,
            skip_redis,
        } => {
            let (db, store, redis) = connect(&settings, Schemas::Migrate).await?;
            let total_hint = store.approximate_len().await.ok().flatten();
            let mut progress = Reporter::stderr("rebuild");
            let report = rebuild(
                &db,
                store,
                (!skip_redis).then_some(&redis),
                RebuildOptions {
                    total_hint,
                    index_parallelism,
                    // A log that cannot be cut replays in one stretch anyway.
                    replay_ranges,
                },
                &mut progress,
            )
            .await?;
            progress.finish();
            let secs = report.total.as_secs_f64().max(1e-9);
            #[allow(clippy::cast_precision_loss)]
            let rate = report.events as f64 / secs;
            println!(
                "rebuilt generation {} (was {}) at {}: {} events, {} live tasks in {:.1} s ({:.0} events/s; replay {:.1} s, load {:.1} s, indexes {:.1} s)",
                report.generation,
                report.previous_generation,
                report
                    .position
                    .map_or_else(|| "(empty log)".to_owned(), |p| p.to_string()),
                report.events,
                report.live_tasks,
                secs,
                rate,
                report.replay.as_secs_f64(),
                report.load.as_secs_f64(),
                report.index.as_secs_f64(),
            );
            if let Err(e) = &report.old_generations {
                eprintln!(
                    "the old generations were not dropped: {e} (the new one is current; the next rebuild drops them)"
                );
            }
            match (skip_redis, &report.counts) {
                (true, _) => Ok(ExitCode::SUCCESS),
                (false, Ok(generation)) => {
                    println!("counts: generation {generation} is current");
                    Ok(ExitCode::SUCCESS)
                }
                (false, Err(e)) => {
                    eprintln!(
                        "counts were NOT rebuilt: {e} (the read model was; run `rebuild` again or let `run` catch the counts up)"
                    );
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Verify { skip_redis } => {
            let (db, store, redis) = connect(&settings, Schemas::AsTheyAre).await?;
            let mut progress = Reporter::stderr("verify");
            let report = verify::verify_with_progress(
                &db,
                store.as_ref(),
                (!skip_redis).then_some(&redis),
                &mut progress,
            )
            .await?;
            progress.finish();
            for d in report.differences.iter().take(1000) {
                println!("{d}");
            }
            if report.differences.len() > 1000 {
                println!("... and {} more", report.differences.len() - 1000);
            }
            let show =
                |p: Option<Position>| p.map_or_else(|| "(start)".to_owned(), |p| p.to_string());
            let counts = match report.counts_position {
                Some(at) => format!("{} owners at {}", report.owners_checked, show(at)),
                None => "not checked".to_owned(),
            };
            println!(
                "verify: {} differences; {} tasks at {}; counts: {counts}",
                report.differences.len(),
                report.tasks_checked,
                show(report.tasks_position),
            );
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Migrate => {
            // The log is the command service's to migrate (`tasklog-command
            // migrate`); the read model is this one's, on its own server or not.
            let db = database::pool(&settings.readmodel, SERVICE_NAME)?;
            // A one-shot job, bounded by its orchestrator: it may start while
            // the roles are still being set up and wait behind their locks
            // (podman-compose 4.3 does not always wait for the job before
            // it; a CI stack once spent over 30 s there).
            database::retry_for("migrating the read model", MIGRATE_JOB_WAIT, || {
                migrate(&db)
            })
            .await?;
            println!("the read model is migrated");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let (db, store, redis) = connect(&settings, Schemas::AsTheyAre).await?;
            let status = status::status(&db, store.as_ref(), &redis).await?;
            print!("{status}");
            Ok(ExitCode::SUCCESS)
        }
        Command::CopyLog { .. } => Ok(ExitCode::SUCCESS),
    }
}

/// Whether a command may create or upgrade the schemas it touches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Schemas {
    /// `rebuild` writes the read model, so it brings it (and the log) up to date.
    Migrate,
    /// `status` and `verify` only read: they change nothing and never wait on
    /// the migration lock, which a starting service or job may be holding.
    /// What is missing shows in their report.
    AsTheyAre,
}

async fn connect(
    settings: &Settings,
    schemas: Schemas,
) -> anyhow::Result<(PgPool, Arc<dyn EventStore>, RedisHandle)> {
    let (log_db, db) = database::log_and_readmodel_pools(
        &settings.database,
        &settings.readmodel,
        "tasklog-projector",
    )?;
    let url = settings
        .event_store_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned());
    let store = match schemas {
        Schemas::Migrate => tokio::time::timeout(
            Duration::from_secs(30),
            open_when_ready(
                url.as_deref(),
                log_db.clone(),
                GroupCommitSettings::default(),
            ),
        )
        .await
        .context("the event log did not become reachable within 30 s")??,
        Schemas::AsTheyAre => {
            let store = open_existing(url.as_deref(), log_db.clone())?;
            wait_until_reachable(store.as_ref(), READ_ONLY_WAIT).await?;
            store
        }
    };
    // The data keys live with the accounts, on the log's server.
    let store = sealing::sealed(store, log_db, KeyEncryptionKey::new(settings.data_key.0));
    if schemas == Schemas::Migrate {
        tokio::time::timeout(Duration::from_secs(30), migrate(&db))
            .await
            .context("Postgres did not become reachable within 30 s")??;
    }
    let redis = RedisHandle::new(&settings.redis)?;
    Ok((db, store, redis))
}

/// How long `status` and `verify` wait for the log's server to answer.
const READ_ONLY_WAIT: Duration = Duration::from_secs(30);

/// Waits, up to `limit`, until the log answers: a read-only command run as
/// a stack starts (or while a name lookup fails for a moment, as in podman's
/// networks) retries like a one-shot job, each failure logged, instead of
/// failing on the first refused or timed-out connection. Anything the server
/// itself answers (a missing table, say) ends the wait at once.
///
/// # Errors
/// When `limit` has passed, or the first error that is not about reaching
/// the server.
async fn wait_until_reachable(store: &dyn EventStore, limit: Duration) -> anyhow::Result<()> {
    // Ok(Err(..)): an answer, not worth waiting on.
    let answered = database::retry_for("reaching the event log", limit, || async {
        match store.head().await {
            Ok(_) => Ok(Ok(())),
            Err(e) if not_reached(&e) => Err(e),
            Err(e) => Ok(Err(e)),
        }
    })
    .await?;
    Ok(answered?)
}

/// Whether the error is about reaching the server, not one the server sent.
fn not_reached(e: &tasklog_events::StoreError) -> bool {
    match e {
        tasklog_events::StoreError::Unavailable(source) => !matches!(
            source.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Database(_))
        ),
        _ => false,
    }
}

/// Opens a log named by URL: a Postgres database (its `eventlog` schema is
/// created if missing) or an EventStoreDB/KurrentDB server.
async fn open_url(url: &str) -> anyhow::Result<Arc<dyn EventStore>> {
    let is_postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_postgres {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_lazy(url)
            .context("not a usable postgres:// URL")?;
        Ok(open(None, pool).await?)
    } else {
        // The EventStoreDB adapter needs no Postgres: a pool that never connects.
        let unused = PgPoolOptions::new().connect_lazy("postgres://unused@127.0.0.1:1/unused")?;
        Ok(open(Some(url), unused).await?)
    }
}

async fn copy(
    from: &str,
    to: &str,
    after: Option<Position>,
    keys: Option<Arc<PgKeyRing>>,
) -> anyhow::Result<ExitCode> {
    let mut source = open_url(from).await.context("opening --from")?;
    let mut target = open_url(to).await.context("opening --to")?;
    if let Some(keys) = keys {
        // Opened on the way out (what still opens), sealed on the way in.
        source = Arc::new(SealedStore::new(source, keys.clone()));
        target = Arc::new(SealedStore::new(target, keys).shredding_orphans());
    }
    let mut progress = Reporter::stderr("copy-log");
    let total = source.approximate_len().await.ok().flatten();
    progress.phase("copying");
    let done = copy_log(
        source.as_ref(),
        target.as_ref(),
        after,
        |p: &CopyProgress| {
            progress.note(format!(
                "{} already there, at {}",
                p.already_there,
                p.position
                    .map_or_else(|| "(start)".to_owned(), |p| p.to_string()),
            ));
            progress.advance(p.copied + p.already_there, total, "events");
        },
    )
    .await;
    progress.finish();
    match done {
        Ok(p) => {
            println!(
                "copy-log: {} events copied, {} were already there; source position {}",
                p.copied,
                p.already_there,
                p.position
                    .map_or_else(|| "(start)".to_owned(), |p| p.to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow::Error::new(e).context(
            "copy-log stopped; re-run with --after <the last position printed> to resume",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::{EnvFilter, Layer, Registry};

    use super::ONE_SHOT_LOG_FILTER;

    /// The targets of the events that get through.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if let Ok(mut seen) = self.0.lock() {
                seen.push(event.metadata().target().to_owned());
            }
        }
    }

    #[test]
    fn a_one_shot_command_shows_its_own_warnings_and_only_errors_of_libraries() {
        let seen = Seen::default();
        let subscriber = Registry::default()
            .with(EnvFilter::new(ONE_SHOT_LOG_FILTER))
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "sqlx::query", "slow statement: execution time exceeded alert threshold");
            tracing::info!(target: "sqlx::query", "summary");
            tracing::warn!(target: "hyper::proto", "a library warning");
            tracing::error!(target: "sqlx::pool", "a library error");
            tracing::warn!(target: "tasklog_projector::rebuild", "ours");
            tracing::info!(target: "tasklog_projector::rebuild", "our chatter");
            tracing::warn!(target: "tasklog_events::store", "the log's");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "sqlx::pool",
                "tasklog_projector::rebuild",
                "tasklog_events::store"
            ]
        );
    }
}
