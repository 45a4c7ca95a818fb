//! `tasklog-projector`: the command line lives in `tasklog_projector::cli`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tasklog_projector::cli::main().await
}
