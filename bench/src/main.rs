//! `tasklog-bench`: benchmarks and the load generator. Each subcommand prints
//! what it measured; none is a test.

mod drill;
mod load;
mod store;
mod webhooks;

use clap::{Parser, Subcommand};

// The same allocator as the services, so the load generator's share of
// the machine stays what the figures in bench/README.md were measured with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Webhook deliveries/s: a backlog of changes drained to a receiver in
    /// this process (needs WEBHOOK_ALLOW_PRIVATE=true on the services).
    Webhooks(webhooks::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
        Command::Load(args) => load::run(*args).await,
        Command::Drill(command) => drill::run(command).await,
        Command::Webhooks(args) => webhooks::run(args).await,
    }
}
