//! Starts the query service: settings from the environment, then serve
//! until SIGTERM or Ctrl-C. A bad setting stops it with a one-line reason.

use std::process::ExitCode;

use tasklog_platform::config::Env;
use tasklog_platform::server::shutdown_on_signal;
use tasklog_platform::telemetry;
use tasklog_query::{Application, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up (or may be shut down): stderr.
            eprintln!("tasklog-query: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let env = Env::from_process();
    let telemetry = telemetry::init(&env, "tasklog-query")?;
    let result = serve(&env).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "tasklog-query stopped");
    }
    // Last, so the spans of the drain (and of a failed start) are sent too.
    telemetry.shutdown().await;
    result
}

async fn serve(env: &Env) -> anyhow::Result<()> {
    let settings = Settings::from_env(env)?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_on_signal()).await?;
    tracing::info!("tasklog-query stopped");
    Ok(())
}
