//! `tasklog-bench drill`: the restore drill's Rust halves. `write` drives
//! creates, patches and deletes through the command service and records every
//! acknowledged one (with a quiet moment for a point-in-time restore, and the
//! server killed under load); `check` compares a restored log with that
//! record. `deploy/local/drill` runs the clusters, the backups and both.

mod check;
mod ledger;
mod restored;
mod write;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;

pub use write::WriteArgs;

#[derive(Subcommand)]
pub enum Command {
    /// Drive recorded writes; write the ledger (JSON) when the run ends.
    Write(Box<WriteArgs>),
    /// Compare the log at DATABASE_URL with a ledger; print one `check:` line.
    Check {
        /// The ledger `write` made.
        #[arg(long)]
        ledger: PathBuf,
        /// The restored server (the database the services use).
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// A point-in-time restore to this moment: exactly the writes
        /// acknowledged before it must be there, none sent after it.
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Write(args) => write::run(*args).await,
        Command::Check {
            ledger,
            database_url,
            until,
        } => {
            let ledger = ledger::Ledger::load(&ledger)?;
            let ids = ledger.writes.iter().map(|w| w.id).collect();
            let restored = restored::read(&database_url, &ids).await?;
            let passed = match until {
                None => {
                    let report = check::after_crash(&ledger, &restored);
                    println!("{report}");
                    report.passed()
                }
                Some(moment) => {
                    let report = check::at_moment(&ledger, &restored, moment);
                    println!("{report}");
                    report.passed()
                }
            };
            if !passed {
                anyhow::bail!("the restored log does not match the acknowledged writes");
            }
            Ok(())
        }
    }
}
