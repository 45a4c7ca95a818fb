//! `tasklog-bench`: benchmarks and the load generator. Each subcommand prints
//! what it measured; none is a test.

mod drill;
mod load;
mod store;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Tasklog benchmarks and load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Event-log throughput: appends/s for each writer count, then subscriber catch-up.
    Store(store::Args),
    /// Drives the running services over HTTP with one scenario and reports
    /// throughput, latency, errors and (for `lag`) projection lag.
    Load(Box<load::Args>),
    /// The restore drill's two halves: drive recorded writes, then check a
    /// restored log against that record (`deploy/local/drill` runs both).
    #[command(subcommand)]
    Drill(drill::Command),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
        Command::Load(args) => load::run(*args).await,
        Command::Drill(command) => drill::run(command).await,
    }
}
