//! Webhook delivery throughput: a backlog of changes, sent to a receiver in
//! this process that answers 200 at once, timed from the replay that
//! releases it until the last delivery has arrived.
//!
//! Needs the running services (`WEBHOOK_ALLOW_PRIVATE=true` on the command
//! service and the projector, rate limits off). For each of `--webhooks`
//! users: a webhook whose receiver answers 503 while the backlog is written
//! (so nothing is delivered yet), then 200 and a replay from the webhook's
//! start, which makes the whole backlog due at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use axum::http::StatusCode;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct Args {
    /// The gateway (or the command service: every call here is its).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Changes in the backlog, spread over the webhooks' users.
    #[arg(long, default_value_t = 100_000)]
    changes: usize,
    /// Webhooks (one user each): deliveries to different webhooks run in
    /// parallel up to `WEBHOOK_WORKERS`, one webhook's in order.
    #[arg(long, default_value_t = 1)]
    webhooks: usize,
    /// The query service (or the gateway): the backlog is released once the
    /// change feed has caught up with it. Default: `--base-url`.
    #[arg(long)]
    query_url: Option<String>,
    /// Batches of 100 creations in flight while writing the backlog.
    #[arg(long, default_value_t = 8)]
    writers: usize,
}

struct Receiver {
    delivered: AtomicU64,
    open: AtomicBool,
}

async fn receive(axum::extract::State(r): axum::extract::State<Arc<Receiver>>) -> StatusCode {
    if r.open.load(Ordering::SeqCst) {
        r.delivered.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn json_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, &url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| url.clone())?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {body}");
    }
    Ok(body)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(
        args.webhooks >= 1 && args.changes >= args.webhooks,
        "need a change per webhook"
    );
    let receiver = Arc::new(Receiver {
        delivered: AtomicU64::new(0),
        open: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let http = reqwest::Client::new();
    let base = args.base_url.trim_end_matches('/').to_owned();
    let mut hooks = Vec::new();
    for i in 0..args.webhooks {
        let session = json_call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/auth/register"),
            None,
            json!({"email": format!("bench-{}@example.com", uuid::Uuid::new_v4().simple()),
                   "password": "correct horse battery", "name": "Bench"}),
        )
        .await?;
        let token = session["access_token"]
            .as_str()
            .context("no token")?
            .to_owned();
        let hook = json_call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/webhooks"),
            Some(&token),
            json!({"url": format!("http://{addr}/hook/{i}")}),
        )
        .await
        .context("subscribing (is WEBHOOK_ALLOW_PRIVATE=true set on the command service?)")?;
        let id = hook["id"].as_str().context("no webhook id")?.to_owned();
        let start = hook["position"].as_u64().context("no position")?;
        hooks.push((token, id, start));
    }

    let written = Instant::now();
    let per_user = args.changes / args.webhooks;
    let total = per_user * args.webhooks;
    let batches: Vec<(String, usize)> = hooks
        .iter()
        .flat_map(|(token, _, _)| {
            (0..per_user.div_ceil(100))
                .map(|b| (token.clone(), 100.min(per_user - b * 100)))
                .collect::<Vec<_>>()
        })
        .collect();
    let results: Vec<anyhow::Result<Value>> = futures::stream::iter(batches)
        .map(|(token, n)| {
            let http = http.clone();
            let url = format!("{base}/v1/tasks/batch");
            async move {
                let commands: Vec<Value> = (0..n)
                    .map(|_| json!({"op": "create", "body": {"title": "backlog"}}))
                    .collect();
                json_call(
                    &http,
                    reqwest::Method::POST,
                    url,
                    Some(&token),
                    json!({"commands": commands}),
                )
                .await
            }
        })
        .buffer_unordered(args.writers.max(1))
        .collect()
        .await;
    let mut head = 0;
    for r in results {
        for result in r?["results"].as_array().into_iter().flatten() {
            head = head.max(result["body"]["position"].as_u64().unwrap_or(0));
        }
    }
    println!(
        "wrote {total} changes for {} webhook(s) in {:.1} s",
        args.webhooks,
        written.elapsed().as_secs_f64()
    );
    // Timed from here: the drain, not the change feed catching up.
    let query = args
        .query_url
        .as_deref()
        .unwrap_or(&base)
        .trim_end_matches('/');
    let caught_up = Instant::now();
    loop {
        let page = http
            .get(format!("{query}/v1/changes?limit=1"))
            .bearer_auth(&hooks[0].0)
            .header("X-Min-Position", head.to_string())
            .send()
            .await?;
        if page.status().is_success() {
            break;
        }
        ensure!(
            caught_up.elapsed() < Duration::from_secs(600),
            "the change feed never caught up"
        );
    }
    println!(
        "the change feed reached position {head} {:.1} s later",
        caught_up.elapsed().as_secs_f64()
    );

    receiver.open.store(true, Ordering::SeqCst);
    let released = Instant::now();
    for (token, id, start) in &hooks {
        json_call(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/webhooks/{id}/replay"),
            Some(token),
            json!({"after": start}),
        )
        .await?;
    }
    let mut last_report = Instant::now();
    let mut last_count = 0;
    loop {
        let n = receiver.delivered.load(Ordering::SeqCst);
        if n >= total as u64 {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {n} delivered, {:.0}/s over the last 10 s",
                (n - last_count) as f64 / last_report.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
            last_count = n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = released.elapsed().as_secs_f64();
    println!(
        "drained a backlog of {total} changes over {} webhook(s) in {drained:.1} s: {:.0} deliveries/s",
        args.webhooks,
        total as f64 / drained
    );
    for (token, id, _) in &hooks {
        let _ = http
            .delete(format!("{base}/v1/webhooks/{id}"))
            .bearer_auth(token)
            .send()
            .await;
    }
    Ok(())
}
