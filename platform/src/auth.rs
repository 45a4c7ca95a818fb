//! JWT access tokens: the command service signs, both services verify. With
//! key files (EdDSA or RS256) only the command service holds the private key;
//! HS256 with a shared secret is for development only.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quick_cache::sync::Cache;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{ConfigError, Env, Environment};
use crate::problem::ApiError;

pub const ISSUER: &str = "tasklog";
pub const AUDIENCE: &str = "tasklog-api";

/// The development secret used when `JWT_SECRET` is unset; refused in production.
pub const DEV_SECRET: &str = "tasklog-development-secret-do-not-use-in-production";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    pub jti: Uuid,
}

/// What a service needs of the keys: the command service signs, the query
/// service only verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    SignAndVerify,
    VerifyOnly,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
}

/// Verifies access tokens: one algorithm only (no `none`, no confusion), and
/// `exp`, `iat`, issuer and audience required.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: Cache<Box<str>, Claims>,
}

/// How many verified tokens a service remembers (about 400 bytes each).
const VERIFIED_TOKENS: usize = 4096;

impl TokenVerifier {
    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            key,
            validation,
            verified: Cache::new(VERIFIED_TOKENS),
        }
    }

    /// A client sends the same token with every request until it expires,
    /// and checking an EdDSA signature is the costliest step of a small
    /// request, so a token that verified is remembered, by its whole text
    /// (any changed byte is another key, verified afresh), and only its
    /// expiry is checked again. Tokens that fail are never remembered.
    ///
    /// # Errors
    /// When the signature, algorithm, expiry, issuer or audience is wrong.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, Utc::now().timestamp())
    }

    fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            let leeway = i64::try_from(self.validation.leeway).unwrap_or(i64::MAX);
            if claims.exp < now.saturating_sub(leeway) {
                self.verified.remove(token);
                return Err(TokenError::Invalid(
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature.into(),
                ));
            }
            return Ok(claims);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims;
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

pub struct TokenSigner {
    key: EncodingKey,
    algorithm: Algorithm,
    ttl: Duration,
}

impl TokenSigner {
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// # Errors
    /// Only when the key cannot sign, which the start-up check rules out.
    pub fn issue(&self, user: Uuid) -> Result<IssuedToken, TokenError> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user,
            iat: now,
            exp: now.saturating_add(ttl),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }
}

/// The keys of a service, loaded and checked at start.
pub struct JwtKeys {
    pub signer: Option<Arc<TokenSigner>>,
    pub verifier: Arc<TokenVerifier>,
}

impl JwtKeys {
    /// Reads `JWT_PRIVATE_KEY_FILE`/`JWT_PUBLIC_KEY_FILE` (EdDSA, or RS256 outside
    /// production) or else `JWT_SECRET` (HS256, development only), and
    /// `ACCESS_TOKEN_TTL_SECS`.
    ///
    /// # Errors
    /// When keys are missing, unreadable, of an unknown kind, or too weak for
    /// the environment.
    pub fn from_env(
        env: &Env,
        environment: Environment,
        usage: KeyUse,
    ) -> Result<Self, ConfigError> {
        let ttl = Duration::from_secs(env.parse("ACCESS_TOKEN_TTL_SECS", 900_u64)?);
        if ttl.is_zero() || ttl > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::new(
                "ACCESS_TOKEN_TTL_SECS",
                "must be 1..=86400",
            ));
        }
        match (
            env.get("JWT_PUBLIC_KEY_FILE"),
            env.get("JWT_PRIVATE_KEY_FILE"),
        ) {
            (Some(public), private) => Self::from_pem(public, private, environment, usage, ttl),
            (None, Some(_)) => Err(ConfigError::new(
                "JWT_PUBLIC_KEY_FILE",
                "must be set with JWT_PRIVATE_KEY_FILE",
            )),
            (None, None) => Self::from_secret(env.secret("JWT_SECRET"), environment, usage, ttl),
        }
    }

    fn from_secret(
        secret: Option<SecretString>,
        environment: Environment,
        usage: KeyUse,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let secret = secret.unwrap_or_else(|| SecretString::from(DEV_SECRET));
        let bytes = secret.expose_secret().as_bytes();
        if environment == Environment::Production {
            let reason = if bytes == DEV_SECRET.as_bytes() {
                "is unset or the development default"
            } else if bytes.len() < 32 {
                "is shorter than 32 bytes"
            } else {
                "(HS256) is for development only"
            };
            return Err(ConfigError::new(
                "JWT_SECRET",
                format!(
                    "{reason}; production needs JWT_PRIVATE_KEY_FILE and JWT_PUBLIC_KEY_FILE (EdDSA or RS256)"
                ),
            ));
        }
        let verifier = TokenVerifier::new(DecodingKey::from_secret(bytes), Algorithm::HS256);
        let signer = (usage == KeyUse::SignAndVerify).then(|| {
            Arc::new(TokenSigner {
                key: EncodingKey::from_secret(bytes),
                algorithm: Algorithm::HS256,
                ttl,
            })
        });
        Ok(Self {
            signer,
            verifier: Arc::new(verifier),
        })
    }

    fn from_pem(
        public_path: &str,
        private_path: Option<&str>,
        environment: Environment,
        usage: KeyUse,
        ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let public = read_key("JWT_PUBLIC_KEY_FILE", public_path)?;
        let (decoding, algorithm) = DecodingKey::from_ed_pem(&public)
            .map(|k| (k, Algorithm::EdDSA))
            .or_else(|_| DecodingKey::from_rsa_pem(&public).map(|k| (k, Algorithm::RS256)))
            .map_err(|_| {
                ConfigError::new(
                    "JWT_PUBLIC_KEY_FILE",
                    "is not an Ed25519 or RSA public key in PEM",
                )
            })?;
        // The pure-Rust RSA implementation under jsonwebtoken is not constant
        // time (RUSTSEC-2023-0071, the Marvin attack): its private-key
        // operations can leak the key through timing. Ed25519 has no such
        // flaw, so production takes only that.
        if algorithm == Algorithm::RS256 && environment == Environment::Production {
            return Err(ConfigError::new(
                "JWT_PUBLIC_KEY_FILE",
                "is an RSA key; production takes Ed25519 keys only (the RSA implementation is not constant-time)",
            ));
        }
        let verifier = Arc::new(TokenVerifier::new(decoding, algorithm));
        let signer = match (usage, private_path) {
            (KeyUse::VerifyOnly, _) => None,
            (KeyUse::SignAndVerify, None) => {
                return Err(ConfigError::new(
                    "JWT_PRIVATE_KEY_FILE",
                    "is required to sign tokens",
                ));
            }
            (KeyUse::SignAndVerify, Some(path)) => {
                let private = read_key("JWT_PRIVATE_KEY_FILE", path)?;
                let key = match algorithm {
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
                    _ => EncodingKey::from_rsa_pem(&private),
                }
                .map_err(|_| {
                    ConfigError::new(
                        "JWT_PRIVATE_KEY_FILE",
                        format!(
                            "is not a {algorithm:?} private key in PEM matching the public key"
                        ),
                    )
                })?;
                let signer = TokenSigner {
                    key,
                    algorithm,
                    ttl,
                };
                // A private key that is not the public key's pair would make
                // every token this service issues unverifiable: refuse at start.
                let probe = signer
                    .issue(Uuid::nil())
                    .map_err(|e| ConfigError::new("JWT_PRIVATE_KEY_FILE", e.to_string()))?;
                verifier.verify(&probe.token).map_err(|_| {
                    ConfigError::new("JWT_PRIVATE_KEY_FILE", "does not match JWT_PUBLIC_KEY_FILE")
                })?;
                Some(Arc::new(signer))
            }
        };
        Ok(Self { signer, verifier })
    }
}

