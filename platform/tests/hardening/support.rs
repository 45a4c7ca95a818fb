//! A small service with the production layers, served for real (connect
//! info, a TCP port) so client IPs, compression and shutdown behave as in
//! a deployment.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Path};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tasklog_platform::auth::{AuthUser, JwtKeys, KeyUse, TokenVerifier};
use tasklog_platform::config::{Env, Environment, RedisSettings};
use tasklog_platform::hardening::{HttpSettings, ProductionLayers};
use tasklog_platform::health::Health;
use tasklog_platform::json::ApiJson;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::server::{DrainSettings, serve};
use tasklog_platform::testing::{redis_prefix, redis_url};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Clone)]
struct State {
    verifier: Arc<TokenVerifier>,
}

impl FromRef<State> for Arc<TokenVerifier> {
    fn from_ref(state: &State) -> Self {
        state.verifier.clone()
    }
}

pub fn keys() -> JwtKeys {
    JwtKeys::from_env(
        &Env::default(),
        Environment::Development,
        KeyUse::SignAndVerify,
    )
    .unwrap()
}

pub fn token(user: Uuid) -> String {
    keys().signer.unwrap().issue(user).unwrap().token
}

fn routes(verifier: Arc<TokenVerifier>) -> Router {
    Router::new()
        .route(
            "/v1/auth/login",
            post(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route(
            "/v1/me",
            get(|user: AuthUser| async move { axum::Json(json!({"id": user.id})) }),
        )
        .route(
            "/v1/small",
            get(|| async { axum::Json(json!({"small": true})) }),
        )
        .route(
            "/v1/big",
            get(|| async { axum::Json(json!({"text": "tasklog ".repeat(512)})) }),
        )
        .route(
            "/v1/items/{id}",
            get(|Path(id): Path<String>| async move { axum::Json(json!({"id": id})) }),
        )
        .route(
            "/v1/echo",
            post(|ApiJson(body): ApiJson<Value>| async move { axum::Json(body) }),
        )
        .route(
            "/v1/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "done"
            }),
        )
        .route(
            "/v1/panic",
            get(|| async {
                if true {
                    panic!("secret detail of the failure");
                }
                "unreachable"
            }),
        )
        .with_state(State { verifier })
}

pub struct Server {
    pub address: String,
    pub client: reqwest::Client,
    pub health: Health,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<std::io::Result<()>>,
}

/// What a test varies: variables, Redis (prefix and reachability), environment.
pub struct Options<'a> {
    pub env: &'a [(&'a str, &'a str)],
    pub environment: Environment,
    pub redis_prefix: String,
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster; empty: `redis_url`.
    pub redis_cluster: Vec<String>,
    pub drain: DrainSettings,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            env: &[],
            environment: Environment::Development,
            redis_prefix: redis_prefix(),
            redis_url: redis_url(),
            redis_cluster: Vec::new(),
            drain: DrainSettings::default(),
        }
    }
}

pub async fn spawn(env: &[(&str, &str)]) -> Server {
    spawn_with(Options {
        env,
        ..Options::default()
    })
    .await
}

pub async fn spawn_with(options: Options<'_>) -> Server {
    let http = HttpSettings::from_env(
        &Env::from_pairs(options.env.iter().copied()),
        options.environment,
    )
    .expect("test settings");
    let redis = RedisHandle::new(&RedisSettings {
        url: options.redis_url,
        cluster: options.redis_cluster,
        prefix: options.redis_prefix,
        timeout: Duration::from_millis(250),
    })
    .unwrap();
    let verifier = keys().verifier;
    let health = Health::new();
    let db = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy(&tasklog_platform::testing::admin_database_url())
        .unwrap();
    let router = ProductionLayers::new(&http)
        .rate_limits(Some(redis), Some(verifier.clone()))
        .pool("hardening-test", db)
        .apply(routes(verifier).merge(health.router()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(serve(
        listener,
        router,
        health.clone(),
        shutdown.clone(),
        options.drain,
    ));
    Server {
        address,
        client: reqwest::Client::new(),
        health,
        shutdown,
        handle,
    }
}

impl Server {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.address))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.address))
    }

    pub async fn login(&self) -> reqwest::Response {
        self.post("/v1/auth/login").send().await.unwrap()
    }
}

pub fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}
