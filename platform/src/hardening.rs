//! The production HTTP stack every service wraps its routes in: request ids,
//! tracing, metrics and `/metrics`, security headers, CORS, compression, rate
//! limits, request timeout, body limit, and panics answered as a bare 500.
//!
//! Wiring a service is one settings call and one builder chain:
//!
//! ```no_run
//! # use tasklog_platform::config::{Env, Environment, RedisSettings};
//! # use tasklog_platform::hardening::{HttpSettings, ProductionLayers};
//! # fn wire(env: &Env, routes: axum::Router, db: sqlx::PgPool,
//! #         verifier: std::sync::Arc<tasklog_platform::auth::TokenVerifier>)
//! #         -> Result<axum::Router, tasklog_platform::config::ConfigError> {
//! let http = HttpSettings::from_env(env, Environment::Development)?; // in Settings::from_env
//! let redis = tasklog_platform::redis::RedisHandle::new(&RedisSettings::from_env(env)?)?;
//! let router = ProductionLayers::new(&http)
//!     .rate_limits(Some(redis), Some(verifier)) // Redis shared by instances; the token names the user
//!     .pool("tasklog-query", db)               // pool gauges on /metrics
//!     .apply(routes);                          // routes already `with_state`, health merged
//! # Ok(router) }
//! ```
//!
//! The router must be served with connect info (as `server::serve` does) for
//! per-IP limits to see the peer. `apply` replaces `http::with_common_layers`
//! (it includes the request ids, tracing, fallbacks and body limit): call one
//! or the other, not both. Layers a service adds after `apply` (the query
//! service's `X-Projection-Position`) wrap the whole stack.
//!
//! A binary without public routes (the projector) needs only
//! `metrics::router(pools)` merged into its router, and `metrics::install()`
//! in place of a recorder of its own.
//!
//! Order, outermost first: request id (a client's kept only when it is 1 to
//! 64 of `[A-Za-z0-9._-]`), trace span (with the client address), metrics,
//! security headers (`Cache-Control: no-store` among them),
//! CORS (preflights end here), compression, rate limits, timeout, body limit,
//! panic catcher, routes. So every refusal is traced, counted, carries the
//! headers and can be read by a browser.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::TokenVerifier;
use crate::client_ip::{TrustedProxies, record_client_ip};
use crate::config::{ConfigError, Env, Environment};
use crate::http::{REQUEST_ID, drop_unfit_request_id, on_response, request_span};
use crate::json::MAX_BODY_BYTES;
use crate::metrics::MeteredPool;
use crate::problem::ApiError;
use crate::rate_limit::{RateLimitSettings, RateLimiter};
use crate::redis::RedisHandle;
use crate::throttle::{self, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, Throttle};

/// Responses smaller than this go out uncompressed: the gain would not pay
/// for the work.
pub const COMPRESS_ABOVE_BYTES: u16 = 1024;

/// Which origins browsers may call the API from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<HeaderValue>),
}

/// The HTTP-stack settings every service reads.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub environment: Environment,
    pub cors_origins: CorsOrigins,
    /// A request running longer is answered 504 and its handler dropped.
    pub request_timeout: Duration,
    pub rate_limits: RateLimitSettings,
    pub trusted_proxies: TrustedProxies,
}

impl HttpSettings {
    /// Reads `CORS_ORIGINS`, `REQUEST_TIMEOUT_MS`, `RATE_LIMIT_AUTH`,
    /// `RATE_LIMIT_API` and `TRUSTED_PROXIES`.
    ///
    /// # Errors
    /// When one is invalid, or `CORS_ORIGINS` is `*` in production.
    pub fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let request_timeout = env.millis("REQUEST_TIMEOUT_MS", Duration::from_secs(10))?;
        if request_timeout.is_zero() {
            return Err(ConfigError::new("REQUEST_TIMEOUT_MS", "must be at least 1"));
        }
        Ok(Self {
            environment,
            cors_origins: cors_origins(env, environment)?,
            request_timeout,
            rate_limits: RateLimitSettings::from_env(env)?,
            trusted_proxies: TrustedProxies::from_env(env)?,
        })
    }
}

