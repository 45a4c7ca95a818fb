//! A service's start and stop: binding its port (first, so a taken port
//! fails at once), the errors that stop a start, serving a router until a
//! shutdown signal, then draining: readiness turns 503 first, the listener
//! stops accepting, in-flight requests finish (bounded by a timeout).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env};
use crate::health::Health;

/// Why a service did not start: the one line its operator reads.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The log cannot be opened as configured (e.g. an adapter this build
    /// lacks).
    #[error(transparent)]
    EventStore(Box<dyn std::error::Error + Send + Sync>),
    /// What else one service cannot start without, in its own words.
    #[error(transparent)]
    Service(Box<dyn std::error::Error + Send + Sync>),
}

impl StartError {
    pub fn event_store(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::EventStore(Box::new(e))
    }

    pub fn service(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Service(Box::new(e))
    }
}

/// A service's port, bound before anything else is set up.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    port: u16,
}

impl Listener {
    /// # Errors
    /// `Bind` when the address is taken or not this host's.
    pub async fn bind(addr: SocketAddr) -> Result<Self, StartError> {
        let bind = |source| StartError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind)?;
        let port = listener.local_addr().map_err(bind)?.port();
        Ok(Self { listener, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What to serve on it, once the rest of the service is built.
    pub fn serving(self, router: Router, health: Health, drain: DrainSettings) -> Server {
        Server {
            listener: self,
            router,
            health,
            drain,
        }
    }
}

/// A built service's HTTP side, ready to run.
pub struct Server {
    listener: Listener,
    router: Router,
    health: Health,
    drain: DrainSettings,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.listener.port
    }

    /// Serves until `shutdown` is cancelled, then drains (see [`serve`]).
    ///
    /// # Errors
    /// When the listener fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        serve(
            self.listener.listener,
            self.router,
            self.health,
            shutdown,
            self.drain,
        )
        .await
    }
}

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

/// How the service stops, and ends connections that stopped moving.
#[derive(Debug, Clone, Copy)]
pub struct DrainSettings {
    /// Time between readiness turning 503 and the listener closing, for load
    /// balancers to notice.
    pub ready_delay: Duration,
    /// Longest wait for in-flight requests once the listener closed.
    pub drain_timeout: Duration,
    /// A connection whose client has taken none of what was sent for this
    /// long (it stopped reading, so its window stays shut, or it is gone
    /// without a word) is dropped by the kernel (`TCP_USER_TIMEOUT`, Linux).
    /// Without it a response the client never reads, such as the end of an
    /// event stream cut off for a slow client, keeps its connection and
    /// buffers until the client reads. Zero leaves the system's default.
    pub send_stall: Duration,
}

impl Default for DrainSettings {
    fn default() -> Self {
        Self {
            ready_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(20),
            send_stall: Duration::from_secs(30),
        }
    }
}

impl DrainSettings {
    /// `SHUTDOWN_READY_DELAY_MS`, `SHUTDOWN_DRAIN_TIMEOUT_MS` and
    /// `SEND_STALL_TIMEOUT_MS`, each defaulting as [`Default`] does.
    ///
    /// # Errors
    /// When one is not a whole number of milliseconds.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Self::default();
        Ok(Self {
            ready_delay: env.millis("SHUTDOWN_READY_DELAY_MS", default.ready_delay)?,
            drain_timeout: env.millis("SHUTDOWN_DRAIN_TIMEOUT_MS", default.drain_timeout)?,
            send_stall: env.millis("SEND_STALL_TIMEOUT_MS", default.send_stall)?,
        })
    }
}

/// Asks the kernel to drop `tcp` once what was sent to it has gone untaken
/// for `stall` (`DrainSettings::send_stall`).
#[cfg(target_os = "linux")]
fn drop_when_stalled(tcp: &mut TcpStream, stall: Duration) {
    if stall.is_zero() {
        return;
    }
    if let Err(e) = socket2::SockRef::from(&*tcp).set_tcp_user_timeout(Some(stall)) {
        tracing::warn!(error = %e, "could not bound how long a connection may stall");
    }
}

#[cfg(not(target_os = "linux"))]
fn drop_when_stalled(_: &mut TcpStream, _: Duration) {}

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
    let send_stall = drain.send_stall;
    let listener = listener.tap_io(move |tcp| drop_when_stalled(tcp, send_stall));
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
        Err(e) => tracing::error!(error = %crate::causes::of(e), "{name} stopped"),
    }
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}", crate::causes::of(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_settings_default_when_unset_and_name_a_bad_variable() {
        let unset = DrainSettings::from_env(&Env::default()).unwrap();
        assert_eq!(unset.ready_delay, Duration::ZERO);
        assert_eq!(unset.drain_timeout, Duration::from_secs(20));
        let set = Env::from_pairs([
            ("SHUTDOWN_READY_DELAY_MS", "1500"),
            ("SHUTDOWN_DRAIN_TIMEOUT_MS", "250"),
        ]);
        let set = DrainSettings::from_env(&set).unwrap();
        assert_eq!(set.ready_delay, Duration::from_millis(1500));
        assert_eq!(set.drain_timeout, Duration::from_millis(250));
        for name in ["SHUTDOWN_READY_DELAY_MS", "SHUTDOWN_DRAIN_TIMEOUT_MS"] {
            let bad = DrainSettings::from_env(&Env::from_pairs([(name, "soon")]));
            assert_eq!(bad.err().map(|e| e.name), Some(name.to_owned()));
        }
    }

    #[tokio::test]
    async fn a_taken_port_fails_the_bind_naming_the_address() {
        let taken = Listener::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], taken.port()));
        let Err(e) = Listener::bind(addr).await else {
            panic!("bound a taken port");
        };
        assert!(matches!(e, StartError::Bind { .. }));
        assert!(
            e.to_string()
                .starts_with(&format!("cannot listen on {addr}: ")),
            "{e}"
        );
    }
}
