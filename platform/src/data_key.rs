//! The key-encryption key (`DATA_KEY_ENCRYPTION_KEY` or `..._FILE`): 32
//! random bytes, base64, that wrap every account's data key
//! (`tasklog_events::sealing`). Every service that reads or writes task text
//! needs the same one. Losing it loses every task's text; leaking it with a
//! database copy exposes every account not yet erased.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{ConfigError, Env, Environment};

const VAR: &str = "DATA_KEY_ENCRYPTION_KEY";
const FILE_VAR: &str = "DATA_KEY_ENCRYPTION_KEY_FILE";

/// The development key, used when neither variable is set and
/// `TASKLOG_ENV=development`; refused in production.
pub const DEV_KEY: [u8; 32] = *b"tasklog-dev-kek-not-for-producti";

/// The configured key's bytes. Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyEncryptionKey(pub [u8; 32]);

impl fmt::Debug for DataKeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKeyEncryptionKey(..)")
    }
}

impl DataKeyEncryptionKey {
    /// Reads the key from `DATA_KEY_ENCRYPTION_KEY` (base64) or the file
    /// `DATA_KEY_ENCRYPTION_KEY_FILE` names (base64, surrounding whitespace
    /// ignored); neither set: the development key, in development only.
    ///
    /// # Errors
    /// Both set, an unreadable file, not base64 of 32 bytes, or (production)
    /// unset or the development key.
    pub fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let (name, encoded) = match (env.get(VAR), env.get(FILE_VAR)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    VAR,
                    format!("set it or {FILE_VAR}, not both"),
                ));
            }
            (Some(value), None) => (VAR, value.to_owned()),
            (None, Some(path)) => (
                FILE_VAR,
                std::fs::read_to_string(path.trim())
                    .map_err(|e| ConfigError::new(FILE_VAR, format!("cannot read {path}: {e}")))?,
            ),
            (None, None) if environment == Environment::Development => return Ok(Self(DEV_KEY)),
            (None, None) => {
                return Err(ConfigError::new(
                    VAR,
                    format!(
                        "required outside development (or {FILE_VAR}): 32 random bytes in base64, \
                         e.g. `head -c 32 /dev/urandom | base64`"
                    ),
                ));
            }
        };
        let bytes = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| ConfigError::new(name, "must be base64 of exactly 32 bytes"))?;
        if bytes == DEV_KEY && environment == Environment::Production {
            return Err(ConfigError::new(
                name,
                "is the development key, refused in production",
            ));
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)], environment: Environment) -> Result<[u8; 32], String> {
        DataKeyEncryptionKey::from_env(&Env::from_pairs(pairs.iter().copied()), environment)
            .map(|k| k.0)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_key_comes_from_the_variable_or_its_file_and_the_dev_key_only_in_development() {
        let key = [7u8; 32];
        let encoded = STANDARD.encode(key);
        assert_eq!(read(&[(VAR, &encoded)], Environment::Production), Ok(key));
        let file = std::env::temp_dir().join(format!("kek-{}", uuid::Uuid::new_v4()));
        std::fs::write(&file, format!("{encoded}\n")).unwrap();
        let path = file.to_string_lossy().into_owned();
        assert_eq!(read(&[(FILE_VAR, &path)], Environment::Production), Ok(key));
        let _ = std::fs::remove_file(&file);
        assert_eq!(read(&[], Environment::Development), Ok(DEV_KEY));
        assert!(
            read(&[], Environment::Production)
                .unwrap_err()
                .contains("required")
        );
        let dev = STANDARD.encode(DEV_KEY);
        assert!(
            read(&[(VAR, &dev)], Environment::Production)
                .unwrap_err()
                .contains("development key")
        );
    }

    #[test]
    fn a_bad_key_is_refused_naming_the_variable() {
        for bad in ["not base64!", "AAAA", &STANDARD.encode([1u8; 31])] {
            let e = read(&[(VAR, bad)], Environment::Development).unwrap_err();
            assert!(e.starts_with(VAR), "{e}");
        }
        let e = read(&[(VAR, "x"), (FILE_VAR, "/y")], Environment::Development).unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = read(&[(FILE_VAR, "/nonexistent/kek")], Environment::Development).unwrap_err();
        assert!(e.starts_with(FILE_VAR), "{e}");
        assert_eq!(
            format!("{:?}", DataKeyEncryptionKey([1; 32])),
            "DataKeyEncryptionKey(..)"
        );
    }
}
