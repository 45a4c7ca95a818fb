//! One HTTP attempt of one delivery: signed, 10 s at most, no redirects, no
//! proxies, at most 1 KiB of the answer kept; and only ever to an address
//! that passed the SSRF guard, because the client's resolver is the guard:
//! it answers with the checked addresses, and the connection goes to one of
//! them, so a DNS answer that changes between check and connect (rebinding)
//! changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tasklog_command::webhooks::signature::{DELIVERY_HEADER, SIGNATURE_HEADER, sign_with_each};
use tasklog_command::webhooks::ssrf;
use tasklog_platform::causes::Causes;
use uuid::Uuid;

/// Most of a receiver's answer kept in the delivery log.
pub const MAX_RESPONSE_BYTES: usize = 1024;

/// A resolver that refuses what the SSRF guard refuses.
struct GuardedResolver {
    allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            // The port is the connector's to fill in.
            let addrs: Vec<SocketAddr> = ssrf::resolve_checked(name.as_str(), 0, allow_private)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// What came of an attempt.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status: Option<u16>,
    pub latency: Duration,
    /// Set unless the receiver answered 2xx.
    pub error: Option<String>,
    pub body: Option<String>,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.error.is_none()
    }

    /// An attempt that never left: nothing was sent, for `error`.
    pub fn refused(error: String) -> Self {
        Self {
            status: None,
            latency: Duration::ZERO,
            error: Some(error),
            body: None,
        }
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// # Errors
    /// When the HTTP client cannot be built (its TLS set-up failed).
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            // A proxy would be resolved instead of the target, bypassing the guard.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .user_agent("Tasklog-Webhooks/1")
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// POSTs `body` to `url`, signed at the current time with each of
    /// `secrets` (two while a secret is rotated).
    pub async fn send(
        &self,
        url: &str,
        secrets: &[&str],
        delivery_id: Uuid,
        body: Vec<u8>,
    ) -> Sent {
        let started = Instant::now();
        let failed = |error: String| Sent {
            status: None,
            latency: started.elapsed(),
            error: Some(error),
            body: None,
        };
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(format!("bad URL: {e}")),
        };
        // An IP literal never reaches the resolver: check it here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            let addr = SocketAddr::new(ip, parsed.port_or_known_default().unwrap_or(443));
            if let Err(e) = ssrf::check_all(&ip.to_string(), &[addr], self.allow_private) {
                return failed(e.to_string());
            }
        }
        let signature = sign_with_each(secrets, chrono::Utc::now().timestamp(), &body);
        let request = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, delivery_id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        let mut response = match request.send().await {
            Ok(r) => r,
            // reqwest's own message says only "error sending request"; the
            // causes say which address was refused or what timed out.
            Err(e) => return failed(Causes(&e).to_string()),
        };
        let latency = started.elapsed();
        let status = response.status();
        let mut kept = Vec::new();
        while kept.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                _ => break,
            }
        }
        let body = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
        Sent {
            status: Some(status.as_u16()),
            latency,
            error: (!status.is_success()).then(|| format!("the receiver answered {status}")),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local listener that counts the connections it gets.
    async fn listener() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0; 65_536];
                    let _ = socket.read(&mut buf).await;
                    let body = "x".repeat(5_000);
                    // Back to this listener: following it would connect again.
                    let reply = format!(
                        "HTTP/1.1 302 Found\r\nLocation: http://{addr}/again\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_connection_by_name_or_by_address() {
        let (addr, accepted) = listener().await;
        let guarded = Sender::new(false, Duration::from_secs(2)).unwrap();
        for url in [
            format!("http://localhost:{}/hook", addr.port()),
            format!("http://127.0.0.1:{}/hook", addr.port()),
            format!("http://[::ffff:127.0.0.1]:{}/hook", addr.port()),
        ] {
            let sent = guarded
                .send(&url, &["s"], Uuid::nil(), b"{}".to_vec())
                .await;
            assert!(!sent.delivered(), "{url}");
            assert_eq!(sent.status, None, "{url}");
            let error = sent.error.unwrap_or_default();
            assert!(error.contains("loopback"), "{url}: {error}");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_only_a_kibibyte_of_the_answer_is_kept() {
        let (addr, accepted) = listener().await;
        let open = Sender::new(true, Duration::from_secs(5)).unwrap();
        let sent = open
            .send(
                &format!("http://localhost:{}/hook", addr.port()),
                &["s"],
                Uuid::nil(),
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(sent.status, Some(302));
        assert!(!sent.delivered(), "a redirect is not a delivery");
        assert_eq!(sent.body.map(|b| b.len()), Some(MAX_RESPONSE_BYTES));
        // One connection: the redirect (to this same listener) was not followed.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