fn read_key(name: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(Path::new(path))
        .map_err(|e| ConfigError::new(name, format!("cannot read {path}: {e}")))
}

/// The authenticated caller. Extracting it verifies the bearer token; any
/// failure is a bare 401 (the reason goes to the debug log only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Uuid,
}

impl<S> FromRequestParts<S> for AuthUser
where
    Arc<TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // The rate-limit middleware has already verified this request's token.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(*user);
        }
        let token = bearer_token_of(&parts.headers).ok_or_else(|| {
            tracing::debug!("no bearer token");
            ApiError::Unauthorized
        })?;
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let claims = verifier.verify(token).map_err(|e| {
            tracing::debug!(error = %e, "bearer token rejected");
            ApiError::Unauthorized
        })?;
        identify(claims.sub);
        Ok(AuthUser { id: claims.sub })
    }
}

/// Names the request's user in its log line and, when errors are tracked,
/// in what it reports (the id only).
pub fn identify(id: Uuid) {
    tracing::Span::current().record("user_id", tracing::field::display(id));
    crate::error_tracking::set_user(id);
}

/// The token of an `Authorization: Bearer <token>` header, unverified.
pub fn bearer_token_of(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signer_and_verifier(ttl: Duration) -> (TokenSigner, TokenVerifier) {
        let secret = b"a development secret long enough for hs256";
        let signer = TokenSigner {
            key: EncodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
            ttl,
        };
        (
            signer,
            TokenVerifier::new(DecodingKey::from_secret(secret), Algorithm::HS256),
        )
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        // Given a token that verified and is remembered
        let (signer, verifier) = signer_and_verifier(Duration::from_secs(60));
        let token = signer.issue(Uuid::new_v4()).unwrap().token;
        let claims = verifier.verify(&token).unwrap();
        assert!(verifier.verified.get(token.as_str()).is_some());
        // When it is presented within its leeway, and then after it
        assert!(verifier.verify_at(&token, claims.exp + 5).is_ok());
        let late = verifier.verify_at(&token, claims.exp + 6);
        // Then the late one is refused as expired, and forgotten
        assert!(
            matches!(&late, Err(TokenError::Invalid(e)) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature)),
            "{late:?}"
        );
        assert!(verifier.verified.get(token.as_str()).is_none());
    }

    #[test]
    fn a_token_differing_from_a_remembered_one_in_any_byte_is_verified_afresh() {
        let (signer, verifier) = signer_and_verifier(Duration::from_secs(60));
        let token = signer.issue(Uuid::new_v4()).unwrap().token;
        verifier.verify(&token).unwrap();
        let mut forged = token.clone().into_bytes();
        // A byte inside the signature (the last one may carry unused bits).
        let inside = forged.len() - 10;
        forged[inside] = if forged[inside] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(verifier.verify(&forged).is_err());
        assert!(verifier.verified.get(forged.as_str()).is_none());
        assert!(verifier.verify(&format!("{token} ")).is_err());
    }
}
