//! A token bucket that allocates nothing and takes no lock: one `AtomicU64`, updated with
//! compare-and-swap, shared by every publisher of an agent.
//!
//! It is written as the generic cell rate algorithm (GCRA, as in ATM traffic policing and
//! Linux tc's token-bucket shapers' arithmetic): instead of a token count and a refill
//! time (two words that would have to change together), it keeps one number, the
//! *theoretical arrival time* `tat`: the time at which the bucket would be full again.
//! With `interval = 1 s / rate` and a bucket of `burst` tokens, an event at `now` passes
//! when `tat - now <= (burst - 1) x interval`, and then `tat = max(tat, now) + interval`.
//! That is exactly a bucket of `burst` tokens refilled at `rate` tokens per second, with
//! `credit = burst x interval - max(tat - now, 0)` (the unit tests check it step by step
//! against such a bucket).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::error::ConfigError;

/// A rate limit: `per_second` events per second on average, in bursts of at most `burst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    per_second: u64,
    burst: u64,
}

impl Rate {
    /// `per_second` events per second (`1..=1_000_000_000`), in bursts of at most
    /// `burst` (`>= 1`). The spacing is `1 s / per_second`, rounded down to a whole
    /// nanosecond.
    pub fn new(per_second: u64, burst: u64) -> Result<Self, ConfigError> {
        if per_second == 0 {
            return Err(ConfigError::Zero { what: "rate" });
        }
        if per_second > NANOS_PER_SECOND {
            return Err(ConfigError::TooLarge {
                what: "rate (events/s)",
                value: usize::try_from(per_second).unwrap_or(usize::MAX),
                max: NANOS_PER_SECOND as usize,
            });
        }
        if burst == 0 {
            return Err(ConfigError::Zero { what: "burst" });
        }
        Ok(Rate { per_second, burst })
    }

    /// Events per second.
    pub fn per_second(self) -> u64 {
        self.per_second
    }

    /// The largest burst.
    pub fn burst(self) -> u64 {
        self.burst
    }

    /// Nanoseconds between two events at the steady rate.
    pub(crate) fn interval_ns(self) -> u64 {
        NANOS_PER_SECOND / self.per_second
    }
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The shared state of one rate limit.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Theoretical arrival time, ns on the bus clock; 0 (or any time in the past): full.
    tat: AtomicU64,
    interval_ns: u64,
    /// How far `tat` may run ahead of `now`: `(burst - 1) x interval`.
    tolerance_ns: u64,
}

impl TokenBucket {
    /// A full bucket for `rate`.
    pub(crate) fn new(rate: Rate) -> Self {
        let interval_ns = rate.interval_ns();
        TokenBucket {
            tat: AtomicU64::new(0),
            interval_ns,
            tolerance_ns: (rate.burst - 1).saturating_mul(interval_ns),
        }
    }

    /// Takes one token at `now_ns`; false (nothing taken) if the bucket is empty.
    #[cfg(test)]
    pub(crate) fn try_take(&self, now_ns: u64) -> bool {
        self.take_up_to(now_ns, 1) == 1
    }

    /// Takes up to `n` tokens at `now_ns` (a publisher's lease, `lease.rs`); how many it
    /// got, 0 if the bucket is empty. Taking `k` at once is exactly `k` takes in a row at
    /// the same instant: the `i`-th of them passes when `tat + (i - 1) x interval - now
    /// <= tolerance`.
    pub(crate) fn take_up_to(&self, now_ns: u64, n: u64) -> u64 {
        // Relaxed: the bucket guards no other memory; CAS alone keeps takes exact.
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now_ns);
            let ahead = base - now_ns;
            if ahead > self.tolerance_ns {
                return 0;
            }
            let room = (self.tolerance_ns - ahead) / self.interval_ns + 1;
            let k = n.min(room);
            let next = base.saturating_add(k.saturating_mul(self.interval_ns));
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return k,
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back `n` tokens taken and not spent (a refused publish, a lease returned).
    /// A bucket that has refilled since stays full: `tat` in the past means full.
    pub(crate) fn give_back(&self, n: u64) {
        if n == 0 {
            return;
        }
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(n.saturating_mul(self.interval_ns)))
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook bucket, in nanosecond-tokens: `credit` refills one per nanosecond up
    /// to `burst x interval`; an event costs `interval`.
    struct Model {
        credit: u64,
        capacity: u64,
        interval: u64,
        last: u64,
    }

