//! The SSRF guard of webhooks: which addresses a delivery may never reach
//! (loopback, private, link-local, cloud metadata and the other special
//! ranges), checked on every address a host name resolves to, at
//! subscription and again at each delivery (see the projector's resolver,
//! which connects only to the addresses that passed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Why an address is refused; shown to the subscriber and in delivery logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    /// Unspecified, multicast, broadcast, documentation, benchmarking,
    /// reserved, or a translation prefix hiding one of the above.
    Special,
}

impl Refused {
    pub fn describe(self) -> &'static str {
        match self {
            Refused::Loopback => "a loopback address",
            Refused::Private => "a private address",
            Refused::LinkLocal => "a link-local address",
            Refused::Metadata => "a cloud metadata address",
            Refused::Special => "a special-purpose address",
        }
    }
}

/// Cloud metadata endpoints, named before their ranges so the reason says so:
/// AWS/GCP/Azure/OpenStack, AWS ECS task metadata, Alibaba, AWS over IPv6.
const METADATA_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// `None` when a delivery may go to `ip`; else why not.
pub fn classify(ip: IpAddr) -> Option<Refused> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refused> {
    if METADATA_V4.contains(&ip) {
        return Some(Refused::Metadata);
    }
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => Some(Refused::Loopback),
        (10, _, _) | (192, 168, _) => Some(Refused::Private),
        (172, b, _) if (16..32).contains(&b) => Some(Refused::Private),
        // Carrier-grade NAT: inside a provider's network, like a private range.
        (100, b, _) if (64..128).contains(&b) => Some(Refused::Private),
        (169, 254, _) => Some(Refused::LinkLocal),
        (0, _, _)                                   // "this network"
        | (192, 0, 0) | (192, 0, 2)                 // IETF, TEST-NET-1
        | (192, 88, 99)                             // 6to4 relays
        | (198, 51, 100) | (203, 0, 113) => Some(Refused::Special), // TEST-NET-2/3
        (198, b, _) if b == 18 || b == 19 => Some(Refused::Special), // benchmarking
        (a, _, _) if a >= 224 => Some(Refused::Special), // multicast, reserved, broadcast
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refused> {
    if ip == METADATA_V6 {
        return Some(Refused::Metadata);
    }
    if ip == Ipv6Addr::LOCALHOST {
        return Some(Refused::Loopback);
    }
    // IPv4-mapped (::ffff:a.b.c.d): the IPv4 address is what gets reached.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s[0] {
        // ::/96 (unspecified, IPv4-compatible) and the rest of ::/8.
        0 => Some(Refused::Special),
        // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address; the
        // local-use prefix 64:ff9b:1::/48 only a local translator.
        0x64 if s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] => classify_v4(embedded(s[6], s[7])),
        0x64 if s[1] == 0xff9b => Some(Refused::Special),
        // 6to4 (2002::/16) carries an IPv4 address in bits 16..48.
        0x2002 => classify_v4(embedded(s[1], s[2])),
        // Teredo (2001::/32) hides its target; documentation (2001:db8::/32).
        0x2001 if s[1] == 0 || s[1] == 0x0db8 => Some(Refused::Special),
        // Discard-only 100::/64.
        0x0100 if s[1..4] == [0, 0, 0] => Some(Refused::Special),
        h if h & 0xfe00 == 0xfc00 => Some(Refused::Private), // unique local fc00::/7
        h if h & 0xffc0 == 0xfe80 => Some(Refused::LinkLocal), // fe80::/10
        h if h & 0xffc0 == 0xfec0 => Some(Refused::Private), // old site-local
        h if h & 0xff00 == 0xff00 => Some(Refused::Special), // multicast
        _ => None,
    }
}

/// The outcome of resolving a webhook host.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("the host {host} does not resolve: {reason}")]
    NoAddress { host: String, reason: String },
    #[error("the host {host} resolves to {ip}, {}", .refused.describe())]
    Refused {
        host: String,
        ip: IpAddr,
        refused: Refused,
    },
}

