//! Retry backoff: how long to wait before retry number `n`.
//!
//! Pure computation: no clock, no sleeping, no allocation. Randomness comes
//! from a caller-supplied [`fastrand::Rng`], so a seeded generator gives a
//! deterministic sequence (as the tests do).
//!
//! The un-jittered delay of retry `attempt` (1 = first retry) is
//!
//! ```text
//! exp(attempt) = min(cap, base * multiplier^(attempt - 1))
//! ```
//!
//! and [`Jitter`] spreads it out as in the AWS Architecture Blog article
//! "Exponential Backoff And Jitter" (Marc Brooker, 2015). Every delay is at
//! most `cap`.
//!
//! Arithmetic is in integer nanoseconds (`u64`, so about 584 years; longer
//! durations act as that), saturating: any `attempt` up to `u32::MAX` and any
//! multiplier just reach `cap`, never overflow or panic. Integral multipliers
//! (such as the usual `2.0`) are computed exactly with integer powers;
//! fractional ones go through `f64` and are rounded down.
//!
//! The fields of [`RetryPolicy`] are public. [`RetryPolicy::builder`] and
//! [`RetryPolicy::validate`] reject nonsensical values, but a policy built by
//! hand still never panics: a multiplier that is NaN or below 1.0 acts as
//! 1.0, `+inf` reaches `cap` from the second retry on, a `base` above `cap`
//! acts as `cap`, and a zero `cap` gives zero delays.

use std::fmt;
use std::time::Duration;

/// How a delay is randomised around the exponential curve.
///
/// `exp` below is `min(cap, base * multiplier^(attempt - 1))`; `random(a, b)`
/// is uniform over the nanoseconds `a..=b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: `delay = exp`.
    None,
    /// "Full jitter": `delay = random(0, exp)`.
    Full,
    /// "Equal jitter": `delay = exp / 2 + random(0, exp - exp / 2)`, so in
    /// `[exp / 2, exp]` (the half rounded down).
    Equal,
    /// "Decorrelated jitter": `delay = min(cap, random(base, max(previous, base) * 3))`,
    /// so in `[base, min(cap, 3 * max(previous, base))]`. It ignores `attempt`
    /// and `multiplier`; `previous` is the delay returned last time
    /// (`Duration::ZERO` the first time, which acts as `base`, as in the
    /// article's `sleep = base` start).
    Decorrelated,
}

/// When and how often to retry. See the [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total number of attempts allowed, the first one included (so
    /// `max_attempts - 1` retries). At least 1 in a valid policy.
    pub max_attempts: u32,
    /// The delay of the first retry before jitter. At most `cap` in a valid
    /// policy.
    pub base: Duration,
    /// Growth factor per retry. Finite and at least 1.0 in a valid policy.
    pub multiplier: f64,
    /// The upper bound of every delay, overrides included. Non-zero in a
    /// valid policy.
    pub cap: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    /// 5 attempts, base 1 ms, multiplier 2.0, cap 1 s, full jitter.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(1),
            multiplier: 2.0,
            cap: Duration::from_secs(1),
            jitter: Jitter::Full,
        }
    }
}

/// Why a [`RetryPolicy`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidPolicy {
    /// `max_attempts` is 0: not even the first attempt would be allowed.
    ZeroAttempts,
    /// `multiplier` is below 1.0, NaN or infinite.
    BadMultiplier,
    /// `base` is greater than `cap`.
    BaseAboveCap,
    /// `cap` is zero.
    ZeroCap,
}

impl fmt::Display for InvalidPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroAttempts => "retry policy allows zero attempts",
            Self::BadMultiplier => "retry multiplier must be finite and at least 1.0",
            Self::BaseAboveCap => "retry base delay is above the cap",
            Self::ZeroCap => "retry delay cap is zero",
        })
    }
}

impl std::error::Error for InvalidPolicy {}

