//! Serving a router until a shutdown signal, then draining: readiness turns
//! 503 first, the listener stops accepting, in-flight requests finish
//! (bounded by a timeout).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::Health;

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutdown signal received");
        trigger.cancel();
    });
    token
}

/// How the service stops.
#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    /// Time between readiness turning 503 and the listener closing, for load
    /// balancers to notice.
    pub ready_delay: Duration,
    /// Longest wait for in-flight requests once the listener closed.
    pub drain_timeout: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            ready_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    health: Health,
    shutdown: CancellationToken,
    drain: DrainSettings,
) -> std::io::Result<()> {
    let stop_accepting = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            health.start_draining();
            tokio::time::sleep(drain.ready_delay).await;
        }
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop_accepting);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain.ready_delay + drain.drain_timeout).await;
    };
    tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("in-flight requests did not finish within the drain timeout");
            Ok(())
        }
    }
}

/// The whole of a service binary's `main`: telemetry first, then `serve`,
/// its failure logged and printed (logging may not be up yet), and the
/// telemetry flushed last so the spans of the drain or of a failed start
/// are sent too.
pub async fn run_service<F, Fut>(name: &'static str, serve: F) -> std::process::ExitCode
where
    F: FnOnce(crate::config::Env) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let env = crate::config::Env::from_process();
    let telemetry = match crate::telemetry::init(&env, name) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = serve(env).await;
    match &result {
        Ok(()) => tracing::info!("{name} stopped"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "{name} stopped"),
    }
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
