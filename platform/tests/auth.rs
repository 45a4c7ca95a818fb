//! Token issue and verification: what must pass and every forgery that must not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tasklog_platform::auth::{AUDIENCE, DEV_SECRET, ISSUER, JwtKeys, KeyUse};
use tasklog_platform::config::{Env, Environment};
use uuid::Uuid;

fn key(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn dev_keys() -> JwtKeys {
    JwtKeys::from_env(
        &Env::default(),
        Environment::Development,
        KeyUse::SignAndVerify,
    )
    .unwrap()
}

fn forge(claims: serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn claims(exp_offset: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": Uuid::new_v4(), "iat": now, "exp": now + exp_offset,
           "iss": ISSUER, "aud": AUDIENCE, "jti": Uuid::new_v4()})
}

#[test]
fn a_token_issued_in_development_verifies_and_names_its_user() {
    let keys = dev_keys();
    let user = Uuid::new_v4();
    let issued = keys.signer.as_ref().unwrap().issue(user).unwrap();
    assert_eq!(issued.expires_in, 900);
    let claims = keys.verifier.verify(&issued.token).unwrap();
    assert_eq!(claims.sub, user);
    assert_eq!(claims.exp - claims.iat, 900);
}

#[test]
fn expired_wrong_issuer_wrong_audience_and_missing_claims_are_rejected() {
    let keys = dev_keys();
    let secret = EncodingKey::from_secret(DEV_SECRET.as_bytes());
    assert!(
        keys.verifier
            .verify(&forge(claims(600), Algorithm::HS256, &secret))
            .is_ok()
    );

    let expired = forge(claims(-60), Algorithm::HS256, &secret);
    assert!(keys.verifier.verify(&expired).is_err());

    let mut wrong_iss = claims(600);
    wrong_iss["iss"] = json!("someone-else");
    assert!(
        keys.verifier
            .verify(&forge(wrong_iss, Algorithm::HS256, &secret))
            .is_err()
    );

    let mut wrong_aud = claims(600);
    wrong_aud["aud"] = json!("another-api");
    assert!(
        keys.verifier
            .verify(&forge(wrong_aud, Algorithm::HS256, &secret))
            .is_err()
    );

    let mut no_iat = claims(600);
    no_iat.as_object_mut().unwrap().remove("iat");
    assert!(
        keys.verifier
            .verify(&forge(no_iat, Algorithm::HS256, &secret))
            .is_err()
    );

    // CVE-2026-25537: a string where a number belongs must not skip the check.
    let mut string_exp = claims(600);
    string_exp["exp"] = json!("9999999999");
    assert!(
        keys.verifier
            .verify(&forge(string_exp, Algorithm::HS256, &secret))
            .is_err()
    );
}

