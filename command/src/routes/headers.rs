//! Extractors for the headers of task commands: `If-Match` and
//! `Idempotency-Key`, each refused with a problem naming the header.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use tasklog_platform::ApiError;

use crate::tasks::{IdempotencyKey, Precondition};

/// `If-Match: "<version>"` (a list of them, or `*`).
#[derive(Debug)]
pub struct IfMatch(pub Precondition);

/// Parses an `If-Match` value: `*`, or entity tags naming versions. Weak tags
/// never match (RFC 9110 §13.1.1 uses strong comparison).
pub(super) fn parse_if_match(raw: &str) -> Result<Precondition, ApiError> {
    if raw.trim() == "*" {
        return Ok(Precondition::Latest);
    }
    let mut versions = Vec::new();
    for tag in raw.split(',').map(str::trim) {
        if tag.starts_with("W/") {
            continue;
        }
        let version = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_param("If-Match", "must be \"<version>\", e.g. \"3\""))?;
        versions.push(version);
    }
    Ok(Precondition::AtVersion(versions))
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch(Precondition::Latest)),
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| ApiError::bad_param("If-Match", "must be ASCII"))?;
                parse_if_match(text).map(IfMatch)
            }
        }
    }
}

/// The optional `Idempotency-Key` of a POST; a bad one is a 422.
#[derive(Debug)]
pub struct MaybeIdempotencyKey(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeIdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get(IdempotencyKey::HEADER) {
            None => Ok(Self(None)),
            Some(value) => IdempotencyKey::parse(value.as_bytes())
                .map(|k| Self(Some(k)))
                .map_err(|e| ApiError::invalid(&e.field, e.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_strong_version_tags_and_star() {
        assert_eq!(
            parse_if_match("\"3\"").unwrap(),
            Precondition::AtVersion(vec![3])
        );
        assert_eq!(
            parse_if_match("\"1\", \"2\"").unwrap(),
            Precondition::AtVersion(vec![1, 2])
        );
        assert_eq!(parse_if_match(" * ").unwrap(), Precondition::Latest);
        assert_eq!(
            parse_if_match("W/\"3\"").unwrap(),
            Precondition::AtVersion(vec![])
        );
        for bad in ["3", "\"x\"", "\"-1\"", "", "\"3"] {
            assert_eq!(
                parse_if_match(bad).unwrap_err().status_code(),
                400,
                "{bad:?}"
            );
        }
    }
}
