//! Test support: every test gets its own database (and Redis key prefix), so
//! tests run in parallel against the real servers and leave nothing behind;
//! and the assertions every service's HTTP tests make alike.

use std::sync::LazyLock;

use reqwest::{Response, StatusCode};
use serde_json::Value;
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

/// Seed nodes of the Redis Cluster the cluster tests use
/// (`TEST_REDIS_CLUSTER_URLS`, comma-separated; `deploy/local/test` starts
/// one on 7000-7005 and sets it). `None`: those tests say so and pass.
pub fn redis_cluster_urls() -> Option<Vec<String>> {
    let urls: Vec<String> = std::env::var("TEST_REDIS_CLUSTER_URLS")
        .ok()?
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        eprintln!("TEST_REDIS_CLUSTER_URLS is not set: skipping (deploy/local/test sets it)");
        return None;
    }
    Some(urls)
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
        Self::on(&admin_database_url()).await
    }

    /// A database made on the server of `admin_url` (e.g. the tests'
    /// replication primary).
    ///
    /// # Errors
    /// When that server cannot be reached.
    pub async fn on(admin_url: &str) -> anyhow::Result<Self> {
        let admin: PgConnectOptions = admin_url.parse()?;
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

    /// A [`TcpProxy`] in front of this database's server (relaying when `up`),
    /// and the options that connect to this database through it.
    ///
    /// # Errors
    /// When no local port can be bound.
    pub async fn behind_proxy(&self, up: bool) -> std::io::Result<(TcpProxy, PgConnectOptions)> {
        let direct = self.admin.clone().database(&self.name);
        let target = format!("{}:{}", direct.get_host(), direct.get_port());
        let proxy = TcpProxy::start(target, up).await?;
        let through = direct.host("127.0.0.1").port(proxy.port());
        Ok((proxy, through))
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

/// Deletes every key under a test's prefix on every master of a cluster.
///
/// # Errors
/// When the cluster cannot be reached.
pub async fn delete_cluster_prefix(urls: &[String], prefix: &str) -> anyhow::Result<()> {
    let client = redis::cluster::ClusterClient::new(urls.iter().map(String::as_str))?;
    let mut conn = client.get_async_connection().await?;
    // KEYS goes to every master and the answers are joined.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    for key in keys {
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Sends the tests' logs to their output when `TEST_LOG` is set (at
/// `RUST_LOG`, debug by default); silent otherwise. Once per test binary:
/// call it wherever a test starts a service.
pub fn logs_when_asked() {
    static LOGS: LazyLock<()> = LazyLock::new(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into());
            let _ = crate::telemetry::init(
                &crate::config::Env::from_pairs([("RUST_LOG", level.as_str())]),
                "test",
            );
        }
    });
    LazyLock::force(&LOGS);
}

/// The operation ids a served OpenAPI document gives more than once (every
/// link and client generator needs each to name one operation).
pub fn repeated_operation_ids(doc: &Value) -> Vec<String> {
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|item| item.values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    ids.sort_unstable();
    let mut repeated: Vec<String> = ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].to_owned())
        .collect();
    repeated.dedup();
    repeated
}

/// Asserts a problem+json answer with this status and returns its body.
///
/// # Panics
/// When the answer is anything else: it is an assertion.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(e) => panic!("problem body: {e}"),
    };
    assert_eq!(body["status"], status.as_u16());
    body
}

pub mod sse;
pub use proxy::TcpProxy;

