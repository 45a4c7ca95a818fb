//! `tasklog-projector`: the command line lives in `tasklog_projector::cli`.

use std::process::ExitCode;

// mimalloc rather than glibc's malloc: about +30% list pages/s, and freed
// Argon2 buffers go back to the system (the platform crate's docs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tasklog_projector::cli::main().await
}