fn cors_origins(env: &Env, environment: Environment) -> Result<CorsOrigins, ConfigError> {
    let raw = env.string("CORS_ORIGINS", "http://localhost:3000");
    let entries: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.contains(&"*") {
        if environment == Environment::Production {
            return Err(ConfigError::new(
                "CORS_ORIGINS",
                "\"*\" lets every site call the API; production needs the list of allowed origins",
            ));
        }
        return Ok(CorsOrigins::Any);
    }
    entries
        .into_iter()
        .map(|origin| {
            let (scheme, rest) = origin.split_once("://").unwrap_or(("", origin));
            let valid =
                matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/');
            valid
                .then(|| HeaderValue::from_str(origin).ok())
                .flatten()
                .ok_or_else(|| {
                    ConfigError::new(
                        "CORS_ORIGINS",
                        format!("{origin:?} is not an origin like https://app.example.com"),
                    )
                })
        })
        .collect::<Result<_, _>>()
        .map(CorsOrigins::List)
}

/// Builds the stack; see the module docs.
pub struct ProductionLayers {
    settings: HttpSettings,
    redis: Option<RedisHandle>,
    verifier: Option<Arc<TokenVerifier>>,
    pools: Vec<(&'static str, MeteredPool)>,
}

impl ProductionLayers {
    pub fn new(settings: &HttpSettings) -> Self {
        Self {
            settings: settings.clone(),
            redis: None,
            verifier: None,
            pools: Vec::new(),
        }
    }

    /// Where limits are counted (`None`: in this process only) and how a
    /// bearer token is checked to find the user (`None`: every request is
    /// limited by client IP).
    #[must_use]
    pub fn rate_limits(
        mut self,
        redis: Option<RedisHandle>,
        verifier: Option<Arc<TokenVerifier>>,
    ) -> Self {
        self.redis = redis;
        self.verifier = verifier;
        self
    }

    /// A pool whose usage `/metrics` reports, labelled `pool="<name>"`.
    #[must_use]
    pub fn pool(mut self, name: &'static str, pool: impl Into<MeteredPool>) -> Self {
        self.pools.push((name, pool.into()));
        self
    }

    /// Wraps `router` (with `/metrics` added); apply last, so every route and
    /// the fallbacks get the layers.
    ///
    /// One `ServiceBuilder` stack in one `Router::layer`, outermost first:
    /// axum boxes a route once per `Router::layer` call and clones the whole
    /// chain of boxes for every request, so eighteen calls meant eighteen
    /// allocations and frees per request.
    pub fn apply(self, router: Router) -> Router {
        let settings = self.settings;
        let throttle = settings.rate_limits.is_enabled().then(|| {
            axum::middleware::from_fn_with_state(
                Arc::new(Throttle {
                    settings: settings.rate_limits.clone(),
                    proxies: settings.trusted_proxies.clone(),
                    limiter: RateLimiter::new(self.redis),
                    verifier: self.verifier,
                }),
                throttle::limit,
            )
        });
        // Only where TLS is certain: browsers remember it for two years.
        let hsts = (settings.environment == Environment::Production).then(|| {
            SetResponseHeaderLayer::if_not_present(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=63072000; includeSubDomains"),
            )
        });
        let layers = ServiceBuilder::new()
            .layer(axum::middleware::map_request(drop_unfit_request_id))
            .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(request_span)
                    .on_request(())
                    .on_response(on_response),
            )
            .layer(axum::middleware::from_fn_with_state(
                settings.trusted_proxies.clone(),
                record_client_ip,
            ))
            .layer(axum::middleware::from_fn(
                crate::error_tracking::report_server_errors,
            ))
            .layer(axum::middleware::from_fn(crate::metrics::track))
            // Security headers. Tokens, sessions and tasks are private: no
            // browser or shared cache may keep them (`no-store`).
            .option_layer(hsts)
            .layer(fixed_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(fixed_header(header::X_FRAME_OPTIONS, "DENY"))
            .layer(fixed_header(header::REFERRER_POLICY, "no-referrer"))
            .layer(fixed_header(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ))
            .layer(fixed_header(header::CACHE_CONTROL, "no-store"))
            .layer(cors(&settings.cors_origins))
            .layer(
                CompressionLayer::new().compress_when(
                    SizeAbove::new(COMPRESS_ABOVE_BYTES)
                        .and(NotForContentType::GRPC)
                        .and(NotForContentType::IMAGES)
                        .and(NotForContentType::SSE),
                ),
            )
            .option_layer(throttle)
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::Timeout
            }))
            .timeout(settings.request_timeout)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(CatchPanicLayer::custom(panic_response));
        router
            .merge(crate::metrics::router(self.pools))
            .fallback(|| async { ApiError::NotFound })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(layers)
    }
}

