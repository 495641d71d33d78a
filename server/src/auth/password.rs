//! Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), run on the
//! blocking pool a few at a time, so a thousand logins at once queue instead of stalling pages.

use std::sync::Arc;

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Hashes computed at once: each takes ~19 MiB and tens of milliseconds of one core.
const CONCURRENT: usize = 4;

/// Verified against when no account has the name given, so a login for a name that does not
/// exist takes as long as one with a wrong password.
const NOBODY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Y2Lc2XaV5eMrImIcQhkJz1y8s4qGGMNUvJsOVGdyo6Q";

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(CONCURRENT)),
        }
    }
}

impl Passwords {
    pub async fn hash(&self, password: String) -> Result<String> {
        self.off_runtime(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| Error::bad_request(format!("the password cannot be hashed: {e}")))
        })
        .await
    }

    /// Whether `password` is the one `hash` was made from; with no hash, it is checked against a
    /// stand-in and fails, in the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool> {
        self.off_runtime(move || {
            let known = hash.is_some();
            let hash = hash.unwrap_or_else(|| NOBODY.to_owned());
            let matches = PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            });
            Ok(known && matches)
        })
        .await
    }

    async fn off_runtime<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Error::Unavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_own_hash_only() {
        let passwords = Passwords::default();
        let hash = passwords.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            passwords
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
        assert!(
            PasswordHash::new(NOBODY).is_ok(),
            "the stand-in costs a whole verification"
        );
    }
}
