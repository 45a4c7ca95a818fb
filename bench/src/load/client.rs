//! The few Tasklog calls the scenarios make, over one shared connection pool.
//! Each returns the status and what the scenario needs from the body or
//! headers; bodies it does not need are read and dropped.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    http: Client,
    command: Url,
    query: Url,
}

/// A registered user's bearer token.
#[derive(Clone)]
pub struct User {
    pub token: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Ack {
    pub id: Uuid,
    pub version: u64,
    pub position: u64,
}

/// What a request came back with. `status` is `None` when no response came.
pub struct Answer<T> {
    pub status: Option<StatusCode>,
    pub value: Option<T>,
}

impl<T> Answer<T> {
    fn transport() -> Self {
        Self {
            status: None,
            value: None,
        }
    }
}

/// The status and `X-Projection-Position` of an answer; its body is read so
/// the connection goes back to the pool.
async fn position_of(sent: reqwest::Result<Response>) -> Answer<Option<u64>> {
    let Ok(response) = sent else {
        return Answer::transport();
    };
    let status = response.status();
    let position = projection_position(&response);
    match response.bytes().await {
        Ok(_) => Answer {
            status: Some(status),
            value: Some(position),
        },
        Err(_) => Answer::transport(),
    }
}

pub const PROJECTION_POSITION: &str = "x-projection-position";
const MIN_POSITION: &str = "x-min-position";

fn projection_position(response: &Response) -> Option<u64> {
    response
        .headers()
        .get(PROJECTION_POSITION)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A list page's cursor, if the page says there is a next one.
#[derive(Deserialize)]
struct Page {
    next_cursor: Option<String>,
}

impl Api {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        command: Url,
        query: Url,
        timeout: Duration,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let http = Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(connections.max(1))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            http,
            command,
            query,
        })
    }

    fn command_url(&self, path: &str) -> Url {
        self.command
            .join(path)
            .unwrap_or_else(|_| self.command.clone())
    }

    fn query_url(&self, path: &str) -> Url {
        self.query.join(path).unwrap_or_else(|_| self.query.clone())
    }

    /// # Errors
    /// Anything but a 201, with the server's answer; a 429 names the setting.
    pub async fn register(&self, email: &str, password: &str) -> anyhow::Result<User> {
        let response = self
            .http
            .post(self.command_url("/v1/auth/register"))
            .json(&json!({"email": email, "password": password, "name": "bench"}))
            .send()
            .await
            .with_context(|| format!("register at {}", self.command))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            anyhow::bail!(
                "registration was rate limited (429): run the command service with RATE_LIMIT_AUTH=0 RATE_LIMIT_API=0 for benchmarks"
            );
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::CREATED {
            anyhow::bail!("register answered {status}: {body}");
        }
        let token = body["access_token"]
            .as_str()
            .context("register: no access_token in the session")?
            .to_owned();
        Ok(User { token })
    }

    pub async fn create(&self, user: &User, body: &Value) -> Answer<Ack> {
        let sent = self
            .http
            .post(self.command_url("/v1/tasks"))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await;
        ack_of(sent).await
    }

    /// `if_match`: `Some(v)` sends `If-Match: "v"`.
    pub async fn patch(
        &self,
        user: &User,
        id: Uuid,
        body: &Value,
        if_match: Option<u64>,
    ) -> Answer<Ack> {
        let mut request = self
            .http
            .patch(self.command_url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&user.token)
            .json(body);
        if let Some(v) = if_match {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{v}\""));
        }
        ack_of(request.send().await).await
    }

    pub async fn delete(&self, user: &User, id: Uuid) -> Answer<Ack> {
        let sent = self
            .http
            .delete(self.command_url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await;
        ack_of(sent).await
    }

    /// The projection position the query service knows, from the header of
    /// its cheapest answer (`/health/live`).
    pub async fn projection_position(&self) -> Answer<Option<u64>> {
        position_of(self.http.get(self.query_url("/health/live")).send().await).await
    }

    /// GET /v1/tasks/{id}; the value is the `X-Projection-Position` it carried.
    pub async fn get(
        &self,
        user: &User,
        id: Uuid,
        min_position: Option<u64>,
    ) -> Answer<Option<u64>> {
        let mut request = self
            .http
            .get(self.query_url(&format!("/v1/tasks/{id}")))
            .bearer_auth(&user.token);
        if let Some(p) = min_position {
            request = request.header(MIN_POSITION, p.to_string());
        }
        position_of(request.send().await).await
    }

    /// GET /v1/tasks with these parameters; the value is the page's next_cursor.
    pub async fn list(
        &self,
        user: &User,
        params: &[(&str, String)],
        min_position: Option<u64>,
    ) -> Answer<Option<String>> {
        let mut request = self
            .http
            .get(self.query_url("/v1/tasks"))
            .bearer_auth(&user.token)
            .query(params);
        if let Some(p) = min_position {
            request = request.header(MIN_POSITION, p.to_string());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(bytes) => {
                        let next = if status.is_success() {
                            serde_json::from_slice::<Page>(&bytes)
                                .ok()
                                .and_then(|p| p.next_cursor)
                        } else {
                            None
                        };
                        Answer {
                            status: Some(status),
                            value: Some(next),
                        }
                    }
                    Err(_) => Answer::transport(),
                }
            }
            Err(_) => Answer::transport(),
        }
    }
}

async fn ack_of(sent: reqwest::Result<Response>) -> Answer<Ack> {
    let Ok(response) = sent else {
        return Answer::transport();
    };
    let status = response.status();
    match response.bytes().await {
        Ok(bytes) => Answer {
            status: Some(status),
            value: if status.is_success() {
                serde_json::from_slice(&bytes).ok()
            } else {
                None
            },
        },
        Err(_) => Answer::transport(),
    }
}
