//! Rate limits: the 429 and its headers, one budget across instances, the
//! local fallback with Redis down, client IPs behind trusted proxies, and
//! budgets no forged token can spend.

use redis::AsyncCommands;
use reqwest::StatusCode;
use tasklog_platform::testing::{
    delete_cluster_prefix, redis_cluster_urls, redis_prefix, redis_url,
};
use uuid::Uuid;

use tasklog_platform::testing::problem;

use crate::support::{Options, header, spawn, spawn_with, token};

#[tokio::test]
async fn past_the_limit_is_a_429_with_retry_after_and_ratelimit_headers() {
    let app = spawn(&[("RATE_LIMIT_AUTH", "3")]).await;
    for remaining in ["2", "1", "0"] {
        let response = app.login().await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
        let reset: u64 = header(&response, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "reset {reset}");
        assert!(header(&response, "retry-after").is_none());
    }
    let refused = app.login().await;
    assert_eq!(header(&refused, "ratelimit-remaining"), Some("0"));
    let retry: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(
        header(&refused, "ratelimit-reset").unwrap(),
        retry.to_string()
    );
    let body = problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "/problems/rate-limited");
}

#[tokio::test]
async fn two_instances_sharing_redis_share_each_budget() {
    let prefix = redis_prefix();
    let env = [("RATE_LIMIT_AUTH", "4"), ("RATE_LIMIT_API", "3")];
    let options = || Options {
        env: &env,
        redis_prefix: prefix.clone(),
        ..Options::default()
    };
    let a = spawn_with(options()).await;
    let b = spawn_with(options()).await;

    for app in [&a, &b, &a, &b] {
        assert_eq!(app.login().await.status(), 200);
    }
    assert_eq!(a.login().await.status(), 429);
    assert_eq!(b.login().await.status(), 429);

    let alice = token(Uuid::new_v4());
    let bob = token(Uuid::new_v4());
    for app in [&a, &b, &a] {
        let response = app.get("/v1/me").bearer_auth(&alice).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = b.get("/v1/me").bearer_auth(&alice).send().await.unwrap();
    problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    let other_user = b.get("/v1/me").bearer_auth(&bob).send().await.unwrap();
    assert_eq!(
        other_user.status(),
        200,
        "each user has a budget of their own"
    );
}

#[tokio::test]
async fn with_redis_unreachable_requests_pass_and_the_local_limiter_still_limits() {
    let app = spawn_with(Options {
        env: &[("RATE_LIMIT_AUTH", "3")],
        // Nothing listens on port 1: every Redis call fails at once.
        redis_url: "redis://127.0.0.1:1".to_owned(),
        ..Options::default()
    })
    .await;
    for remaining in ["2", "1", "0"] {
        let response = app.login().await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
    }
    problem(app.login().await, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(app.get("/v1/small").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let untrusted = spawn(&[("RATE_LIMIT_AUTH", "2")]).await;
    for client in ["203.0.113.1", "203.0.113.2"] {
        let response = untrusted
            .post("/v1/auth/login")
            .header("x-forwarded-for", client)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let spoofed = untrusted
        .post("/v1/auth/login")
        .header("x-forwarded-for", "203.0.113.3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        spoofed.status(),
        429,
        "a made-up X-Forwarded-For buys no budget"
    );

    let behind_proxy = spawn(&[
        ("RATE_LIMIT_AUTH", "2"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let send = |xff: &'static str| {
        behind_proxy
            .post("/v1/auth/login")
            .header("x-forwarded-for", xff)
            .send()
    };
    assert_eq!(
        send("198.51.100.1, 203.0.113.1").await.unwrap().status(),
        200
    );
    assert_eq!(
        send("198.51.100.2, 203.0.113.1").await.unwrap().status(),
        200
    );
    // The left entries were forged by the client: 203.0.113.1 is out of budget.
    assert_eq!(
        send("198.51.100.3, 203.0.113.1").await.unwrap().status(),
        429
    );
    assert_eq!(send("203.0.113.2").await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_forged_token_cannot_spend_a_users_budget() {
    let app = spawn(&[("RATE_LIMIT_API", "2")]).await;
    let victim = Uuid::new_v4();
    let forged = {
        let secret = jsonwebtoken::EncodingKey::from_secret(b"not the service's secret at all, no");
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"sub": victim, "iat": now, "exp": now + 600,
            "iss": tasklog_platform::auth::ISSUER, "aud": tasklog_platform::auth::AUDIENCE,
            "jti": Uuid::new_v4()});
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &secret).unwrap()
    };
    let mut statuses = vec![];
    for _ in 0..4 {
        let response = app.get("/v1/me").bearer_auth(&forged).send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 429, 429],
        "forgeries draw on the IP's budget"
    );
    let real = app
        .get("/v1/me")
        .bearer_auth(token(victim))
        .send()
        .await
        .unwrap();
    assert_eq!(real.status(), 200);
    assert_eq!(header(&real, "ratelimit-remaining"), Some("1"));
}

#[tokio::test]
async fn probes_and_scrapes_are_never_limited() {
    let app = spawn(&[("RATE_LIMIT_API", "1")]).await;
    for _ in 0..3 {
        let ready = app.get("/health/live").send().await.unwrap();
        assert_eq!(ready.status(), 200);
        assert!(header(&ready, "ratelimit-limit").is_none());
        assert_eq!(app.get("/metrics").send().await.unwrap().status(), 200);
    }
}

#[tokio::test]
async fn zero_turns_a_limit_off() {
    let app = spawn(&[("RATE_LIMIT_AUTH", "0"), ("RATE_LIMIT_API", "0")]).await;
    for _ in 0..15 {
        let response = app.login().await;
        assert_eq!(response.status(), 200);
        assert!(header(&response, "ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn leased_budgets_never_let_more_than_the_quota_through_two_instances() {
    let prefix = redis_prefix();
    // 200 per window: each Redis call reserves 2 for the instance that made it.
    let env = [("RATE_LIMIT_AUTH", "200/60s")];
    let options = || Options {
        env: &env,
        redis_prefix: prefix.clone(),
        ..Options::default()
    };
    let a = spawn_with(options()).await;
    let b = spawn_with(options()).await;
    let mut allowed = 0;
    for i in 0..250 {
        let app = if i % 3 == 0 { &b } else { &a };
        if app.login().await.status() == 200 {
            allowed += 1;
        }
    }
    // At most one reserved request per instance may go unspent.
    assert!((198..=200).contains(&allowed), "{allowed} allowed");
}

/// The same shared budgets with the instances on a Redis Cluster
/// (`REDIS_CLUSTER_URLS`): the window script's one key lives on whichever
/// master owns its slot, and nothing is written to the single server.
#[tokio::test]
async fn two_instances_on_a_redis_cluster_share_each_budget() {
    let Some(cluster) = redis_cluster_urls() else {
        return;
    };
    let prefix = redis_prefix();
    let env = [("RATE_LIMIT_AUTH", "4"), ("RATE_LIMIT_API", "3")];
    let options = || Options {
        env: &env,
        redis_prefix: prefix.clone(),
        redis_cluster: cluster.clone(),
        redis_url: "redis://127.0.0.1:1".to_owned(),
        ..Options::default()
    };
    let a = spawn_with(options()).await;
    let b = spawn_with(options()).await;
    for app in [&a, &b, &a, &b] {
        assert_eq!(app.login().await.status(), 200);
    }
    assert_eq!(a.login().await.status(), 429);
    assert_eq!(b.login().await.status(), 429);
    let alice = token(Uuid::new_v4());
    for app in [&a, &b, &a] {
        let response = app.get("/v1/me").bearer_auth(&alice).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    problem(
        b.get("/v1/me").bearer_auth(&alice).send().await.unwrap(),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;

    let client = redis::cluster::ClusterClient::new(cluster.iter().map(String::as_str)).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 2, "the budgets live on the cluster: {keys:?}");
    let single = redis::Client::open(redis_url()).unwrap();
    let mut single = single.get_multiplexed_async_connection().await.unwrap();
    let elsewhere: Vec<String> = single.keys(format!("{prefix}*")).await.unwrap();
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    delete_cluster_prefix(&cluster, &prefix).await.unwrap();
}
