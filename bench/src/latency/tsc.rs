//! The stamp clock of the latency benches: the CPU's time-stamp counter, read raw.
//!
//! [`Tsc::now`] is `quanta::Clock::raw`, which on x86_64 with an invariant TSC is a bare
//! `rdtsc` (no fence, about 7 ns here), and quanta's calibration against
//! `CLOCK_MONOTONIC` turns tick deltas into nanoseconds. Without an invariant TSC quanta
//! falls back to the monotonic clock; [`Tsc::source`] says which one a run used, so a
//! report never passes off a slower clock as the TSC.
//!
//! The producer and the consumer read the counter on different cores: that is sound
//! because an invariant TSC (`constant_tsc`, `nonstop_tsc`) is synchronised across the
//! cores of a socket. A delta that comes out negative (skew) is recorded as 0 and
//! counted, so skew would show instead of hiding in the percentiles.

/// A calibrated raw-counter clock. Cheap to clone (each thread keeps its own).
#[derive(Debug, Clone)]
pub struct Tsc {
    clock: quanta::Clock,
    ticks_per_ns: f64,
}

impl Default for Tsc {
    fn default() -> Self {
        Self::new()
    }
}

impl Tsc {
    /// Calibrates (once per process, inside quanta) and returns the clock.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        // quanta scales a tick delta by a calibrated factor; invert it on a large delta
        // for the ticks-per-nanosecond the pacing loop needs.
        let big = 1u64 << 40;
        let ns = clock.delta_as_nanos(0, big).max(1);
        Tsc {
            clock,
            ticks_per_ns: big as f64 / ns as f64,
        }
    }

    /// The raw counter now (ticks, not nanoseconds).
    #[inline]
    pub fn now(&self) -> u64 {
        self.clock.raw()
    }

    /// Nanoseconds from `start` to `end` (raw readings); 0 if `end` is not after `start`.
    #[inline]
    pub fn nanos(&self, start: u64, end: u64) -> u64 {
        self.clock.delta_as_nanos(start, end)
    }

    /// Ticks in `ns` nanoseconds (for pacing on the counter itself).
    pub fn ticks(&self, ns: f64) -> u64 {
        (ns * self.ticks_per_ns).round() as u64
    }

    /// Counter ticks per nanosecond: the TSC frequency in GHz, or exactly 1 when quanta
    /// fell back to the monotonic clock.
    pub fn ticks_per_ns(&self) -> f64 {
        self.ticks_per_ns
    }

    /// What the counter is, for the report.
    pub fn source(&self) -> String {
        if (self.ticks_per_ns - 1.0).abs() < 1e-9 {
            "CLOCK_MONOTONIC (quanta found no invariant TSC)".to_owned()
        } else {
            format!(
                "TSC via quanta::Clock::raw (rdtsc), {:.3} GHz, calibrated by quanta against CLOCK_MONOTONIC",
                self.ticks_per_ns
            )
        }
    }

    /// Spins until the counter reaches `due`.
    #[inline]
    pub fn spin_until(&self, due: u64) {
        while self.now() < due {
            std::hint::spin_loop();
        }
    }
}