    impl Model {
        fn new(rate: Rate) -> Self {
            let interval = rate.interval_ns();
            Model {
                credit: rate.burst * interval,
                capacity: rate.burst * interval,
                interval,
                last: 0,
            }
        }
        fn try_take(&mut self, now: u64) -> bool {
            self.credit = (self.credit + (now - self.last)).min(self.capacity);
            self.last = now;
            if self.credit >= self.interval {
                self.credit -= self.interval;
                true
            } else {
                false
            }
        }
    }

    #[test]
    fn a_full_bucket_passes_a_burst_then_the_rate() {
        let rate = Rate::new(10, 3).unwrap();
        let b = TokenBucket::new(rate);
        let t0 = 5_000_000_000;
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0), "burst spent");
        assert!(!b.try_take(t0 + 99_999_999));
        assert!(b.try_take(t0 + 100_000_000), "one token per 100 ms");
        assert!(!b.try_take(t0 + 100_000_000));
    }

    #[test]
    fn a_token_given_back_can_be_taken_again() {
        let b = TokenBucket::new(Rate::new(1, 2).unwrap());
        let t = 10_000_000_000;
        assert!(b.try_take(t) && b.try_take(t) && !b.try_take(t));
        b.give_back(1);
        assert!(b.try_take(t));
        assert!(!b.try_take(t));
    }

    #[test]
    fn bad_rates_are_typed_errors() {
        assert_eq!(Rate::new(0, 1), Err(ConfigError::Zero { what: "rate" }));
        assert_eq!(Rate::new(1, 0), Err(ConfigError::Zero { what: "burst" }));
        assert!(matches!(
            Rate::new(NANOS_PER_SECOND + 1, 1),
            Err(ConfigError::TooLarge { .. })
        ));
        assert_eq!(Rate::new(NANOS_PER_SECOND, 1).unwrap().interval_ns(), 1);
    }

    #[test]
    fn concurrent_takers_never_get_more_than_the_burst() {
        let b = TokenBucket::new(Rate::new(1, 1000).unwrap());
        let taken: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..600).filter(|_| b.try_take(7)).count()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(taken, 1000);
    }

    proptest! {
        /// Taking `k` at once is `k` takes in a row at the same instant, and tokens
        /// given back can be taken again.
        #[test]
        fn take_up_to_is_takes_in_a_row(
            per_second in 1u64..2_000,
            burst in 1u64..300,
            steps in proptest::collection::vec((0u64..5_000_000, 1u64..40, 0u64..3), 1..100),
        ) {
            let rate = Rate::new(per_second, burst).unwrap();
            let batched = TokenBucket::new(rate);
            let single = TokenBucket::new(rate);
            let mut now = rate.burst * rate.interval_ns();
            for (step, k, back) in steps {
                now += step;
                let got = batched.take_up_to(now, k);
                let mut want = 0;
                while want < k && single.try_take(now) {
                    want += 1;
                }
                prop_assert_eq!(got, want);
                let back = back.min(got);
                batched.give_back(back);
                single.give_back(back);
            }
        }


        /// Every take agrees with the textbook bucket, for any rate, burst and
        /// non-decreasing times.
        #[test]
        fn matches_the_textbook_bucket(
            per_second in 1u64..2_000,
            burst in 1u64..20,
            steps in proptest::collection::vec(0u64..5_000_000, 1..200),
        ) {
            let rate = Rate::new(per_second, burst).unwrap();
            let bucket = TokenBucket::new(rate);
            let mut model = Model::new(rate);
            // Start well past 0 so the model's full bucket matches `tat = 0`.
            let mut now = rate.burst * rate.interval_ns();
            model.last = now;
            for step in steps {
                now += step;
                prop_assert_eq!(bucket.try_take(now), model.try_take(now), "at {}", now);
            }
        }
    }
}