/// A response header every answer carries unless its handler set it.
fn fixed_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

fn cors(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    let named = |names: &[&'static str]| -> Vec<HeaderName> {
        names.iter().map(|n| HeaderName::from_static(n)).collect()
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers(named(&[
            "authorization",
            "content-type",
            "if-match",
            "idempotency-key",
            "x-min-position",
            "x-request-id",
        ]))
        .expose_headers(
            [
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                RATELIMIT_LIMIT.clone(),
                RATELIMIT_REMAINING.clone(),
                RATELIMIT_RESET.clone(),
            ]
            .into_iter()
            .chain(named(&[
                "x-projection-position",
                "x-request-id",
                "idempotent-replayed",
            ]))
            .collect::<Vec<_>>(),
        )
        .max_age(Duration::from_secs(600))
}

/// A handler panicked: log what it said (the span carries the request id),
/// answer a 500 that says nothing.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    let mut response =
        ApiError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response();
    // The panic hook reported it (with the request's scope) when errors are tracked.
    response
        .extensions_mut()
        .insert(crate::error_tracking::PanicReported);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        pairs: &[(&str, &str)],
        environment: Environment,
    ) -> Result<HttpSettings, ConfigError> {
        HttpSettings::from_env(&Env::from_pairs(pairs.iter().copied()), environment)
    }

    #[test]
    fn defaults_allow_the_local_front_end_and_time_out_after_ten_seconds() {
        let s = settings(&[], Environment::Development).unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(
            s.cors_origins,
            CorsOrigins::List(vec![HeaderValue::from_static("http://localhost:3000")])
        );
        assert!(s.rate_limits.is_enabled());
        assert!(!s.trusted_proxies.is_trusted("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_wildcard_origin_is_refused_in_production_only() {
        let dev = settings(&[("CORS_ORIGINS", "*")], Environment::Development).unwrap();
        assert_eq!(dev.cors_origins, CorsOrigins::Any);
        let err = settings(
            &[("CORS_ORIGINS", "https://a.example, *")],
            Environment::Production,
        )
        .unwrap_err();
        assert_eq!(err.name, "CORS_ORIGINS");
        assert!(err.reason.contains("production"));
    }

    #[test]
    fn each_invalid_variable_is_named() {
        for (name, value) in [
            ("CORS_ORIGINS", "example.com"),
            ("CORS_ORIGINS", "https://a.example/path"),
            ("REQUEST_TIMEOUT_MS", "0"),
            ("REQUEST_TIMEOUT_MS", "soon"),
            ("RATE_LIMIT_AUTH", "many"),
            ("RATE_LIMIT_API", "5/0s"),
            ("TRUSTED_PROXIES", "gateway"),
        ] {
            let err = settings(&[(name, value)], Environment::Development).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
        let list = settings(
            &[("CORS_ORIGINS", "https://a.example, http://localhost:5173")],
            Environment::Production,
        )
        .unwrap();
        assert!(matches!(list.cors_origins, CorsOrigins::List(v) if v.len() == 2));
    }
}