/// Builds a validated [`RetryPolicy`], starting from [`RetryPolicy::default`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RetryPolicyBuilder {
    /// The policy so far; validated only by [`build`](Self::build).
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// Sets [`RetryPolicy::max_attempts`].
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.policy.max_attempts = max_attempts;
        self
    }

    /// Sets [`RetryPolicy::base`].
    pub fn base(mut self, base: Duration) -> Self {
        self.policy.base = base;
        self
    }

    /// Sets [`RetryPolicy::multiplier`].
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// Sets [`RetryPolicy::cap`].
    pub fn cap(mut self, cap: Duration) -> Self {
        self.policy.cap = cap;
        self
    }

    /// Sets [`RetryPolicy::jitter`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// The policy, if [`RetryPolicy::validate`] accepts it.
    pub fn build(self) -> Result<RetryPolicy, InvalidPolicy> {
        self.policy.validate().map(|()| self.policy)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (~584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl RetryPolicy {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// Checks the fields, in this order: `max_attempts` non-zero, `multiplier`
    /// finite and `>= 1.0`, `cap` non-zero, `base <= cap`.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        if self.max_attempts == 0 {
            Err(InvalidPolicy::ZeroAttempts)
        } else if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            Err(InvalidPolicy::BadMultiplier)
        } else if self.cap.is_zero() {
            Err(InvalidPolicy::ZeroCap)
        } else if self.base > self.cap {
            Err(InvalidPolicy::BaseAboveCap)
        } else {
            Ok(())
        }
    }

    /// The un-jittered delay of retry `attempt` (1 = first retry; 0 is
    /// treated as 1): `min(cap, base * multiplier^(attempt - 1))`.
    /// Non-decreasing in `attempt`.
    pub fn exponential(&self, attempt: u32) -> Duration {
        let cap = nanos(self.cap);
        Duration::from_nanos(self.exponential_nanos(attempt, nanos(self.base).min(cap), cap))
    }

    /// Delay before retry number `attempt` (1 = first retry; 0 is treated as
    /// 1), never above `cap`. `previous` is the delay returned for the
    /// previous retry, used by [`Jitter::Decorrelated`] (pass
    /// `Duration::ZERO` the first time). See [`Jitter`] for each formula.
    pub fn delay(&self, attempt: u32, previous: Duration, rng: &mut fastrand::Rng) -> Duration {
        let cap = nanos(self.cap);
        let base = nanos(self.base).min(cap);
        let nanos = match self.jitter {
            Jitter::None => self.exponential_nanos(attempt, base, cap),
            Jitter::Full => rng.u64(0..=self.exponential_nanos(attempt, base, cap)),
            Jitter::Equal => {
                let exp = self.exponential_nanos(attempt, base, cap);
                let half = exp / 2;
                half + rng.u64(0..=exp - half)
            }
            Jitter::Decorrelated => {
                // `base <= cap` and `base <= 3 * max(previous, base)`, so the
                // range is never empty.
                let high = nanos(previous).max(base).saturating_mul(3).min(cap);
                rng.u64(base..=high)
            }
        };
        Duration::from_nanos(nanos)
    }

    /// The delay honouring a handler's override: `Some(d)` gives
    /// `min(d, cap)` (no jitter, the RNG untouched); `None` gives
    /// [`delay`](Self::delay).
    pub fn delay_with_override(
        &self,
        attempt: u32,
        previous: Duration,
        requested: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Duration {
        match requested {
            Some(requested) => requested.min(self.cap),
            None => self.delay(attempt, previous, rng),
        }
    }

    /// Whether another attempt is allowed after `attempts` attempts were made
    /// (the first attempt counts): `attempts < max_attempts`.
    pub fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }

    /// `min(cap, base * multiplier^(attempt - 1))` in nanoseconds, given
    /// `base <= cap`. Saturates instead of overflowing.
    fn exponential_nanos(&self, attempt: u32, base: u64, cap: u64) -> u64 {
        let exponent = attempt.saturating_sub(1);
        let multiplier = self.multiplier;
        // NaN and shrinking multipliers act as 1.0: the delay stays at base.
        if base == 0 || exponent == 0 || multiplier.is_nan() || multiplier <= 1.0 {
            return base;
        }
        // 2^64 as f64: integral multipliers below it convert exactly.
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        if multiplier.fract() == 0.0 && multiplier < TWO_POW_64 {
            // Exact: base * m^k in u128; `checked_pow` squares, so it gives
            // up after O(log k) steps once the power passes u128::MAX.
            let power = u128::from(multiplier as u64).checked_pow(exponent);
            return match power.and_then(|p| u128::from(base).checked_mul(p)) {
                Some(product) => u64::try_from(product.min(u128::from(cap))).unwrap_or(cap),
                None => cap,
            };
        }
        // Fractional (or +inf) multiplier. `powf` of a large exponent is
        // +inf, which reaches the cap like any large product.
        let product = base as f64 * multiplier.powf(f64::from(exponent));
        if product.is_nan() || product >= cap as f64 {
            return cap;
        }
        // `as` truncates (rounds down) and saturates.
        (product as u64).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy::builder()
            .max_attempts(10)
            .base(MS)
            .multiplier(2.0)
            .cap(Duration::from_millis(100))
            .jitter(jitter)
            .build()
            .unwrap()
    }

    fn sequence(policy: &RetryPolicy, seed: u64, n: u32) -> Vec<Duration> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut previous = Duration::ZERO;
        (1..=n)
            .map(|attempt| {
                previous = policy.delay(attempt, previous, &mut rng);
                previous
            })
            .collect()
    }

    #[test]
    fn no_jitter_doubles_from_base_and_stops_at_the_cap() {
        let ms: Vec<u64> = sequence(&policy(Jitter::None), 0, 10)
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(ms, vec![1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
    }

    #[test]
    fn attempt_zero_acts_as_the_first_retry() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(p.delay(0, Duration::ZERO, &mut rng), MS);
        assert_eq!(p.exponential(0), MS);
    }

    #[test]
    fn fractional_multiplier_rounds_down_in_nanoseconds() {
        let p = RetryPolicy {
            multiplier: 1.5,
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        assert_eq!(p.exponential(1), Duration::from_micros(1000));
        assert_eq!(p.exponential(2), Duration::from_micros(1500));
        assert_eq!(p.exponential(3), Duration::from_micros(2250));
        assert_eq!(p.exponential(u32::MAX), p.cap);
    }

    #[test]
    fn each_jitter_stays_within_its_bounds_for_a_fixed_seed() {
        for seed in 0..50 {
            let full = sequence(&policy(Jitter::Full), seed, 10);
            let equal = sequence(&policy(Jitter::Equal), seed, 10);
            for (i, (f, e)) in full.iter().zip(&equal).enumerate() {
                let exp = policy(Jitter::None).exponential(i as u32 + 1);
                assert!(*f <= exp);
                assert!(*e >= exp / 2 && *e <= exp);
            }
            let p = policy(Jitter::Decorrelated);
            let mut previous = Duration::ZERO;
            for d in sequence(&p, seed, 10) {
                assert!(d >= p.base && d <= p.cap.min(previous.max(p.base) * 3));
                previous = d;
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let p = policy(jitter);
            assert_eq!(sequence(&p, 42, 20), sequence(&p, 42, 20));
            assert_ne!(sequence(&p, 42, 20), sequence(&p, 43, 20));
        }
    }

    #[test]
    fn override_is_capped_and_none_falls_back_to_delay() {
        let p = policy(Jitter::None);
        let mut rng = fastrand::Rng::with_seed(3);
        let long = Some(Duration::from_secs(60));
        assert_eq!(
            p.delay_with_override(1, Duration::ZERO, long, &mut rng),
            p.cap
        );
        assert_eq!(
            p.delay_with_override(9, Duration::ZERO, Some(MS * 3), &mut rng),
            MS * 3
        );
        assert_eq!(
            p.delay_with_override(3, Duration::ZERO, None, &mut rng),
            MS * 4
        );
    }

    #[test]
    fn allows_another_counts_the_first_attempt() {
        let p = RetryPolicy::default();
        assert!(p.allows_another(0));
        assert!(p.allows_another(4));
        assert!(!p.allows_another(5));
        assert!(!p.allows_another(u32::MAX));
    }

    #[test]
    fn builder_rejects_each_invalid_field() {
        let b = RetryPolicy::builder;
        assert_eq!(
            b().max_attempts(0).build(),
            Err(InvalidPolicy::ZeroAttempts)
        );
        assert_eq!(
            b().multiplier(0.5).build(),
            Err(InvalidPolicy::BadMultiplier)
        );
        assert_eq!(
            b().multiplier(f64::NAN).build(),
            Err(InvalidPolicy::BadMultiplier)
        );
        assert_eq!(
            b().multiplier(f64::INFINITY).build(),
            Err(InvalidPolicy::BadMultiplier)
        );
        assert_eq!(b().cap(Duration::ZERO).build(), Err(InvalidPolicy::ZeroCap));
        assert_eq!(
            b().base(Duration::from_secs(2))
                .cap(Duration::from_secs(1))
                .build(),
            Err(InvalidPolicy::BaseAboveCap)
        );
        assert_eq!(b().build(), Ok(RetryPolicy::default()));
        assert_eq!(
            b().multiplier(1.0)
                .base(Duration::ZERO)
                .build()
                .map(|p| p.base),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            InvalidPolicy::ZeroCap.to_string(),
            "retry delay cap is zero"
        );
    }

    #[test]
    fn extreme_attempts_and_multipliers_saturate_to_the_cap() {
        let mut rng = fastrand::Rng::with_seed(9);
        for multiplier in [1.0, 1.0001, 2.0, 10.0, 1e300, f64::MAX, f64::INFINITY] {
            let p = RetryPolicy {
                multiplier,
                jitter: Jitter::None,
                cap: Duration::MAX,
                ..RetryPolicy::default()
            };
            for attempt in [1, 2, 64, 1000, u32::MAX] {
                assert!(p.delay(attempt, Duration::MAX, &mut rng) <= p.cap);
            }
            // A cap beyond u64 nanoseconds acts as u64::MAX nanoseconds.
            let top = if multiplier > 1.0 {
                Duration::from_nanos(u64::MAX)
            } else {
                MS
            };
            assert_eq!(p.exponential(u32::MAX), top);
        }
    }

    #[test]
    fn a_hand_built_invalid_policy_never_panics() {
        let mut rng = fastrand::Rng::with_seed(5);
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            for (base, cap, multiplier) in [
                (Duration::from_secs(5), Duration::from_secs(1), 2.0),
                (MS, Duration::ZERO, 2.0),
                (MS, Duration::from_secs(1), f64::NAN),
                (MS, Duration::from_secs(1), -3.0),
                (Duration::MAX, Duration::MAX, f64::NEG_INFINITY),
            ] {
                let p = RetryPolicy {
                    max_attempts: 0,
                    base,
                    multiplier,
                    cap,
                    jitter,
                };
                for attempt in [0, 1, 2, 50, u32::MAX] {
                    let d = p.delay(attempt, Duration::MAX, &mut rng);
                    assert!(d <= cap);
                }
                assert!(!p.allows_another(0));
            }
        }
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    fn valid_policy() -> impl Strategy<Value = RetryPolicy> {
        (
            1u32..20,
            0u64..1 << 40,
            prop_oneof![1.0f64..4.0, Just(2.0), 1.0f64..1e6],
            1u64..u64::MAX,
            jitter(),
        )
            .prop_map(
                |(max_attempts, base, multiplier, cap, jitter)| RetryPolicy {
                    max_attempts,
                    base: Duration::from_nanos(base.min(cap)),
                    multiplier,
                    cap: Duration::from_nanos(cap),
                    jitter,
                },
            )
    }

    proptest! {
        #[test]
        fn delay_never_exceeds_the_cap(
            p in valid_policy(),
            attempt in any::<u32>(),
            previous in any::<u64>(),
            seed in any::<u64>(),
        ) {
            prop_assert!(p.validate().is_ok());
            let mut rng = fastrand::Rng::with_seed(seed);
            prop_assert!(p.delay(attempt, Duration::from_nanos(previous), &mut rng) <= p.cap);
        }

        #[test]
        fn no_jitter_is_non_decreasing_in_attempt(p in valid_policy(), attempt in 0u32..u32::MAX) {
            let p = RetryPolicy { jitter: Jitter::None, ..p };
            let mut rng = fastrand::Rng::with_seed(0);
            let now = p.delay(attempt, Duration::ZERO, &mut rng);
            let next = p.delay(attempt + 1, Duration::ZERO, &mut rng);
            prop_assert!(now <= next, "{:?} > {:?}", now, next);
            prop_assert_eq!(now, p.exponential(attempt));
        }

        #[test]
        fn full_jitter_is_within_zero_and_exp(p in valid_policy(), attempt in any::<u32>(), seed in any::<u64>()) {
            let p = RetryPolicy { jitter: Jitter::Full, ..p };
            let d = p.delay(attempt, Duration::ZERO, &mut fastrand::Rng::with_seed(seed));
            prop_assert!(d <= p.exponential(attempt));
        }

        #[test]
        fn equal_jitter_is_within_half_exp_and_exp(p in valid_policy(), attempt in any::<u32>(), seed in any::<u64>()) {
            let p = RetryPolicy { jitter: Jitter::Equal, ..p };
            let exp = p.exponential(attempt);
            let d = p.delay(attempt, Duration::ZERO, &mut fastrand::Rng::with_seed(seed));
            prop_assert!(d >= exp / 2 && d <= exp, "{:?} not in [{:?}/2, {:?}]", d, exp, exp);
        }

        #[test]
        fn decorrelated_jitter_is_within_base_and_three_times_previous(
            p in valid_policy(),
            previous in any::<u64>(),
            seed in any::<u64>(),
        ) {
            let p = RetryPolicy { jitter: Jitter::Decorrelated, ..p };
            let previous = Duration::from_nanos(previous);
            let d = p.delay(1, previous, &mut fastrand::Rng::with_seed(seed));
            let high = p.cap.min(previous.max(p.base).saturating_mul(3));
            prop_assert!(d >= p.base && d <= high, "{:?} not in [{:?}, {:?}]", d, p.base, high);
        }
    }
}
