//! A thin HTTP client for the API, as any client would use it.

use anyhow::Context;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Ack.position` of a command's reply.
    pub fn position(&self) -> Option<u64> {
        self.body.get("position").and_then(Value::as_u64)
    }
}

/// Writes go to `command_url`, reads to `query_url`; both may be the gateway.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    command_url: String,
    query_url: String,
}

impl Api {
    pub fn new(command_url: String, query_url: String) -> Api {
        Api {
            http: reqwest::Client::new(),
            command_url,
            query_url,
        }
    }

    pub async fn register(&self) -> anyhow::Result<Session> {
        let email = format!("user-{}@example.com", Uuid::new_v4().simple());
        let reply = self
            .send(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": "correct horse battery", "name": "System Test"})),
                &[],
            )
            .await?;
        anyhow::ensure!(reply.status == StatusCode::CREATED, "register: {reply:?}");
        Ok(Session {
            user_id: reply.body["user"]["id"]
                .as_str()
                .context("register: no user id")?
                .to_owned(),
            access_token: reply.body["access_token"]
                .as_str()
                .context("register: no access token")?
                .to_owned(),
        })
    }

    /// Sends to the command service for writes and the query service for
    /// GET/HEAD, like the gateway does.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let base = if method == Method::GET || method == Method::HEAD {
            &self.query_url
        } else {
            &self.command_url
        };
        self.send_to(base, method, path, session, body, headers)
            .await
    }

    /// Sends to the command service whatever the method (`/v1/auth/*` and
    /// `/v1/webhooks` are its own, GETs too).
    pub async fn command(
        &self,
        method: Method,
        path: &str,
        session: &Session,
        body: Option<Value>,
    ) -> anyhow::Result<Reply> {
        self.send_to(&self.command_url, method, path, Some(session), body, &[])
            .await
    }

    async fn send_to(
        &self,
        base: &str,
        method: Method,
        path: &str,
        session: Option<&Session>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(session) = session {
            request = request.bearer_auth(&session.access_token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.context("sending")?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.context("reading the body")?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str, session: &Session) -> anyhow::Result<Reply> {
        self.send(Method::GET, path, Some(session), None, &[]).await
    }

    /// A read that waits for the projection to reach `position`.
    pub async fn get_at(
        &self,
        path: &str,
        session: &Session,
        position: u64,
    ) -> anyhow::Result<Reply> {
        let position = position.to_string();
        self.send(
            Method::GET,
            path,
            Some(session),
            None,
            &[("X-Min-Position", &position)],
        )
        .await
    }

    pub async fn post(&self, path: &str, session: &Session, body: Value) -> anyhow::Result<Reply> {
        self.send(Method::POST, path, Some(session), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, session: &Session, body: Value) -> anyhow::Result<Reply> {
        self.send(Method::PATCH, path, Some(session), Some(body), &[])
            .await
    }

    pub async fn delete(&self, path: &str, session: &Session) -> anyhow::Result<Reply> {
        self.send(Method::DELETE, path, Some(session), None, &[])
            .await
    }
}
