//! What the production layers cost, at their worst: one trivial handler
//! served twice, on `PORT_BARE` with only the common layers and on
//! `PORT_FULL` with `ProductionLayers` (rate limits counted in Redis, a quota
//! too large to bite). Drive both with a load tool, e.g.
//! `wrk -t2 -c32 -d10s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:9101/v1/ping`;
//! the token is printed at start.

use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use tasklog_platform::auth::{AuthUser, JwtKeys, KeyUse, TokenVerifier};
use tasklog_platform::config::{Env, Environment, RedisSettings};
use tasklog_platform::hardening::{HttpSettings, ProductionLayers};
use tasklog_platform::health::Health;
use tasklog_platform::http::with_common_layers;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{DrainSettings, serve, shutdown_on_signal};
use tokio::net::TcpListener;
use uuid::Uuid;

#[derive(Clone)]
struct State(std::sync::Arc<TokenVerifier>);

impl FromRef<State> for std::sync::Arc<TokenVerifier> {
    fn from_ref(state: &State) -> Self {
        state.0.clone()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = Env::from_process();
    let keys = JwtKeys::from_env(&env, Environment::Development, KeyUse::SignAndVerify)?;
    let signer = keys
        .signer
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no signer"))?;
    println!("TOKEN={}", signer.issue(Uuid::new_v4())?.token);
    let routes = || {
        Router::new()
            .route(
                "/v1/ping",
                get(|user: AuthUser| async move { user.id.to_string() }),
            )
            .with_state(State(keys.verifier.clone()))
    };
    // RATE_LIMIT_API=0 measures the other layers alone.
    let limit = env.string("RATE_LIMIT_API", "1000000000");
    let http = HttpSettings::from_env(
        &Env::from_pairs([("RATE_LIMIT_API", limit.as_str())]),
        Environment::Development,
    )?;
    let mut redis = RedisSettings::from_env(&env)?;
    redis.prefix = format!("overhead_{}:", Uuid::new_v4().simple());
    let full = ProductionLayers::new(&http)
        .rate_limits(Some(RedisHandle::new(&redis)?), Some(keys.verifier.clone()))
        .apply(routes());
    let bare = with_common_layers(routes());
    let shutdown = shutdown_on_signal();
    let drain = DrainSettings {
        ready_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(1),
        ..DrainSettings::default()
    };
    let bare_port = env.string("PORT_BARE", "9100");
    let full_port = env.string("PORT_FULL", "9101");
    let bare_listener = TcpListener::bind(format!("127.0.0.1:{bare_port}")).await?;
    let full_listener = TcpListener::bind(format!("127.0.0.1:{full_port}")).await?;
    println!("bare on {bare_port}, full on {full_port}; Ctrl-C stops");
    let (a, b) = tokio::join!(
        serve(bare_listener, bare, Health::new(), shutdown.clone(), drain),
        serve(full_listener, full, Health::new(), shutdown, drain),
    );
    a?;
    b?;
    Ok(())
}