#[test]
fn a_token_signed_with_another_secret_or_tampered_is_rejected() {
    let keys = dev_keys();
    let other = EncodingKey::from_secret(b"another secret of enough length for hs256!!");
    assert!(
        keys.verifier
            .verify(&forge(claims(600), Algorithm::HS256, &other))
            .is_err()
    );

    let good = keys
        .signer
        .as_ref()
        .unwrap()
        .issue(Uuid::new_v4())
        .unwrap()
        .token;
    // Verified first, so a remembered token cannot stand in for its forgery.
    assert!(keys.verifier.verify(&good).is_ok());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let forged_payload = base64_url(&claims(600).to_string());
    parts[1] = forged_payload;
    assert!(keys.verifier.verify(&parts.join(".")).is_err());
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn alg_none_is_rejected() {
    let keys = dev_keys();
    let header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64_url(&claims(600).to_string());
    assert!(
        keys.verifier
            .verify(&format!("{header}.{payload}."))
            .is_err()
    );
}

#[test]
fn eddsa_and_rs256_key_files_sign_and_verify_and_the_query_side_needs_only_the_public_key() {
    for (private, public, environment) in [
        (
            "ed25519-private.pem",
            "ed25519-public.pem",
            Environment::Production,
        ),
        (
            "rsa-private.pem",
            "rsa-public.pem",
            Environment::Development,
        ),
    ] {
        let (private, public) = (key(private), key(public));
        let signing = Env::from_pairs([
            ("JWT_PRIVATE_KEY_FILE", private.as_str()),
            ("JWT_PUBLIC_KEY_FILE", public.as_str()),
        ]);
        let command = JwtKeys::from_env(&signing, environment, KeyUse::SignAndVerify).unwrap();
        let verifying = Env::from_pairs([("JWT_PUBLIC_KEY_FILE", public.as_str())]);
        let query = JwtKeys::from_env(&verifying, environment, KeyUse::VerifyOnly).unwrap();
        assert!(query.signer.is_none());
        let user = Uuid::new_v4();
        let token = command.signer.unwrap().issue(user).unwrap().token;
        assert_eq!(query.verifier.verify(&token).unwrap().sub, user);
    }
}

#[test]
fn production_refuses_rsa_keys_whose_implementation_is_not_constant_time() {
    let (private, public) = (key("rsa-private.pem"), key("rsa-public.pem"));
    let signing = Env::from_pairs([
        ("JWT_PRIVATE_KEY_FILE", private.as_str()),
        ("JWT_PUBLIC_KEY_FILE", public.as_str()),
    ]);
    let verifying = Env::from_pairs([("JWT_PUBLIC_KEY_FILE", public.as_str())]);
    for (env, usage) in [
        (&signing, KeyUse::SignAndVerify),
        (&verifying, KeyUse::VerifyOnly),
    ] {
        let err = JwtKeys::from_env(env, Environment::Production, usage)
            .err()
            .expect("production must refuse RSA");
        assert_eq!(err.name, "JWT_PUBLIC_KEY_FILE");
        assert!(err.to_string().contains("Ed25519"), "{err}");
    }
}

#[test]
fn algorithm_confusion_with_the_public_key_as_an_hmac_secret_is_rejected() {
    let public = key("rsa-public.pem");
    let env = Env::from_pairs([("JWT_PUBLIC_KEY_FILE", public.as_str())]);
    let query = JwtKeys::from_env(&env, Environment::Development, KeyUse::VerifyOnly).unwrap();
    let pem = std::fs::read(&public).unwrap();
    let forged = forge(
        claims(600),
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
    );
    assert!(query.verifier.verify(&forged).is_err());
}

#[test]
fn production_refuses_default_short_or_any_shared_secret() {
    for env in [
        Env::default(),
        Env::from_pairs([("JWT_SECRET", DEV_SECRET)]),
        Env::from_pairs([("JWT_SECRET", "short")]),
        Env::from_pairs([("JWT_SECRET", "a-long-enough-secret-of-at-least-32-bytes")]),
    ] {
        let err = JwtKeys::from_env(&env, Environment::Production, KeyUse::VerifyOnly)
            .err()
            .expect("production must refuse HS256");
        assert_eq!(err.name, "JWT_SECRET");
    }
}

#[test]
fn a_private_key_that_does_not_match_the_public_key_refuses_to_start() {
    let (private, public) = (key("other-ed25519-private.pem"), key("ed25519-public.pem"));
    let env = Env::from_pairs([
        ("JWT_PRIVATE_KEY_FILE", private.as_str()),
        ("JWT_PUBLIC_KEY_FILE", public.as_str()),
    ]);
    let err = JwtKeys::from_env(&env, Environment::Production, KeyUse::SignAndVerify)
        .err()
        .expect("mismatched keys must be refused");
    assert_eq!(err.name, "JWT_PRIVATE_KEY_FILE");

    let missing = Env::from_pairs([("JWT_PUBLIC_KEY_FILE", "/nonexistent.pem")]);
    assert!(JwtKeys::from_env(&missing, Environment::Production, KeyUse::VerifyOnly).is_err());
}
