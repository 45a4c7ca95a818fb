//! The read pool against the real Postgres: a connection goes back and out
//! with nothing sent, and only a cleanly finished one goes back at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::{ConnectOptions, PgConnection};
use tasklog_platform::config::DatabaseSettings;
use tasklog_platform::read_pool::{ReadPool, is_connection_error};
use tasklog_platform::testing::TestDb;

fn settings(url: &str, max_connections: u32) -> DatabaseSettings {
    DatabaseSettings {
        url: url.to_owned(),
        max_connections,
        acquire_timeout: Duration::from_millis(500),
    }
}

async fn backend_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// One read through the pool, settled as the handlers do.
async fn read_pid(pool: &ReadPool) -> Result<i32, sqlx::Error> {
    let mut conn = pool.get().await?;
    let pid = backend_pid(&mut conn).await;
    conn.settle(pid)
}

/// Waits until `pid` has left the server, so the test does not race the
/// signal `pg_terminate_backend` sends.
async fn wait_gone(db: &TestDb, pid: i32) {
    for _ in 0..200 {
        let alive: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)")
                .bind(pid)
                .fetch_one(db.pool())
                .await
                .unwrap();
        if !alive {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("backend {pid} still there");
}

#[tokio::test]
async fn a_busy_connection_is_reused_with_no_ping_between_reads() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 1), "read-pool-test").unwrap();

    let first = read_pid(&pool).await.unwrap();
    let second = read_pid(&pool).await.unwrap();
    let third = read_pid(&pool).await.unwrap();

    assert_eq!((first, second), (first, third), "one backend throughout");
    assert_eq!(pool.pings(), 0, "no round trip but the reads themselves");
    assert_eq!(pool.discarded(), 0);
}

#[tokio::test]
async fn a_connection_idle_past_the_threshold_is_pinged_on_checkout_and_only_then() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::with_ping_threshold(
        &settings(db.url(), 1),
        "read-pool-test",
        Duration::from_millis(200),
    )
    .unwrap();

    let first = read_pid(&pool).await.unwrap();
    let busy = read_pid(&pool).await.unwrap();
    assert_eq!(pool.pings(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_idle = read_pid(&pool).await.unwrap();
    assert_eq!(pool.pings(), 1, "the idle connection was checked once");
    let busy_again = read_pid(&pool).await.unwrap();
    assert_eq!(pool.pings(), 1, "not again while busy");
    assert!([busy, after_idle, busy_again].iter().all(|p| *p == first));
}

#[tokio::test]
async fn a_connection_whose_backend_was_killed_fails_once_and_is_replaced() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 1), "read-pool-test").unwrap();
    let killed = read_pid(&pool).await.unwrap();

    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(killed)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(terminated);
    wait_gone(&db, killed).await;

    let failed = read_pid(&pool)
        .await
        .expect_err("the dead connection was reused");
    assert!(is_connection_error(&failed), "{failed:?}");
    assert_eq!(pool.discarded(), 1);
    assert_eq!(pool.size(), 0, "it left the pool");

    let replacement = read_pid(&pool).await.unwrap();
    assert_ne!(replacement, killed);
}

#[tokio::test]
async fn a_read_dropped_mid_query_does_not_put_its_connection_back() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 1), "read-pool-test").unwrap();
    let before = read_pid(&pool).await.unwrap();

    let slow = tokio::time::timeout(Duration::from_millis(50), async {
        let mut conn = pool.get().await?;
        let slept = sqlx::query("SELECT pg_sleep(5)").execute(&mut *conn).await;
        conn.settle(slept).map(|_| ())
    })
    .await;
    assert!(slow.is_err(), "the read should have been cut short");

    let mut conn = tokio::time::timeout(Duration::from_secs(1), pool.get())
        .await
        .expect("a fresh connection at once, not after the sleep")
        .unwrap();
    let sum: i32 = sqlx::query_scalar("SELECT 40 + 2")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let after = backend_pid(&mut conn).await.unwrap();
    assert_eq!(sum, 42);
    assert_ne!(after, before, "the cancelled connection was reused");
    assert_eq!(pool.discarded(), 1);
}

#[tokio::test]
async fn a_statement_error_keeps_the_connection() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 1), "read-pool-test").unwrap();
    let before = read_pid(&pool).await.unwrap();

    let mut conn = pool.get().await.unwrap();
    let missing = sqlx::query("SELECT * FROM no_such_table")
        .execute(&mut *conn)
        .await;
    let e = conn.settle(missing).unwrap_err();
    assert!(!is_connection_error(&e), "{e:?}");
    drop(conn);

    assert_eq!(read_pid(&pool).await.unwrap(), before);
    assert_eq!(pool.discarded(), 0);
}

#[tokio::test]
async fn an_exhausted_pool_times_out_at_the_acquire_timeout() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 1), "read-pool-test").unwrap();
    let _held = pool.get().await.unwrap();

    let started = tokio::time::Instant::now();
    let e = pool
        .get()
        .await
        .err()
        .expect("a second connection past max");
    assert!(matches!(e, sqlx::Error::PoolTimedOut), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unreachable_server_fails_reads_until_it_is_back() {
    let db = TestDb::new().await.unwrap();
    let (proxy, through) = db.behind_proxy(false).await.unwrap();
    let url = through.to_url_lossy().to_string();
    // Built while the server cannot be reached: nothing connects yet.
    let pool = ReadPool::new(&settings(&url, 2), "read-pool-test").unwrap();

    let e = read_pid(&pool)
        .await
        .expect_err("no server behind the proxy");
    assert!(
        is_connection_error(&e) || matches!(e, sqlx::Error::PoolTimedOut),
        "{e:?}"
    );

    proxy.up();
    read_pid(&pool).await.unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_kept() {
    let db = TestDb::new().await.unwrap();
    let pool = ReadPool::new(&settings(db.url(), 2), "read-pool-test").unwrap();
    let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop((a, b));
    assert_eq!(pool.size(), 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut busy = pool.get().await.unwrap();

    assert_eq!(pool.close_idle(Duration::from_millis(100)), 1);
    assert_eq!(pool.size(), 1);
    backend_pid(&mut busy).await.unwrap();
    drop(busy);
    assert_eq!(pool.close_idle(Duration::from_millis(100)), 0, "just used");
}
