//! `Tasklog-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`:
//! how a receiver knows a delivery came from us and was not replayed later.
//! The timestamp is inside the MAC, so a captured delivery cannot be re-sent
//! with a fresh one; receivers refuse those outside a tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SIGNATURE_HEADER: &str = "Tasklog-Signature";
pub const DELIVERY_HEADER: &str = "Tasklog-Delivery";

/// How far a receiver should let the timestamp be from its clock (the
/// README's snippet uses it; retries are signed afresh, so only clock skew
/// and transit count).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| any_key());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn any_key() -> HmacSha256 {
    // InvalidLength is only returned by MACs with a fixed key size.
    <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The header value for `body` sent at `timestamp` (unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    sign_with_each(&[secret], timestamp, body)
}

/// The header value with one `v1=` per secret, in order: while a secret is
/// rotated the new one and the one it replaces both sign, so a receiver
/// holding either accepts the delivery.
pub fn sign_with_each(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let digest = mac(secret, timestamp, body).finalize().into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex(&digest));
    }
    header
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the header is not t=<unix seconds>,v1=<hex>")]
    Malformed,
    #[error("the timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// What a receiver does: parse the header, refuse a timestamp more than
/// `tolerance_secs` from `now`, and compare the MAC in constant time. Several
/// `v1=` entries are allowed (one per secret while a secret is rotated).
///
/// # Errors
/// Which check failed.
pub fn verify(
    header: &str,
    secret: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    for candidate in candidates {
        let Some(bytes) = unhex(candidate) else {
            continue;
        };
        if mac(secret, timestamp, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_a_secret_is_rotated_a_receiver_with_either_secret_accepts() {
        // Given a delivery signed with the new secret and the one it replaced
        let body = br#"{"a":1}"#;
        let header = sign_with_each(&["whsec_new", "whsec_test"], 1_700_000_000, body);

        // Then it carries both MACs, the new one first
        assert_eq!(
            header,
            format!(
                "{},v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789",
                sign("whsec_new", 1_700_000_000, body)
            )
        );
        // And a receiver on either secret accepts it, one on neither does not
        for secret in ["whsec_new", "whsec_test"] {
            assert_eq!(verify(&header, secret, body, 1_700_000_000, 300), Ok(()));
        }
        assert_eq!(
            verify(&header, "whsec_other", body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' |
        //   openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn a_receiver_accepts_its_own_deliveries_within_the_tolerance() {
        let body = br#"{"delivery_id":"x"}"#;
        let header = sign("s3cret", 1_000, body);
        assert_eq!(verify(&header, "s3cret", body, 1_000, 300), Ok(()));
        assert_eq!(verify(&header, "s3cret", body, 1_300, 300), Ok(()));
        assert_eq!(verify(&header, "s3cret", body, 700, 300), Ok(()));
    }

    #[test]
    fn a_changed_body_another_secret_or_an_old_timestamp_is_refused() {
        let body = br#"{"delivery_id":"x"}"#;
        let header = sign("s3cret", 1_000, body);
        let cases = [
            (
                header.as_str(),
                "s3cret",
                &br#"{"delivery_id":"y"}"#[..],
                1_000,
                SignatureError::Mismatch,
            ),
            (
                header.as_str(),
                "other",
                &body[..],
                1_000,
                SignatureError::Mismatch,
            ),
            (
                header.as_str(),
                "s3cret",
                &body[..],
                1_301,
                SignatureError::Stale,
            ),
            (
                "v1=abcd",
                "s3cret",
                &body[..],
                1_000,
                SignatureError::Malformed,
            ),
            (
                "t=1000",
                "s3cret",
                &body[..],
                1_000,
                SignatureError::Malformed,
            ),
            (
                "t=1000,v1=zz",
                "s3cret",
                &body[..],
                1_000,
                SignatureError::Mismatch,
            ),
        ];
        for (header, secret, body, now, want) in cases {
            assert_eq!(
                verify(header, secret, body, now, 300),
                Err(want),
                "{header}"
            );
        }
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace("t=1000", "t=1200");
        assert_eq!(
            verify(&moved, "s3cret", body, 1_200, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_rotated_secret_may_travel_beside_the_new_one() {
        let body = b"{}";
        let old = sign("old", 5, body);
        let new = sign("new", 5, body);
        let both = format!("{new},v1={}", old.split_once("v1=").unwrap().1);
        assert_eq!(verify(&both, "old", body, 5, 300), Ok(()));
        assert_eq!(verify(&both, "new", body, 5, 300), Ok(()));
    }
}
