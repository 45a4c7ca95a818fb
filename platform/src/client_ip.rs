//! Who the client is, for per-IP rate limits: the TCP peer, unless the peer
//! is one of our own proxies (`TRUSTED_PROXIES`), in which case the right-most
//! `X-Forwarded-For` entry that is not a trusted proxy. Entries left of that
//! one were written by the client and prove nothing.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, Request};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::{ConfigError, Env};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// An address block such as `10.0.0.0/8` or `::1` (a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpBlock {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?
            .to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length outside 0..={max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

/// The proxies allowed to tell us the client's address.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    blocks: Vec<IpBlock>,
    /// Whether this service said that it ignores `X-Forwarded-For` from an
    /// untrusted peer: once, so a misconfigured proxy in front (every client
    /// then shares the proxy's per-IP limits) is seen in the log without
    /// flooding it.
    warned: Arc<AtomicBool>,
}

impl PartialEq for TrustedProxies {
    fn eq(&self, other: &Self) -> bool {
        self.blocks == other.blocks
    }
}

impl Eq for TrustedProxies {}

impl TrustedProxies {
    /// Reads `TRUSTED_PROXIES`: comma-separated addresses or CIDR blocks;
    /// unset trusts no one, so `X-Forwarded-For` is ignored.
    ///
    /// # Errors
    /// When an entry is neither an address nor a block.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some(raw) = env.get("TRUSTED_PROXIES") else {
            return Ok(Self::default());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|e| ConfigError::new("TRUSTED_PROXIES", e))
            })
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    pub fn new(blocks: Vec<IpBlock>) -> Self {
        Self {
            blocks,
            warned: Arc::default(),
        }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|block| block.contains(ip))
    }

    /// The client's address given the TCP peer and the request headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            if headers.contains_key(&X_FORWARDED_FOR) {
                self.warn_once(client);
            }
            return client;
        }
        // Several X-Forwarded-For headers read as one list, in order.
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(list) = value.to_str() else {
                return client;
            };
            for entry in list.rsplit(',') {
                let Some(ip) = parse_entry(entry) else {
                    // Garbage from here on: the last hop we could read is all we know.
                    return client;
                };
                if !self.is_trusted(ip) {
                    return ip;
                }
                client = ip;
            }
        }
        client
    }

    fn warn_once(&self, peer: IpAddr) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            %peer,
            "X-Forwarded-For from a peer TRUSTED_PROXIES does not name: ignored, the peer is the \
             client. Behind a gateway, set TRUSTED_PROXIES to its addresses, or every client \
             shares its per-IP limits (logged once)"
        );
    }

    /// The client's address of a request served with connect info; without it
    /// (a router driven directly, in tests) the unspecified address.
    pub fn client_ip_of<B>(&self, request: &Request<B>) -> IpAddr {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        self.client_ip(peer, request.headers())
    }
}

/// Puts the client's address on the request's span, so the request's log
/// line (and a failed login logged within it) says who it was.
pub async fn record_client_ip(
    State(proxies): State<TrustedProxies>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    tracing::Span::current().record(
        "client_ip",
        tracing::field::display(proxies.client_ip_of(&request)),
    );
    next.run(request).await
}

/// `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:5678`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::from_env(&Env::from_pairs([("TRUSTED_PROXIES", list)])).unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_match_their_addresses_only() {
        let block: IpBlock = "10.1.0.0/16".parse().unwrap();
        assert!(block.contains(ip("10.1.255.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        let all: IpBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("192.0.2.1")));
        assert!(!all.contains(ip("2001:db8::1")));
        let v6: IpBlock = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<IpBlock>().is_err(), "{bad}");
        }
        assert!(
            TrustedProxies::from_env(&Env::from_pairs([("TRUSTED_PROXIES", "10.0.0.1,x")]))
                .is_err()
        );
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let none = TrustedProxies::default();
        let headers = xff(&["203.0.113.9"]);
        assert_eq!(
            none.client_ip(ip("198.51.100.7"), &headers),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted = proxies("10.0.0.0/8, 127.0.0.1");
        let peer = ip("10.0.0.2");
        // The client forged the first entry; our proxies appended the rest.
        let headers = xff(&["1.1.1.1, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(trusted.client_ip(peer, &headers), ip("203.0.113.9"));
        assert_eq!(trusted.client_ip(peer, &HeaderMap::new()), peer);
        assert_eq!(
            trusted.client_ip(peer, &xff(&["10.0.0.5, 10.0.0.6"])),
            ip("10.0.0.5")
        );
        assert_eq!(
            trusted.client_ip(peer, &xff(&["203.0.113.9, garbage"])),
            peer
        );
        assert_eq!(
            trusted.client_ip(peer, &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
    }
}
