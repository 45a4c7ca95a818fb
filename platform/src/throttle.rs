//! The rate-limit middleware: which budget a request draws on, and the
//! `RateLimit-*` headers (on every limited answer) and 429 problem.
//!
//! `/v1/auth/*` draws on the client IP's budget. Everything else draws on the
//! user's, but only once the bearer token's signature checks out: a request
//! with a missing or forged token draws on its IP's budget instead, so nobody
//! can spend another user's allowance. The verified user is handed on to the
//! `AuthUser` extractor so the token is not verified twice.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

use crate::auth::{AuthUser, TokenVerifier, bearer_token_of};
use crate::client_ip::TrustedProxies;
use crate::problem::ApiError;
use crate::rate_limit::{Decision, Quota, RateLimitSettings, RateLimiter};

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// What the middleware needs, shared by every request.
pub struct Throttle {
    pub settings: RateLimitSettings,
    pub proxies: TrustedProxies,
    pub limiter: RateLimiter,
    pub verifier: Option<Arc<TokenVerifier>>,
}

/// Paths no budget applies to: probes and scrapes come from our own
/// infrastructure and must keep working while a client is throttled.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

fn is_auth(path: &str) -> bool {
    path == "/v1/auth" || path.starts_with("/v1/auth/")
}

/// Clients on IPv6 usually hold a whole /64: count it as one address.
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

pub async fn limit(
    State(throttle): State<Arc<Throttle>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if is_exempt(path) {
        return next.run(request).await;
    }
    let (key, quota): (String, Quota) = if is_auth(path) {
        let Some(quota) = throttle.settings.auth else {
            return next.run(request).await;
        };
        let ip = throttle.proxies.client_ip_of(&request);
        (format!("auth:ip:{}", ip_key(ip)), quota)
    } else {
        let Some(quota) = throttle.settings.api else {
            return next.run(request).await;
        };
        let user = throttle.verifier.as_ref().and_then(|verifier| {
            let token = bearer_token_of(request.headers())?;
            verifier.verify(token).ok().map(|claims| claims.sub)
        });
        match user {
            Some(id) => {
                crate::auth::identify(id);
                request.extensions_mut().insert(AuthUser { id });
                (format!("api:user:{id}"), quota)
            }
            None => {
                let ip = throttle.proxies.client_ip_of(&request);
                (format!("api:ip:{}", ip_key(ip)), quota)
            }
        }
    };
    let decision = throttle.limiter.hit(&key, quota).await;
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        tracing::info!(key, "rate limited");
        ApiError::TooManyRequests {
            retry_after_secs: decision.reset_secs(),
        }
        .into_response()
    };
    set_headers(&mut response, &decision);
    response
}

fn set_headers(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    headers.insert(&RATELIMIT_LIMIT, HeaderValue::from(decision.limit));
    headers.insert(&RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(&RATELIMIT_RESET, HeaderValue::from(decision.reset_secs()));
    if !decision.allowed {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(decision.reset_secs()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        assert_eq!(ip_key("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn probes_and_scrapes_are_exempt_and_auth_is_its_own_budget() {
        assert!(is_exempt("/health/ready"));
        assert!(is_exempt("/metrics"));
        assert!(!is_exempt("/v1/tasks"));
        assert!(is_auth("/v1/auth/login"));
        assert!(!is_auth("/v1/authors"));
    }
}