/// How long a subscription waits for DNS before refusing the URL.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `host:port` and checks every address. All of them must pass:
/// a host with one private address among public ones could be steered to it.
/// With `allow_private` every address passes (local runs and tests).
///
/// # Errors
/// When the host does not resolve, or an address is refused.
pub async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let no_address = |reason: String| ResolveError::NoAddress {
        host: host.to_owned(),
        reason,
    };
    // An IP literal (brackets stripped) needs no lookup.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port))).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(no_address(e.to_string())),
            Err(_) => return Err(no_address("DNS timed out".to_owned())),
        }
    };
    if addrs.is_empty() {
        return Err(no_address("no addresses".to_owned()));
    }
    check_all(host, &addrs, allow_private)?;
    Ok(addrs)
}

/// Checks resolved addresses (the projector's resolver calls this on the
/// answer it then connects to).
///
/// # Errors
/// The first refused address.
pub fn check_all(
    host: &str,
    addrs: &[SocketAddr],
    allow_private: bool,
) -> Result<(), ResolveError> {
    if allow_private {
        return Ok(());
    }
    for addr in addrs {
        if let Some(refused) = classify(addr.ip()) {
            return Err(ResolveError::Refused {
                host: host.to_owned(),
                ip: addr.ip(),
                refused,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<Refused> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn loopback_private_link_local_and_metadata_are_refused() {
        for (ip, want) in [
            ("127.0.0.1", Refused::Loopback),
            ("127.255.0.9", Refused::Loopback),
            ("::1", Refused::Loopback),
            ("10.1.2.3", Refused::Private),
            ("172.16.0.1", Refused::Private),
            ("172.31.255.255", Refused::Private),
            ("192.168.1.1", Refused::Private),
            ("100.64.0.1", Refused::Private),
            ("fd12:3456::1", Refused::Private),
            ("169.254.1.1", Refused::LinkLocal),
            ("fe80::1", Refused::LinkLocal),
            ("169.254.169.254", Refused::Metadata),
            ("169.254.170.2", Refused::Metadata),
            ("100.100.100.200", Refused::Metadata),
            ("fd00:ec2::254", Refused::Metadata),
            ("0.0.0.0", Refused::Special),
            ("::", Refused::Special),
            ("255.255.255.255", Refused::Special),
            ("224.0.0.1", Refused::Special),
            ("198.18.0.1", Refused::Special),
            ("192.0.2.1", Refused::Special),
            ("2001:db8::1", Refused::Special),
            ("ff02::1", Refused::Special),
        ] {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv4_hidden_in_ipv6_is_judged_as_the_ipv4_address() {
        assert_eq!(class("::ffff:127.0.0.1"), Some(Refused::Loopback));
        assert_eq!(class("::ffff:169.254.169.254"), Some(Refused::Metadata));
        assert_eq!(class("64:ff9b::a00:1"), Some(Refused::Private)); // NAT64 of 10.0.0.1
        assert_eq!(class("2002:7f00:1::"), Some(Refused::Loopback)); // 6to4 of 127.0.0.1
        assert_eq!(class("::127.0.0.1"), Some(Refused::Special)); // IPv4-compatible
        assert_eq!(class("::ffff:93.184.216.34"), None);
        assert_eq!(class("64:ff9b::5db8:d822"), None); // NAT64 of 93.184.216.34
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_private_is_allowed() {
        let refused = resolve_checked("localhost", 443, false).await.unwrap_err();
        assert!(
            matches!(
                refused,
                ResolveError::Refused {
                    refused: Refused::Loopback,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(resolve_checked("localhost", 443, true).await.is_ok());
        let literal = resolve_checked("[::1]", 443, false).await.unwrap_err();
        assert!(matches!(literal, ResolveError::Refused { .. }), "{literal}");
    }
}
