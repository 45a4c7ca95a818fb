//! Given a payload and keys, when sealed and opened, then: no personal text
//! stays readable, only the right key, owner and event open it, and a data
//! key unwraps only under its key-encryption key and owner.

use serde_json::json;

use super::*;

fn created() -> Value {
    json!({
        "task_id": "0190b5c8-0000-7000-8000-000000000001",
        "owner_id": "0190b5c8-0000-7000-8000-000000000002",
        "title": "Call the dentist",
        "description": "about the crown",
        "status": "todo",
        "priority": "high",
        "due_at": null,
        "tags": ["health", "private"],
        "occurred_at": "2026-12-06T09:00:00Z"
    })
}

#[test]
fn given_a_created_payload_when_sealed_then_no_personal_text_is_left_and_it_opens_back() {
    let (key, owner, event) = (DataKey::generate(), Uuid::now_v7(), Uuid::now_v7());
    let mut data = created();
    seal(&mut data, &key, owner, event);
    let stored = data.to_string();
    for secret in ["dentist", "crown", "health", "private", "title", "tags"] {
        assert!(!stored.contains(secret), "{secret} in {stored}");
    }
    assert!(is_sealed(&data));
    assert_eq!(data["status"], "todo", "what counts need stays readable");
    assert_eq!(data["priority"], "high");
    open(&mut data, &key, owner, event).unwrap();
    assert_eq!(data, created());
}

#[test]
fn given_the_same_payload_when_sealed_twice_then_the_ciphertexts_differ() {
    let (key, owner, event) = (DataKey::generate(), Uuid::now_v7(), Uuid::now_v7());
    let (mut a, mut b) = (created(), created());
    seal(&mut a, &key, owner, event);
    seal(&mut b, &key, owner, event);
    assert_ne!(a[SEALED], b[SEALED]);
}

#[test]
fn given_a_sealed_payload_when_opened_with_another_key_owner_or_event_then_it_stays_sealed() {
    let (key, owner, event) = (DataKey::generate(), Uuid::now_v7(), Uuid::now_v7());
    let mut data = created();
    seal(&mut data, &key, owner, event);
    let before = data.clone();
    for (k, o, e) in [
        (DataKey::generate(), owner, event),
        (key.clone(), Uuid::now_v7(), event),
        (key.clone(), owner, Uuid::now_v7()),
    ] {
        assert_eq!(open(&mut data, &k, o, e), Err(SealError::Unauthentic));
        assert_eq!(data, before, "a failed open changes nothing");
    }
    data[SEALED] = json!("not base64!");
    assert_eq!(
        open(&mut data, &key, owner, event),
        Err(SealError::Malformed)
    );
}

#[test]
fn given_a_payload_without_personal_text_when_sealed_then_it_still_needs_the_key() {
    let (key, owner, event) = (DataKey::generate(), Uuid::now_v7(), Uuid::now_v7());
    let plain = json!({"from": "todo", "to": "done", "occurred_at": "2026-12-06T09:00:00Z"});
    let mut data = plain.clone();
    seal(&mut data, &key, owner, event);
    assert!(is_sealed(&data));
    open(&mut data, &key, owner, event).unwrap();
    assert_eq!(data, plain);
}

#[test]
fn given_a_plaintext_payload_then_it_is_not_sealed_and_opening_leaves_it() {
    let mut data = created();
    assert!(!is_sealed(&data));
    open(
        &mut data,
        &DataKey::generate(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    )
    .unwrap();
    assert_eq!(data, created());
}

#[test]
fn given_a_wrapped_data_key_then_only_its_kek_and_owner_unwrap_it() {
    let kek = KeyEncryptionKey::new(rand::random());
    let (owner, key) = (Uuid::now_v7(), DataKey::generate());
    let wrapped = kek.wrap(owner, &key);
    assert_eq!(kek.unwrap(owner, &wrapped).unwrap().0, key.0);
    assert!(kek.unwrap(Uuid::now_v7(), &wrapped).is_err());
    assert!(
        KeyEncryptionKey::new(rand::random())
            .unwrap(owner, &wrapped)
            .is_err()
    );
    assert!(kek.unwrap(owner, &wrapped[..10]).is_err());
    assert_eq!(
        format!("{key:?} {kek:?}"),
        "DataKey(..) KeyEncryptionKey(..)"
    );
}

#[test]
fn given_a_secret_when_sealed_then_only_its_key_and_id_open_it_and_plain_ones_pass() {
    // Given a key-encryption key and a webhook's secret
    let kek = KeyEncryptionKey::new([7; 32]);
    let (id, other_id) = (Uuid::now_v7(), Uuid::now_v7());
    let secret = "whsec_0123456789abcdef";

    // When it is sealed for storage
    let stored = kek.seal_secret(id, secret);

    // Then the stored text does not hold it, and only the same key and id open it
    assert!(!stored.contains(secret) && KeyEncryptionKey::is_sealed_secret(&stored));
    assert_ne!(
        stored,
        kek.seal_secret(id, secret),
        "a fresh nonce each time"
    );
    assert_eq!(kek.open_secret(id, &stored).as_deref(), Ok(secret));
    assert_eq!(
        kek.open_secret(other_id, &stored),
        Err(SealError::Unauthentic)
    );
    assert_eq!(
        KeyEncryptionKey::new([8; 32]).open_secret(id, &stored),
        Err(SealError::Unauthentic)
    );
    assert_eq!(
        kek.open_secret(id, "sealed:v1:not base64!"),
        Err(SealError::Malformed)
    );
    // And a secret stored before secrets were sealed reads as it is
    assert_eq!(kek.open_secret(id, secret).as_deref(), Ok(secret));
    assert!(!KeyEncryptionKey::is_sealed_secret(secret));
}
