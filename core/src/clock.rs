//! The bus clock: nanoseconds since the bus started, monotonic. Timestamps, deadlines,
//! retries and scheduled delivery all read it. Tests swap in a [`ManualClock`] so time
//! moves only when they say.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A clock the test moves by hand. Clones share the same time.
///
/// ```
/// use dreamnet_bus::ManualClock;
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(3));
/// assert_eq!(clock.now_ns(), 3_000_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at 0 ns.
    pub fn new() -> Self {
        Self::default()
    }
    /// The current time in nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    /// Moves time forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let now = self.now_ns();
        self.set_ns(now.saturating_add(ns));
    }
    /// Sets the time; a value earlier than now is ignored (the clock is monotonic).
    pub fn set_ns(&self, ns: u64) {
        self.0.fetch_max(ns, Ordering::AcqRel);
    }
}

/// Real time from the CPU's time-stamp counter (via `quanta`, calibrated against the
/// OS monotonic clock; it falls back to the OS clock where the TSC is unusable).
///
/// Why not `Instant::now`: every publish stamps a timestamp, and on the machines we run
/// on `clock_gettime` cost ~45 ns a call (a third of the publish->handler path in a
/// profile), against a few ns for a TSC read.
#[derive(Clone, Debug)]
pub struct TscClock {
    clock: quanta::Clock,
    start: u64,
}

impl TscClock {
    fn new() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        TscClock { clock, start }
    }

    #[inline]
    fn now_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }
}

/// Which clock a bus reads.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Real time, monotonic, since the bus was built.
    Monotonic(TscClock),
    /// Time moved by hand.
    Manual(ManualClock),
}

impl Default for Clock {
    fn default() -> Self {
        Clock::Monotonic(TscClock::new())
    }
}

impl Clock {
    /// Nanoseconds since the clock's start.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            Clock::Monotonic(tsc) => tsc.now_ns(),
            Clock::Manual(m) => m.now_ns(),
        }
    }
}

/// The bus clock read at most once, when first asked: what one drain of a shard's rings
/// uses for "now". A clock read costs ~10 ns on some machines (the TSC's throughput on
/// AMD Zen is one read per ~36 cycles), and most events need no time at all: only a
/// deadline, a retry, a scheduled event or a handler that asks reads it.
#[derive(Debug)]
pub(crate) struct LazyNow<'c> {
    clock: Option<&'c Clock>,
    read: core::cell::Cell<Option<u64>>,
}

impl<'c> LazyNow<'c> {
    /// Reads `clock` on first use.
    #[inline]
    pub(crate) fn new(clock: &'c Clock) -> Self {
        LazyNow {
            clock: Some(clock),
            read: core::cell::Cell::new(None),
        }
    }

    /// A time already read.
    #[inline]
    pub(crate) fn known(now_ns: u64) -> Self {
        LazyNow {
            clock: None,
            read: core::cell::Cell::new(Some(now_ns)),
        }
    }

    /// Nanoseconds on the bus clock: the same value every time it is asked.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        if let Some(now) = self.read.get() {
            return now;
        }
        let now = self.clock.map_or(0, Clock::now_ns);
        self.read.set(Some(now));
        now
    }
}
