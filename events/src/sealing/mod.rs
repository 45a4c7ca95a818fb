//! Crypto-shredding: the personal text of task events (title, description,
//! tags) is stored sealed under a data key of the task's owner, kept outside
//! the log and itself wrapped by a key-encryption key from configuration.
//! Destroying the data key (erasing the account) leaves every sealed payload
//! of that owner unreadable, in every copy of the log and every backup.
//!
//! The AEAD is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): its
//! 24-byte nonces are drawn at random with no risk of reuse under one key.
//! A sealed payload keeps its other fields in the clear (status, priority,
//! dates, ids: what counts and ordering need, and nothing personal) and moves
//! the personal ones into `"sealed": "<base64 nonce ‖ ciphertext>"`, bound
//! by the associated data to the owner and the event id, so a ciphertext
//! cannot be moved to another event or owner.

mod keyring;
mod store;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use keyring::{KeyRing, PgKeyRing};
pub use store::SealedStore;

/// `store` sealing and opening task payloads with the data keys kept in
/// `pool`'s accounts schema, wrapped by `kek`: how every service opens the log.
pub fn sealed(
    store: std::sync::Arc<dyn crate::EventStore>,
    pool: sqlx::PgPool,
    kek: KeyEncryptionKey,
) -> std::sync::Arc<dyn crate::EventStore> {
    std::sync::Arc::new(SealedStore::new(
        store,
        std::sync::Arc::new(PgKeyRing::new(pool, kek)),
    ))
}

/// The fields of a task event's payload that are personal text.
pub const PERSONAL_FIELDS: [&str; 3] = ["title", "description", "tags"];
/// The field a sealed payload carries its ciphertext in.
pub const SEALED: &str = "sealed";

const NONCE_BYTES: usize = 24;
const KEY_BYTES: usize = 32;
/// Domain separation between the two uses of the cipher.
const PAYLOAD_CONTEXT: &[u8] = b"tasklog-sealed-payload-v1\0";
const WRAP_CONTEXT: &[u8] = b"tasklog-data-key-v1\0";
const SECRET_CONTEXT: &[u8] = b"tasklog-webhook-secret-v1\0";
/// How a sealed secret starts where it is stored (a plain one never does:
/// webhook secrets start `whsec_`).
const SECRET_PREFIX: &str = "sealed:v1:";

/// A sealed payload that cannot be opened: its key is gone (the owner was
/// erased), or it does not authenticate (tampered, or another key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed payload is not base64 of a nonce and a ciphertext")]
    Malformed,
    #[error("the sealed payload does not authenticate under this key")]
    Unauthentic,
}

/// One owner's data key. Never printed.
#[derive(Clone)]
pub struct DataKey([u8; KEY_BYTES]);

/// The key-encryption key from configuration that wraps every data key.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; KEY_BYTES]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

fn seal_bytes(key: &[u8; KEY_BYTES], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let nonce: [u8; NONCE_BYTES] = rand::random();
    // Encryption fails only for messages beyond the cipher's 256 GiB limit.
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open_bytes(key: &[u8; KEY_BYTES], sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < NONCE_BYTES {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    XChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Unauthentic)
}

fn wrap_aad(owner: Uuid) -> Vec<u8> {
    [WRAP_CONTEXT, owner.as_bytes()].concat()
}

fn secret_aad(id: Uuid) -> Vec<u8> {
    [SECRET_CONTEXT, id.as_bytes()].concat()
}

fn payload_aad(owner: Uuid, event_id: Uuid) -> Vec<u8> {
    [PAYLOAD_CONTEXT, owner.as_bytes(), event_id.as_bytes()].concat()
}

impl DataKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(rand::random())
    }
}

impl KeyEncryptionKey {
    pub fn new(bytes: [u8; KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// `key` sealed for storage beside `owner`'s account.
    pub fn wrap(&self, owner: Uuid, key: &DataKey) -> Vec<u8> {
        seal_bytes(&self.0, &key.0, &wrap_aad(owner))
    }

    /// A secret the services must read back (a webhook's signing secret),
    /// sealed for storage and bound to `id` (what it belongs to), so a
    /// database dump alone does not give it away.
    pub fn seal_secret(&self, id: Uuid, secret: &str) -> String {
        let sealed = seal_bytes(&self.0, secret.as_bytes(), &secret_aad(id));
        format!("{SECRET_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// The secret `seal_secret` sealed for `id`; a stored value that is not
    /// sealed (written before secrets were) is returned as it is.
    ///
    /// # Errors
    /// When it was sealed under another key-encryption key or for another
    /// id, or was altered.
    pub fn open_secret(&self, id: Uuid, stored: &str) -> Result<String, SealError> {
        let Some(encoded) = stored.strip_prefix(SECRET_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let sealed = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
        let plain = open_bytes(&self.0, &sealed, &secret_aad(id))?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }

    /// Whether a stored secret is sealed.
    pub fn is_sealed_secret(stored: &str) -> bool {
        stored.starts_with(SECRET_PREFIX)
    }

    /// The data key `wrap` sealed for `owner`.
    ///
    /// # Errors
    /// When it was wrapped under another key-encryption key or for another
    /// owner, or was altered.
    pub fn unwrap(&self, owner: Uuid, wrapped: &[u8]) -> Result<DataKey, SealError> {
        let bytes = open_bytes(&self.0, wrapped, &wrap_aad(owner))?;
        <[u8; KEY_BYTES]>::try_from(bytes.as_slice())
            .map(DataKey)
            .map_err(|_| SealError::Malformed)
    }
}

/// Whether a stored payload is sealed (and so needs its owner's key).
pub fn is_sealed(data: &Value) -> bool {
    data.get(SEALED).is_some_and(Value::is_string)
}

/// Moves the personal fields of `data` into one sealed field, under `key`,
/// bound to `owner` and `event_id`. Every payload gets a sealed field, even
/// one without personal text, so reading any event of an owner needs that
/// owner's key: after an erasure nothing of theirs is readable.
pub fn seal(data: &mut Value, key: &DataKey, owner: Uuid, event_id: Uuid) {
    let Value::Object(fields) = data else {
        return;
    };
    let mut personal = Map::new();
    for name in PERSONAL_FIELDS {
        if let Some(value) = fields.remove(name) {
            personal.insert(name.to_owned(), value);
        }
    }
    // A map of JSON values always serialises.
    let plain = serde_json::to_vec(&personal).unwrap_or_default();
    let sealed = seal_bytes(&key.0, &plain, &payload_aad(owner, event_id));
    fields.insert(SEALED.to_owned(), Value::String(STANDARD.encode(sealed)));
}

/// The inverse of `seal`: the personal fields back in place.
///
/// # Errors
/// When the sealed field does not open under `key` for this owner and event;
/// `data` is left as it was.
pub fn open(data: &mut Value, key: &DataKey, owner: Uuid, event_id: Uuid) -> Result<(), SealError> {
    let Value::Object(fields) = data else {
        return Ok(());
    };
    let Some(Value::String(encoded)) = fields.get(SEALED) else {
        return Ok(());
    };
    let sealed = STANDARD.decode(encoded).map_err(|_| SealError::Malformed)?;
    let plain = open_bytes(&key.0, &sealed, &payload_aad(owner, event_id))?;
    let personal: Map<String, Value> =
        serde_json::from_slice(&plain).map_err(|_| SealError::Malformed)?;
    fields.remove(SEALED);
    fields.extend(personal);
    Ok(())
}

#[cfg(test)]
mod tests;
