//! `tasklog-bench`: benchmarks and the load generator. Each subcommand prints
//! what it measured; none is a test.

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Store(args) => store::run(args).await,
    }
}
