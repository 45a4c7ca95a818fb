//! Argon2id password hashing on the blocking pool, a few at a time: each hash
//! holds a core and 19 MiB for tens of milliseconds, so unbounded logins would
//! starve every other request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// OWASP's Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Longest wait for a hashing slot before the request is a 503 instead of a
/// queue that grows without end.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("every password hashing slot stayed busy for {QUEUE_TIMEOUT:?}")]
    Busy,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
pub struct Passwords {
    slots: Arc<Semaphore>,
    /// Verified against when the email is unknown, so a bad login costs the
    /// same whether or not the account exists.
    dummy_hash: Arc<str>,
    /// Argon2 verifications run to their end, so tests can see that an
    /// unknown email costs one as well.
    verifications: Arc<AtomicU64>,
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::Hash(e.to_string()))?;
    // The parameters come from the stored hash, so raising them later still
    // verifies old hashes.
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

impl Passwords {
    /// Prepares the dummy hash with the real parameters.
    ///
    /// # Errors
    /// When hashing fails, which only broken parameters could cause.
    pub async fn new(concurrency: usize) -> Result<Self, PasswordError> {
        let random: [u8; 16] = rand::random();
        let dummy =
            tokio::task::spawn_blocking(move || hash_blocking(&String::from_utf8_lossy(&random)))
                .await??;
        Ok(Self {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy.into(),
            verifications: Arc::default(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let slot = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PasswordError::Busy)?
            .map_err(|_| PasswordError::Busy)?;
        // The slot goes with the job, not with this future: a request that
        // times out or whose client leaves drops the future, but the blocking
        // hash runs on to its end and still holds its core and 19 MiB.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            job()
        })
        .await?
    }

    /// # Errors
    /// `Busy` when the hashing slots stay taken.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        self.run(move || hash_blocking(password.expose_secret()))
            .await
    }

    /// Checks a password against a stored hash, or against the dummy hash when
    /// there is none (unknown email), which always answers false.
    ///
    /// # Errors
    /// `Busy` when the hashing slots stay taken.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let counter = self.verifications.clone();
        let matches = self
            .run(move || {
                let matches = verify_blocking(password.expose_secret(), &hash);
                counter.fetch_add(1, Ordering::Relaxed);
                matches
            })
            .await?;
        Ok(known && matches)
    }

    /// How many Argon2 verifications this hasher has run.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(1).await.unwrap();
        let hash = passwords
            .hash(SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let ok = passwords
            .verify(SecretString::from("correct horse"), Some(hash.clone()))
            .await
            .unwrap();
        let wrong = passwords
            .verify(SecretString::from("wrong horse"), Some(hash))
            .await
            .unwrap();
        assert!(ok && !wrong);
    }

    /// A caller of `run` as its own task, so the test can abort it.
    fn spawn_job(
        passwords: &Passwords,
        job: impl FnOnce() -> Result<(), PasswordError> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<(), PasswordError>> {
        let passwords = passwords.clone();
        tokio::spawn(async move { passwords.run(job).await })
    }

    #[tokio::test]
    async fn a_hash_whose_caller_left_keeps_its_slot_until_it_ends() {
        use std::sync::mpsc;
        let passwords = Passwords::new(1).await.unwrap();
        // Given a job that holds the only slot, and whose caller gives up.
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = spawn_job(&passwords, move || {
            started_tx.send(()).unwrap();
            release_rx.recv().ok();
            Ok(())
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        // When a second job asks for a slot.
        let (second_tx, mut second_rx) = tokio::sync::oneshot::channel();
        let second = spawn_job(&passwords, move || {
            second_tx.send(()).ok();
            Ok(())
        });
        // Then it waits while the first one still runs...
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(second_rx.try_recv().is_err(), "ran beside the first job");
        // ...and runs once the first one ends.
        release_tx.send(()).unwrap();
        second.await.unwrap().unwrap();
        assert!(second_rx.try_recv().is_ok());
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let passwords = Passwords::new(1).await.unwrap();
        let got = passwords
            .verify(SecretString::from("anything"), None)
            .await
            .unwrap();
        assert!(!got);
    }
}
