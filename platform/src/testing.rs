//! Test support: every test gets its own database (and Redis key prefix), so
//! tests run in parallel against the real servers and leave nothing behind.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

/// The server tests run against; any database on it serves as the admin one.
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Prefix of every database a test makes, so leftovers of killed runs can be found.
pub const TEST_DATABASE_PREFIX: &str = "tasklog_t_";

/// A database made for one test and dropped when the value is dropped.
pub struct TestDb {
    name: String,
    url: String,
    admin: PgConnectOptions,
    pool: PgPool,
}

impl TestDb {
    /// # Errors
    /// When the test server cannot be reached.
    pub async fn new() -> anyhow::Result<Self> {
        let admin: PgConnectOptions = admin_database_url().parse()?;
        let name = format!("{TEST_DATABASE_PREFIX}{}", Uuid::new_v4().simple());
        let mut conn = admin.connect().await?;
        // The name is made above from a UUID: safe to splice.
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect_with(options)
            .await?;
        Ok(Self {
            name,
            url,
            admin,
            pool,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a
        // thread with a runtime of its own does the clean-up. FORCE ends the
        // test's own connections, which that runtime could not close from here.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A Redis key prefix unique to one test.
pub fn redis_prefix() -> String {
    format!("tasklog_t_{}:", Uuid::new_v4().simple())
}

/// Deletes every Redis key under a test's prefix, so a test leaves nothing behind.
///
/// # Errors
/// When Redis cannot be reached.
pub async fn delete_redis_prefix(prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

pub use proxy::TcpProxy;

mod proxy {
    //! A TCP proxy in front of Postgres or Redis that a test can cut and
    //! restore, to see a service through an outage without stopping the
    //! shared server.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::AbortHandle;

    pub struct TcpProxy {
        port: u16,
        up: Arc<AtomicBool>,
        links: Arc<Mutex<Vec<AbortHandle>>>,
        accept: AbortHandle,
    }

    impl TcpProxy {
        /// Forwards a free local port to `target` (host:port), starting up or down.
        ///
        /// # Errors
        /// When no local port can be bound.
        pub async fn start(target: impl Into<String>, up: bool) -> std::io::Result<TcpProxy> {
            let target = target.into();
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let port = listener.local_addr()?.port();
            let flag = Arc::new(AtomicBool::new(up));
            let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
            let (accept_flag, accept_links) = (flag.clone(), links.clone());
            let accept = tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    // Down: the connection is closed at once, like a dead server.
                    if !accept_flag.load(Ordering::SeqCst) {
                        continue;
                    }
                    let target = target.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    accept_links
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(link.abort_handle());
                }
            })
            .abort_handle();
            Ok(TcpProxy {
                port,
                up: flag,
                links,
                accept,
            })
        }

        pub fn port(&self) -> u16 {
            self.port
        }

        /// `127.0.0.1:<port>`, to put in a service's URL instead of the server's.
        pub fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }

        /// Cuts every open connection and refuses new ones.
        pub fn down(&self) {
            self.up.store(false, Ordering::SeqCst);
            for link in self
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..)
            {
                link.abort();
            }
        }

        pub fn up(&self) {
            self.up.store(true, Ordering::SeqCst);
        }
    }

    impl Drop for TcpProxy {
        fn drop(&mut self) {
            self.down();
            self.accept.abort();
        }
    }
}
