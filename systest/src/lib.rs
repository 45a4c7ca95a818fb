//! The system under test: the real service binaries started as processes on
//! free ports against a fresh database and Redis prefix, with Postgres and
//! Redis reached through proxies a test can cut. Tests speak HTTP only.

#![allow(clippy::missing_errors_doc)]

mod client;
mod redis_cluster;
mod service;

use std::path::{Path, PathBuf};

use anyhow::Context;
use tasklog_platform::testing::{self, TcpProxy, TestDb};
use uuid::Uuid;

pub use client::{Api, Reply, Session};
pub use redis_cluster::RedisCluster;
pub use service::Service;

/// Where the binaries under test are; integration tests fill it from
/// `CARGO_BIN_EXE_*`.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub command: PathBuf,
    pub query: PathBuf,
    pub projector: PathBuf,
}

pub struct System {
    pub db: TestDb,
    pub redis_prefix: String,
    /// Every service reaches Postgres through this proxy.
    pub postgres: TcpProxy,
    /// Every service reaches Redis through this proxy.
    pub redis: TcpProxy,
    pub command: Service,
    pub query: Service,
    pub projector: Service,
    bins: Binaries,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl System {
    /// Starts the three services and waits until each is ready.
    pub async fn start(bins: Binaries) -> anyhow::Result<System> {
        Self::start_with(bins, &[]).await
    }

    /// Like `start`, with extra environment for every service.
    pub async fn start_with(bins: Binaries, extra: &[(&str, &str)]) -> anyhow::Result<System> {
        Self::start_on(bins, TestDb::new().await?, extra).await
    }

    /// Like `start_with`, on a database the caller made (on another server).
    pub async fn start_on(
        bins: Binaries,
        db: TestDb,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<System> {
        let redis_prefix = testing::redis_prefix();
        let postgres = TcpProxy::start(host_port(db.url())?, true).await?;
        let redis = TcpProxy::start(host_port(&testing::redis_url())?, true).await?;
        let database_url = with_host_port(db.url(), &postgres.addr())?;
        let dir = std::env::temp_dir().join(format!("tasklog-systest-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

        let mut env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.as_str()),
            ("REDIS_URL", &format!("redis://{}", redis.addr())),
            ("REDIS_PREFIX", &redis_prefix),
            ("TASKLOG_ENV", "development"),
            (
                "JWT_SECRET",
                &format!("systest-{}-{}", Uuid::new_v4(), Uuid::new_v4()),
            ),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            // Generous: this machine is shared and tests run in parallel, so a
            // new connection or a projection step may take seconds. The outage
            // test asks for quick 503s itself.
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "5000"),
            ("MIN_POSITION_TIMEOUT_MS", "15000"),
            // Above that wait, so a slow projection under a full parallel
            // run ends in the wait's own answer, not the request timeout.
            ("REQUEST_TIMEOUT_MS", "30000"),
            ("RATE_LIMIT_AUTH", "0"),
            ("RATE_LIMIT_API", "0"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );

        let mut command = Service::new("command", &bins.command, &[], &env, &dir)?;
        let mut query = Service::new("query", &bins.query, &[], &env, &dir)?;
        let mut projector = Service::new("projector", &bins.projector, &["run"], &env, &dir)?;
        command.spawn()?;
        projector.spawn()?;
        query.spawn()?;
        let system = System {
            db,
            redis_prefix,
            postgres,
            redis,
            command,
            query,
            projector,
            bins,
            env,
            dir,
        };
        for service in [&system.command, &system.query, &system.projector] {
            service.wait_ready().await?;
        }
        Ok(system)
    }

    /// One more query service with this system's environment and `extra`
    /// (e.g. `READ_REPLICA_URLS`), started and ready.
    pub async fn add_query(
        &self,
        name: &'static str,
        extra: &[(&str, &str)],
    ) -> anyhow::Result<Service> {
        let mut env = self.env.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut query = Service::new(name, &self.bins.query, &[], &env, &self.dir)?;
        query.spawn()?;
        query.wait_ready().await?;
        Ok(query)
    }

    /// A client for the command and query services.
    pub fn api(&self) -> Api {
        Api::new(self.command.url(""), self.query.url(""))
    }

    /// Runs a projector subcommand (`verify`, `status`, ...) to its end,
    /// returning its exit success and its output.
    pub async fn projector_cli(&self, args: &[&str]) -> anyhow::Result<(bool, String)> {
        let output = tokio::process::Command::new(&self.bins.projector)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BIND_ADDR", "127.0.0.1:0")
            .output()
            .await
            .context("running the projector")?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Ok((output.status.success(), text))
    }

    /// One more query instance on the same database and Redis, started and
    /// ready (for tests of several instances behind one gateway).
    pub async fn another_query(&self, name: &'static str) -> anyhow::Result<Service> {
        let mut query = Service::new(name, &self.bins.query, &[], &self.env, &self.dir)?;
        query.spawn()?;
        query.wait_ready().await?;
        Ok(query)
    }

    pub fn log_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for service in [&self.command, &self.query, &self.projector] {
                eprintln!(
                    "---- last lines of {} ----\n{}",
                    service.name(),
                    service.log_tail(40)
                );
            }
        }
        let prefix = self.redis_prefix.clone();
        // Drop cannot await; the clean-up gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = rt.block_on(testing::delete_redis_prefix(&prefix));
            }
        })
        .join();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `host:port` of a postgres:// or redis:// URL.
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
    let host = parsed.host_str().context("URL without host")?;
    let port = parsed
        .port_or_known_default()
        .unwrap_or(match parsed.scheme() {
            "redis" => 6379,
            _ => 5432,
        });
    Ok(format!("{host}:{port}"))
}

/// `url` with its host and port replaced by `addr` (a proxy's, say).
pub fn with_host_port(url: &str, addr: &str) -> anyhow::Result<String> {
    let mut parsed = url::Url::parse(url).with_context(|| format!("parsing {url}"))?;
    let (host, port) = addr.split_once(':').context("address without port")?;
    parsed
        .set_host(Some(host))
        .with_context(|| format!("setting host {host}"))?;
    parsed
        .set_port(Some(port.parse()?))
        .map_err(|()| anyhow::anyhow!("cannot set a port on {url}"))?;
    Ok(parsed.into())
}