mod proxy {
    //! A TCP proxy in front of Postgres or Redis that a test can cut and
    //! restore, to see a service through an outage without stopping the
    //! shared server. For Postgres it can also cut one connection at the
    //! worst moment for a client: right after the server said a statement
    //! completed, before it said it is ready again (`ReadyForQuery`), so the
    //! client cannot tell whether its transaction committed. Or it can go
    //! silent: every connection stays open and nothing is relayed any more,
    //! as in a partition or an idle NAT drop, where no reset ever arrives.

    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, PoisonError};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use tokio::task::AbortHandle;

    /// What the proxy does with a new connection.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Mode {
        /// Relays it.
        Up,
        /// Accepts and closes it at once, like a dead server behind a live port.
        Down,
        /// Does not listen: the connection is refused, like a stopped server.
        Refusing,
    }

    pub struct TcpProxy {
        port: u16,
        mode: watch::Sender<Mode>,
        cut_after_complete: Arc<AtomicBool>,
        /// Links numbered below this relay nothing more.
        silent: watch::Sender<u64>,
        accepted: Arc<AtomicU64>,
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
            let addr = listener.local_addr()?;
            let (mode, modes) = watch::channel(if up { Mode::Up } else { Mode::Down });
            let cut_after_complete = Arc::new(AtomicBool::new(false));
            let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
            let (silent, silent_rx) = watch::channel(0_u64);
            let accepted = Arc::new(AtomicU64::new(0));
            let accept = tokio::spawn(accept_loop(
                listener,
                addr,
                modes,
                target,
                Faults {
                    cut: cut_after_complete.clone(),
                    silent: silent_rx,
                    accepted: accepted.clone(),
                },
                links.clone(),
            ))
            .abort_handle();
            Ok(TcpProxy {
                port: addr.port(),
                mode,
                cut_after_complete,
                silent,
                accepted,
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

        /// Cuts every open connection and closes new ones as soon as they open.
        pub fn down(&self) {
            self.mode.send_replace(Mode::Down);
            for link in self
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain(..)
            {
                link.abort();
            }
        }

        /// Stops listening, so new connections are refused as by a stopped
        /// server (clients that retry a refused connect keep retrying), while
        /// the open ones run on.
        pub fn refuse_new(&self) {
            self.mode.send_replace(Mode::Refusing);
        }

        /// Relays new connections again (listening again on the same port).
        pub fn up(&self) {
            self.mode.send_replace(Mode::Up);
        }

        /// Arms a one-shot fault for a Postgres target: the next
        /// `CommandComplete` any connection receives is relayed, and that
        /// connection is then cut before the `ReadyForQuery` behind it. With
        /// an implicit transaction the server has committed by then (it
        /// commits at `Sync`, before it flushes both messages), so the client
        /// sees its statement complete and then loses the connection.
        /// Connections must not use TLS (`sslmode=disable`): the proxy reads
        /// the protocol's message frames.
        pub fn cut_after_next_command_complete(&self) {
            self.cut_after_complete.store(true, Ordering::SeqCst);
        }

        /// Whether an armed cut is still waiting for its `CommandComplete`.
        pub fn cut_pending(&self) -> bool {
            self.cut_after_complete.load(Ordering::SeqCst)
        }

        /// Stops relaying on every connection, open or new, without closing
        /// any: no FIN, no reset, the peers just hear nothing more.
        pub fn silence(&self) {
            self.silent.send_replace(u64::MAX);
        }

        /// Silences only the connections open now (an idle NAT drop):
        /// new ones relay as usual.
        pub fn silence_open(&self) {
            self.silent
                .send_replace(self.accepted.load(Ordering::SeqCst));
        }
    }

    impl Drop for TcpProxy {
        fn drop(&mut self) {
            self.down();
            self.accept.abort();
        }
    }

    /// The faults a test can arm on every link.
    struct Faults {
        cut: Arc<AtomicBool>,
        silent: watch::Receiver<u64>,
        accepted: Arc<AtomicU64>,
    }

    async fn accept_loop(
        listener: TcpListener,
        addr: SocketAddr,
        mut modes: watch::Receiver<Mode>,
        target: String,
        faults: Faults,
        links: Arc<Mutex<Vec<AbortHandle>>>,
    ) {
        let mut listener = Some(listener);
        loop {
            let mode = *modes.borrow_and_update();
            if mode == Mode::Refusing {
                listener = None;
            } else if listener.is_none() {
                listener = TcpListener::bind(addr).await.ok();
            }
            let Some(open) = &listener else {
                if modes.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                accepted = open.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    // Down: the connection is closed at once, like a dead server.
                    if *modes.borrow() != Mode::Up {
                        continue;
                    }
                    let number = faults.accepted.fetch_add(1, Ordering::SeqCst);
                    let mut silent = faults.silent.clone();
                    let relay = relay(client, target.clone(), faults.cut.clone());
                    let link = tokio::spawn(async move {
                        // Pinned out here: `select!` drops the futures of
                        // the branches it did not take, which would close both
                        // sockets instead of leaving them silent.
                        tokio::pin!(relay);
                        tokio::select! {
                            () = &mut relay => {}
                            _ = async { silent.wait_for(|below| number < *below).await.is_ok() } => {
                                // Both sockets stay open (held by the parked
                                // relay future); nothing moves.
                                std::future::pending::<()>().await;
                            }
                        }
                    });
                    links
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(link.abort_handle());
                }
                changed = modes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The first eight bytes of an `SSLRequest` or `GSSENCRequest`: the server
    /// answers either with one untyped byte.
    fn is_encryption_request(first: &[u8]) -> bool {
        const SSL: [u8; 4] = 80_877_103_u32.to_be_bytes();
        const GSS: [u8; 4] = 80_877_104_u32.to_be_bytes();
        first.len() == 8
            && first[..4] == 8_u32.to_be_bytes()
            && (first[4..] == SSL || first[4..] == GSS)
    }

    async fn relay(client: TcpStream, target: String, cut: Arc<AtomicBool>) {
        let Ok(server) = TcpStream::connect(target).await else {
            return;
        };
        let mut first = [0_u8; 8];
        let untyped_answer =
            matches!(client.peek(&mut first).await, Ok(8) if is_encryption_request(&first));
        let (mut client_read, mut client_write) = client.into_split();
        let (server_read, mut server_write) = server.into_split();
        let upstream = async {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            let _ = server_write.shutdown().await;
        };
        let downstream = downstream(server_read, &mut client_write, untyped_answer, &cut);
        tokio::pin!(downstream);
        tokio::select! {
            () = upstream => { let _ = (&mut downstream).await; }
            () = &mut downstream => {}
        }
    }

    /// Copies the server's bytes to the client, following Postgres message
    /// frames so an armed cut can stop right after a `CommandComplete`.
    async fn downstream(
        mut server: OwnedReadHalf,
        client: &mut OwnedWriteHalf,
        untyped_answer: bool,
        cut: &AtomicBool,
    ) {
        let mut frames = Frames::new(untyped_answer);
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            let n = match server.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let complete_end = frames.advance(chunk);
            if let Some(end) = complete_end {
                if cut
                    .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    let _ = client.write_all(&chunk[..end]).await;
                    let _ = client.flush().await;
                    return;
                }
            }
            if client.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = client.shutdown().await;
    }

    /// Where the server's messages begin and end: a type byte, a four-byte
    /// length that counts itself, the body. Anything that does not parse
    /// (TLS, or not Postgres at all) is passed on without looking further.
    struct Frames {
        untyped_answer: bool,
        header: Vec<u8>,
        body_left: usize,
        in_command_complete: bool,
        opaque: bool,
    }

    impl Frames {
        fn new(untyped_answer: bool) -> Self {
            Self {
                untyped_answer,
                header: Vec::with_capacity(5),
                body_left: 0,
                in_command_complete: false,
                opaque: false,
            }
        }

        /// Consumes one chunk; returns the offset just past the first
        /// `CommandComplete` that ends in it.
        fn advance(&mut self, chunk: &[u8]) -> Option<usize> {
            let mut found = None;
            let mut i = 0;
            while i < chunk.len() && !self.opaque {
                if self.untyped_answer {
                    self.untyped_answer = false;
                    // 'S': TLS follows, which cannot be read; 'N': plain.
                    self.opaque = chunk[i] != b'N';
                    i += 1;
                    continue;
                }
                if self.body_left > 0 {
                    let take = self.body_left.min(chunk.len() - i);
                    self.body_left -= take;
                    i += take;
                    if self.body_left == 0 && self.in_command_complete && found.is_none() {
                        found = Some(i);
                    }
                    continue;
                }
                self.header.push(chunk[i]);
                i += 1;
                if self.header.len() == 5 {
                    let len = u32::from_be_bytes([
                        self.header[1],
                        self.header[2],
                        self.header[3],
                        self.header[4],
                    ]);
                    let Some(body) = usize::try_from(len).ok().and_then(|l| l.checked_sub(4))
                    else {
                        self.opaque = true;
                        break;
                    };
                    self.in_command_complete = self.header[0] == b'C';
                    self.header.clear();
                    self.body_left = body;
                    if body == 0 && self.in_command_complete && found.is_none() {
                        found = Some(i);
                    }
                }
            }
            found
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn message(kind: u8, body: &[u8]) -> Vec<u8> {
            let mut m = vec![kind];
            m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap_or(0).to_be_bytes());
            m.extend_from_slice(body);
            m
        }

        #[test]
        fn the_end_of_a_command_complete_is_found_across_chunks() {
            let mut bytes = message(b'D', b"row");
            bytes.extend(message(b'C', b"SELECT 1\0"));
            let end = bytes.len();
            bytes.extend(message(b'Z', b"I"));
            let mut frames = Frames::new(true);
            assert_eq!(frames.advance(b"N"), None);
            let (a, b) = bytes.split_at(10);
            assert_eq!(frames.advance(a), None);
            assert_eq!(frames.advance(b), Some(end - 10));
        }

        #[test]
        fn tls_is_passed_on_unread() {
            let mut frames = Frames::new(true);
            assert_eq!(frames.advance(b"S"), None);
            assert_eq!(frames.advance(&message(b'C', b"x")), None);
        }

        #[test]
        fn only_encryption_requests_get_an_untyped_answer() {
            let mut ssl = 8_u32.to_be_bytes().to_vec();
            ssl.extend(80_877_103_u32.to_be_bytes());
            assert!(is_encryption_request(&ssl));
            assert!(!is_encryption_request(b"*1\r\n$4\r\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::repeated_operation_ids;

    #[test]
    fn operation_ids_given_twice_are_named_once_each() {
        let doc = json!({"paths": {
            "/a": {"get": {"operationId": "list"}, "post": {"operationId": "create"}},
            "/b": {"get": {"operationId": "list"}, "delete": {"operationId": "delete"}},
            "/c": {"post": {"operationId": "create"}, "put": {"operationId": "list"}},
        }});
        assert_eq!(repeated_operation_ids(&doc), ["create", "list"]);
        assert!(
            repeated_operation_ids(&json!({"paths": {"/a": {"get": {"operationId": "x"}}}}))
                .is_empty()
        );
    }
}
