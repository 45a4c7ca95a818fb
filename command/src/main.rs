//! Starts the command service: settings from the environment, then serve
//! until SIGTERM or Ctrl-C. A bad setting stops it with a one-line reason.
//! `tasklog-command migrate` applies the schema (as the owner) and exits.

use std::process::ExitCode;

use tasklog_command::{Application, Settings};
use tasklog_platform::server::{run_service, shutdown_on_signal};

// mimalloc rather than glibc's malloc: about +30% list pages/s, and freed
// Argon2 buffers go back to the system (the platform crate's docs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("migrate") => {
            return run_service("tasklog-command", |env| async move {
                tasklog_command::migrations::migrate_from_env(&env).await
            })
            .await;
        }
        Some(other) => {
            eprintln!("tasklog-command: unknown command {other:?}; the only one is `migrate`");
            return ExitCode::FAILURE;
        }
    }
    run_service("tasklog-command", |env| async move {
        let app = Application::build(Settings::from_env(&env)?).await?;
        app.run_until_stopped(shutdown_on_signal()).await?;
        Ok(())
    })
    .await
}
