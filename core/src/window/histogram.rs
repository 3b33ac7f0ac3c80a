//! A fixed-size log-linear histogram of `i64` values, for the percentiles of a window.
//!
//! Why our own and not hdrhistogram: a window table holds one histogram per open window
//! per key, all preallocated in one flat `Vec<u32>` at setup, so recording and resetting
//! never allocate and a histogram is just a slice. Values are bucketed by sign, power of
//! two and 8 linear sub-buckets per power of two: magnitudes below 8 are exact, larger
//! ones are reported with a relative error below 1/8 (the bucket's bound nearest zero).

/// Sub-buckets per power of two (as a bit count): 3 bits, 8 sub-buckets.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Magnitude buckets: 0..8 exact, then 8 per power of two from 2^3 to 2^63 inclusive.
const PER_SIGN: usize = (SUB + (63 - SUB_BITS as u64) * SUB + 1) as usize;

/// Buckets in one histogram (both signs).
pub const BUCKETS: usize = 2 * PER_SIGN;

/// The bucket of a magnitude: exact below 8, log-linear above.
fn magnitude_bucket(m: u64) -> usize {
    if m < SUB {
        m as usize
    } else {
        let e = 63 - m.leading_zeros();
        let sub = (m >> (e - SUB_BITS)) & (SUB - 1);
        (SUB + u64::from(e - SUB_BITS) * SUB + sub) as usize
    }
}

/// The smallest magnitude in magnitude bucket `b`.
fn magnitude_floor(b: usize) -> u64 {
    if (b as u64) < SUB {
        b as u64
    } else {
        let b = b as u64 - SUB;
        let e = b / SUB + u64::from(SUB_BITS);
        (SUB + b % SUB) << (e - u64::from(SUB_BITS))
    }
}

/// The histogram bucket of `v` (monotonic: `a <= b` implies `index(a) <= index(b)`).
pub(crate) fn index(v: i64) -> usize {
    if v < 0 {
        PER_SIGN - 1 - magnitude_bucket(v.unsigned_abs())
    } else {
        PER_SIGN + magnitude_bucket(v as u64)
    }
}

/// The value a bucket reports: its bound nearest zero.
pub(crate) fn representative(bucket: usize) -> i64 {
    if bucket < PER_SIGN {
        // 2^63 (the magnitude of i64::MIN) wraps to i64::MIN, which is right.
        0i64.wrapping_sub(magnitude_floor(PER_SIGN - 1 - bucket) as i64)
    } else {
        magnitude_floor(bucket - PER_SIGN) as i64
    }
}

/// What the histogram reports for `v`: `representative(index(v))`.
pub fn quantize(v: i64) -> i64 {
    representative(index(v))
}

/// The rank (1-based) of quantile `per_mille` / 1000 among `count` values: the smallest
/// rank whose share reaches the quantile, at least 1.
pub fn rank(count: u64, per_mille: u32) -> u64 {
    let r = (u128::from(count) * u128::from(per_mille)).div_ceil(1000);
    (r as u64).clamp(1, count.max(1))
}

/// Records `v` in `counts` (a slice of [`BUCKETS`] counts; a full bucket saturates).
#[inline]
pub(crate) fn record(counts: &mut [u32], v: i64) {
    let c = &mut counts[index(v)];
    *c = c.saturating_add(1);
}

/// Adds `from` into `into` (both of [`BUCKETS`] counts): the histogram of two merged
/// session windows.
pub(crate) fn merge(into: &mut [u32], from: &[u32]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

/// The `per_mille` quantile of the `count` values recorded in `counts`, clamped to the
/// exact `[min, max]` (so a window of one value reports that value). 0 when empty.
pub(crate) fn quantile(counts: &[u32], count: u64, per_mille: u32, min: i64, max: i64) -> i64 {
    if count == 0 {
        return 0;
    }
    let want = rank(count, per_mille);
    let mut seen = 0u64;
    for (b, &c) in counts.iter().enumerate() {
        seen += u64::from(c);
        if seen >= want {
            return representative(b).clamp(min, max);
        }
    }
    // Only reachable when saturated buckets undercount: the largest value is the answer.
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_magnitudes_are_exact_and_extremes_fit() {
        for v in -7..=7 {
            assert_eq!(quantize(v), v);
        }
        assert_eq!(index(i64::MIN), 0);
        assert!(index(i64::MAX) < BUCKETS);
        assert_eq!(quantize(i64::MIN), i64::MIN);
        assert_eq!(quantize(8), 8);
        assert_eq!(quantize(17), 16);
        assert_eq!(quantize(-17), -16);
    }

    proptest! {
        /// Bucketing keeps order and the reported value is within 1/8 of the value, on
        /// the zero side.
        #[test]
        fn quantize_is_monotonic_and_close(a in any::<i64>(), b in any::<i64>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(index(lo) <= index(hi));
            let q = quantize(a);
            prop_assert!(q.unsigned_abs() <= a.unsigned_abs());
            prop_assert!(q.signum() == a.signum() || q == 0);
            let err = a.unsigned_abs() - q.unsigned_abs();
            prop_assert!(err <= a.unsigned_abs() / 8, "{a} -> {q}");
        }

        /// The histogram's quantile is the quantized exact rank value (model: sort).
        #[test]
        fn quantile_matches_sorted_model(mut values in proptest::collection::vec(any::<i32>(), 1..200),
                                         q in 1u32..=1000) {
            let mut counts = vec![0u32; BUCKETS];
            for &v in &values { record(&mut counts, i64::from(v)); }
            values.sort_unstable();
            let (min, max) = (i64::from(values[0]), i64::from(*values.last().unwrap()));
            let exact = i64::from(values[rank(values.len() as u64, q) as usize - 1]);
            prop_assert_eq!(quantile(&counts, values.len() as u64, q, min, max),
                            quantize(exact).clamp(min, max));
        }
    }
}
