//! Per-connection allowances.

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
}
