//! Secrets handed to clients (session ids, API tokens) and the digests kept of them.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// What every API token starts with, so a leaked one is recognisable (and scannable).
pub const TOKEN_PREFIX: &str = "wr_";

/// 256 random bits from the operating system's generator, as hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new API token: the prefix and a secret.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", new_secret())
}

/// The digest stored in place of a secret. SHA-256 suffices: the secrets are random, not chosen.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_only_their_digest_identifies_them() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest(&a).len(), 32);
    }
}
