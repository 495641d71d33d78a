//! Allowances: a token bucket, and one per key (a session, a token) shared by all its requests
//! and sockets.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

use tokio::time::Instant;

/// Allows `rate` actions per second on average and up to `burst` at once.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Whether the bucket has refilled to its burst since it was last drawn on.
    fn is_full(&self) -> bool {
        self.tokens + self.updated.elapsed().as_secs_f64() * self.rate >= self.burst
    }

    /// Takes one token if there is one.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.updated).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Keys kept at most; past it, those whose bucket has refilled (as good as new) are dropped.
const MAX_KEYS: usize = 10_000;

/// One [`TokenBucket`] per key, all with the same rate and burst.
#[derive(Clone)]
pub struct Allowances<K> {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<K, TokenBucket>>>,
}

impl<K: Eq + Hash + Clone> Allowances<K> {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Arc::default(),
        }
    }

    /// Takes one action from `key`'s allowance if it has one left.
    pub fn take(&self, key: &K) -> bool {
        // Only whole updates happen under this lock: a poisoned map is intact.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| !bucket.is_full());
        }
        buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bursts_are_allowed_then_the_rate_refills() {
        let mut bucket = TokenBucket::new(10.0, 3.0);
        assert_eq!((0..5).filter(|_| bucket.take()).count(), 3);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!((0..5).filter(|_| bucket.take()).count(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn each_key_draws_on_its_own_allowance() {
        let allowances = Allowances::new(1.0, 2.0);
        assert_eq!((0..3).filter(|_| allowances.take(&"a")).count(), 2);
        assert!(
            allowances.take(&"b"),
            "another key is not held back by the first"
        );
    }
}
