//! Failed attempts counted per key (an account, an address) over a window: past the allowance,
//! more attempts are refused until the window has passed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Keys kept at most; past it, expired ones are dropped first.
const MAX_KEYS: usize = 100_000;

#[derive(Clone)]
pub struct Throttle {
    allowed: u32,
    window: Duration,
    failures: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
}

impl Throttle {
    pub fn new(allowed: u32, window: Duration) -> Self {
        Self {
            allowed,
            window,
            failures: Arc::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        // Only whole inserts and removals happen under this lock: a poisoned map is intact.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` has used up its allowance of failures in the current window.
    pub fn is_blocked(&self, key: &str) -> bool {
        self.failures()
            .get(key)
            .is_some_and(|(count, since)| *count >= self.allowed && since.elapsed() < self.window)
    }

    /// Counts an attempt for `key` before its outcome is known, if its allowance has room: a
    /// burst of concurrent attempts cannot all pass a check made before any of them failed.
    /// Returns whether the attempt may go ahead.
    pub fn reserve(&self, key: &str) -> bool {
        if self.is_blocked(key) {
            return false;
        }
        self.fail(key);
        true
    }

    pub fn fail(&self, key: &str) {
        let mut failures = self.failures();
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn forget(&self, key: &str) {
        self.failures().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_its_allowance_and_others_are_not() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(!throttle.is_blocked("ops"));
            throttle.fail("ops");
        }
        assert!(throttle.is_blocked("ops"));
        assert!(!throttle.is_blocked("dev"));
        throttle.forget("ops");
        assert!(!throttle.is_blocked("ops"));
    }

    #[test]
    fn attempts_reserved_up_front_cannot_overrun_the_allowance_together() {
        let throttle = Throttle::new(3, Duration::from_secs(60));
        let passed = (0..10).filter(|_| throttle.reserve("ops")).count();
        assert_eq!(passed, 3);
    }
}
