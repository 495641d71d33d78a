//! The samples an alert instance's rule folds, with running aggregates: taking a sample costs
//! the same however many the window holds (a 1 m window of a series sent 20 times a second would
//! otherwise be summed whole, 1,200 samples, for every one).

use std::collections::VecDeque;

use app::alerts::Reducer;
use chrono::{DateTime, Utc};

/// Most samples one window holds (an hour of one a second); older ones make room.
pub const MAX_SAMPLES: usize = 3600;
/// Removals after which the running sum is summed afresh, so rounding cannot pile up.
const RESUM_EVERY: u32 = 4096;

type Sample = (DateTime<Utc>, f64);

pub struct Window {
    reducer: Reducer,
    /// In time order.
    samples: VecDeque<Sample>,
    /// Of the values, for `avg`.
    sum: f64,
    removed: u32,
    /// `min` or `max` of the values; none until asked for again after the extreme left.
    extreme: Option<f64>,
    /// The counter's increase from the first sample to the last, for `rate`; none until asked
    /// for again after a sample arrived out of order.
    increase: Option<f64>,
}

impl Window {
    pub fn new(reducer: Reducer) -> Self {
        Self {
            reducer,
            samples: VecDeque::new(),
            sum: 0.0,
            removed: 0,
            extreme: None,
            increase: Some(0.0),
        }
    }

    pub fn push(&mut self, ts: DateTime<Utc>, value: f64) {
        let in_order = self.samples.back().is_none_or(|(last, _)| *last <= ts);
        // Nearly always the newest; a late sample goes to its place.
        let at = match in_order {
            true => self.samples.len(),
            false => self.samples.partition_point(|(t, _)| *t <= ts),
        };
        // A sample given twice counts once: the leading node reads from the store what the bus
        // missed, which can hold a sample its own writer handed over already.
        let mut same_instant = self.samples.range(..at).rev().take_while(|(t, _)| *t == ts);
        if same_instant.any(|(_, v)| *v == value) {
            return;
        }
        if self.reducer == Reducer::Last {
            if in_order {
                self.samples.clear();
                self.samples.push_back((ts, value));
            }
            return;
        }
        if in_order {
            if let (Some(increase), Some((_, last))) = (self.increase, self.samples.back()) {
                self.increase = Some(increase + Reducer::counter_increase(*last, value));
            }
            self.samples.push_back((ts, value));
        } else {
            self.samples.insert(at, (ts, value));
            self.increase = None;
        }
        self.sum += value;
        self.extreme = match (self.samples.len(), self.extreme) {
            (1, _) => Some(value),
            (_, Some(extreme)) => Some(self.keep(extreme, value)),
            (_, None) => None,
        };
        if self.samples.len() > MAX_SAMPLES {
            self.pop_front();
        }
    }

    /// The value of the two that `min` or `max` keeps.
    fn keep(&self, a: f64, b: f64) -> f64 {
        match self.reducer {
            Reducer::Min => a.min(b),
            _ => a.max(b),
        }
    }

    fn pop_front(&mut self) {
        let Some((_, value)) = self.samples.pop_front() else {
            return;
        };
        if let (Some(increase), Some((_, next))) = (self.increase, self.samples.front()) {
            self.increase = Some(increase - Reducer::counter_increase(value, *next));
        }
        if self.extreme == Some(value) {
            self.extreme = None;
        }
        self.removed += 1;
        if self.samples.is_empty() {
            (self.sum, self.increase) = (0.0, Some(0.0));
        } else if self.removed.is_multiple_of(RESUM_EVERY) {
            self.sum = self.samples.iter().map(|(_, v)| v).sum();
        } else {
            self.sum -= value;
        }
    }

    /// Lets go of the samples older than `cutoff`.
    pub fn expire(&mut self, cutoff: DateTime<Utc>) {
        while self.samples.front().is_some_and(|(ts, _)| *ts < cutoff) {
            self.pop_front();
        }
    }

    /// The reducer's value of the window; none when it holds too few samples.
    pub fn value(&mut self) -> Option<f64> {
        let (first, last) = (*self.samples.front()?, *self.samples.back()?);
        let all = || self.samples.iter().copied();
        match self.reducer {
            Reducer::Last => Some(last.1),
            Reducer::Avg => Some(self.sum / self.samples.len() as f64),
            Reducer::Min | Reducer::Max => {
                let extreme = self.extreme.or_else(|| self.reducer.reduce(all()));
                self.extreme = extreme;
                extreme
            }
            Reducer::Rate => {
                let increase = self.increase.unwrap_or_else(|| {
                    let values = self.samples.iter().map(|(_, v)| *v);
                    values
                        .clone()
                        .zip(values.skip(1))
                        .map(|(a, b)| Reducer::counter_increase(a, b))
                        .sum()
                });
                self.increase = Some(increase);
                let secs = (last.0 - first.0).as_seconds_f64();
                (secs > 0.0).then(|| increase / secs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn a_sample_given_twice_counts_once_even_late() {
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let mut window = Window::new(Reducer::Avg);
        for (ts, value) in [
            (1, 10.0),
            (2, 20.0),
            (2, 20.0),
            (3, 60.0),
            (2, 20.0),
            (1, 10.0),
        ] {
            window.push(at(ts), value);
        }
        assert_eq!(window.samples.len(), 3);
        assert_eq!(window.value(), Some(30.0));
        // The same instant with another value is another sample.
        window.push(at(2), 50.0);
        assert_eq!(window.value(), Some(35.0));
    }

    #[test]
    fn running_aggregates_equal_folding_the_whole_window_through_late_samples_and_expiry() {
        let mut rng = StdRng::seed_from_u64(7);
        for reducer in [
            Reducer::Last,
            Reducer::Avg,
            Reducer::Min,
            Reducer::Max,
            Reducer::Rate,
        ] {
            let mut window = Window::new(reducer);
            let mut now = 0i64;
            for step in 0..20_000 {
                now += rng.random_range(0..3);
                // One sample in ten is late, by up to 20 s.
                let late = if rng.random_range(0..10) == 0 {
                    rng.random_range(0..20)
                } else {
                    0
                };
                let ts = DateTime::from_timestamp(now - late, 0).unwrap();
                let value = rng.random_range(-100.0..100.0f64).round();
                window.push(ts, value);
                window.expire(DateTime::from_timestamp(now - 60, 0).unwrap());
                let expected = reducer.reduce(window.samples.iter().copied());
                let got = window.value();
                match (got, expected) {
                    (Some(got), Some(expected)) => assert!(
                        (got - expected).abs() < 1e-6 * expected.abs().max(1.0),
                        "{reducer:?} at step {step}: {got} != {expected}"
                    ),
                    _ => assert_eq!(got, expected, "{reducer:?} at step {step}"),
                }
            }
        }
    }

    #[test]
    fn a_window_holds_at_most_its_share_of_samples() {
        let mut window = Window::new(Reducer::Avg);
        for i in 0..MAX_SAMPLES as i64 + 10 {
            window.push(DateTime::from_timestamp(i, 0).unwrap(), 1.0);
        }
        assert_eq!(window.samples.len(), MAX_SAMPLES);
        assert_eq!(window.value(), Some(1.0));
    }
}
