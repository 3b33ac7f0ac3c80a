//! How a window is described: its kind and spans, what it keys by, where its value comes
//! from, its grace period, its key-table capacity and its output type. Checked once, when
//! the window is set up ([`WindowSpec::shape`]); the shard never sees a bad spec.

use std::time::Duration;

use crate::error::BusError;
use crate::event::DEFAULT_SLOT;
use crate::names::{EventType, MetaKey};
use crate::subscription::Delivery;

/// The most keys a window table may hold.
pub const MAX_WINDOW_KEYS: usize = 1 << 16;
/// The most windows one key may have open at once (hopping windows overlap
/// `size / advance` times; the grace period keeps closed-but-not-final ones open).
pub const MAX_WINDOWS_PER_KEY: usize = 64;

/// The kind of window and its spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// Back-to-back windows of `size`: `[k*size, (k+1)*size)` on the bus clock.
    Tumbling(Duration),
    /// Windows of `size` starting every `advance` (`advance <= size`): an event counts in
    /// every window that covers its timestamp.
    Hopping {
        /// The span of each window.
        size: Duration,
        /// The step between window starts.
        advance: Duration,
    },
    /// Per key, events closer than `gap` to each other form one window; it ends `gap`
    /// after its last event.
    Session {
        /// The inactivity that ends a session.
        gap: Duration,
    },
}

/// What a window groups its events by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyBy {
    /// The publishing agent (the key is the agent's raw id).
    #[default]
    Source,
    /// The event type (the key is the type's raw id).
    Type,
    /// The value of a metadata entry (an event without it is dead-lettered as
    /// `Unaggregatable`).
    Meta(MetaKey),
}

/// A user accessor for the aggregated value, over the delivery (its archived payload).
pub type ValueFn<const SLOT: usize> =
    Box<dyn Fn(&Delivery<'_, SLOT>) -> Option<i64> + Send + 'static>;

/// Where the aggregated value of an event comes from.
pub enum ValueFrom<const SLOT: usize = DEFAULT_SLOT> {
    /// Every event counts as 1 (count, and sum = count).
    One,
    /// A metadata entry, read as `i64` (two's complement: publish a negative `v` as
    /// `v as u64`). An event without it is dead-lettered as `Unaggregatable`.
    Meta(MetaKey),
    /// A function of the delivery, e.g. a field of the archived payload; `None` is
    /// dead-lettered as `Unaggregatable`.
    Accessor(ValueFn<SLOT>),
}

impl<const SLOT: usize> core::fmt::Debug for ValueFrom<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ValueFrom::One => f.write_str("One"),
            ValueFrom::Meta(k) => f.debug_tuple("Meta").field(k).finish(),
            ValueFrom::Accessor(_) => f.write_str("Accessor(..)"),
        }
    }
}

/// A bad window spec (or a bus error while setting the window up).
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// A span was zero.
    #[error("window {what} must be positive")]
    ZeroSpan {
        /// Which span: "size", "advance" or "gap".
        what: &'static str,
    },
    /// A hopping window advanced by more than its size (events between windows would
    /// be in none).
    #[error("hopping advance {advance:?} exceeds size {size:?}")]
    AdvanceExceedsSize {
        /// The window size.
        size: Duration,
        /// The advance given.
        advance: Duration,
    },
    /// A span (plus the grace period) is beyond the timer wheel's schedule horizon
    /// (see `schedule_horizon`), or does not fit the bus clock's u64 nanoseconds.
    #[error("window span {0:?} is too long")]
    SpanTooLong(Duration),
    /// Key capacity outside `1..=MAX_WINDOW_KEYS`.
    #[error("key capacity {given} outside 1..={max}")]
    KeyCapacity {
        /// The capacity asked for.
        given: usize,
        /// [`MAX_WINDOW_KEYS`].
        max: usize,
    },
    /// Size, advance and grace imply more open windows per key than
    /// [`MAX_WINDOWS_PER_KEY`].
    #[error("{needed} open windows per key needed, at most {max}")]
    TooManyWindowsPerKey {
        /// Windows per key the spec implies.
        needed: usize,
        /// [`MAX_WINDOWS_PER_KEY`].
        max: usize,
    },
    /// The window table (keys x windows per key x ~4 KiB) would exceed the bus's memory
    /// budget (`BusBuilder::memory_budget`), or could not be allocated.
    #[error("a window table of {needed} bytes exceeds the memory budget of {budget} bytes")]
    MemoryBudget {
        /// Bytes the table needs.
        needed: usize,
        /// The budget (0: the allocation itself failed).
        budget: usize,
    },
    /// The bus slot is too small for a [`WindowResult`](super::WindowResult) payload.
    #[error("a window result does not fit a {slot}-byte slot")]
    SlotTooSmall {
        /// The bus's slot size.
        slot: usize,
    },
    /// Setting up the window's agent, publisher or subscriptions failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The checked spans of a window in bus-clock nanoseconds: what the window state runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Fixed windows (tumbling: `advance == size`).
    Fixed {
        /// Window span.
        size: u64,
        /// Step between starts.
        advance: u64,
        /// Grace after the end.
        grace: u64,
    },
    /// Session windows.
    Session {
        /// Inactivity gap.
        gap: u64,
        /// Grace after the end.
        grace: u64,
    },
}

impl Shape {
    /// Checks spans and returns the shape with the windows each key needs at most.
    pub fn new(kind: WindowKind, grace: Duration) -> Result<(Shape, usize), WindowError> {
        let ns = |d: Duration, what| -> Result<u64, WindowError> {
            let v = u64::try_from(d.as_nanos()).map_err(|_| WindowError::SpanTooLong(d))?;
            if v == 0 && what != "grace" {
                return Err(WindowError::ZeroSpan { what });
            }
            // Keep end + grace arithmetic far from overflow.
            if v > u64::MAX / 8 {
                return Err(WindowError::SpanTooLong(d));
            }
            Ok(v)
        };
        let grace_ns = ns(grace, "grace")?;
        let (shape, per_key) = match kind {
            WindowKind::Tumbling(size) => {
                let size = ns(size, "size")?;
                let shape = Shape::Fixed {
                    size,
                    advance: size,
                    grace: grace_ns,
                };
                (shape, (size + grace_ns).div_ceil(size) as usize + 1)
            }
            WindowKind::Hopping { size, advance } => {
                let (s, a) = (ns(size, "size")?, ns(advance, "advance")?);
                if a > s {
                    return Err(WindowError::AdvanceExceedsSize { size, advance });
                }
                let shape = Shape::Fixed {
                    size: s,
                    advance: a,
                    grace: grace_ns,
                };
                (
                    shape,
                    (s + grace_ns).div_ceil(a).min(u64::MAX / 2) as usize + 1,
                )
            }
            WindowKind::Session { gap } => {
                let gap = ns(gap, "gap")?;
                let shape = Shape::Session {
                    gap,
                    grace: grace_ns,
                };
                (shape, (gap + grace_ns).div_ceil(gap) as usize + 1)
            }
        };
        if per_key > MAX_WINDOWS_PER_KEY {
            return Err(WindowError::TooManyWindowsPerKey {
                needed: per_key,
                max: MAX_WINDOWS_PER_KEY,
            });
        }
        Ok((shape, per_key))
    }
}

/// A window, described with a builder: kind, key, value, grace, capacity, output type.
///
/// ```
/// use std::time::Duration;
/// use dreamnet_bus::window::{KeyBy, WindowSpec};
/// # let bus = dreamnet_bus::Bus::builder().build()?;
/// let latency = bus.register_meta_key("latency_us")?;
/// let spec: WindowSpec = WindowSpec::tumbling(Duration::from_secs(1))
///     .key_by(KeyBy::Source)
///     .value_meta(latency)
///     .grace(Duration::from_millis(100))
///     .key_capacity(1024);
/// # let _ = spec;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WindowSpec<const SLOT: usize = DEFAULT_SLOT> {
    pub(crate) kind: WindowKind,
    pub(crate) key_by: KeyBy,
    pub(crate) value: ValueFrom<SLOT>,
    pub(crate) grace: Duration,
    pub(crate) key_capacity: usize,
    pub(crate) output: Option<EventType>,
}

impl<const SLOT: usize> core::fmt::Debug for WindowSpec<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WindowSpec")
            .field("kind", &self.kind)
            .field("key_by", &self.key_by)
            .field("value", &self.value)
            .field("grace", &self.grace)
            .field("key_capacity", &self.key_capacity)
            .field("output", &self.output)
            .finish()
    }
}

impl<const SLOT: usize> WindowSpec<SLOT> {
    /// A window of `kind`, keyed by source, counting every event as 1, no grace, 256
    /// keys, output type `system.window`.
    pub fn new(kind: WindowKind) -> Self {
        WindowSpec {
            kind,
            key_by: KeyBy::Source,
            value: ValueFrom::One,
            grace: Duration::ZERO,
            key_capacity: 256,
            output: None,
        }
    }
    /// Tumbling windows of `size`.
    pub fn tumbling(size: Duration) -> Self {
        Self::new(WindowKind::Tumbling(size))
    }
    /// Hopping windows of `size` every `advance`.
    pub fn hopping(size: Duration, advance: Duration) -> Self {
        Self::new(WindowKind::Hopping { size, advance })
    }
    /// Session windows closed by `gap` of inactivity per key.
    pub fn session(gap: Duration) -> Self {
        Self::new(WindowKind::Session { gap })
    }
    /// Groups by `key`.
    pub fn key_by(mut self, key: KeyBy) -> Self {
        self.key_by = key;
        self
    }
    /// Aggregates metadata entry `key` (as `i64`).
    pub fn value_meta(mut self, key: MetaKey) -> Self {
        self.value = ValueFrom::Meta(key);
        self
    }
    /// Aggregates what `f` reads from each delivery (e.g. a payload field, zero copy).
    pub fn value_with(
        mut self,
        f: impl Fn(&Delivery<'_, SLOT>) -> Option<i64> + Send + 'static,
    ) -> Self {
        self.value = ValueFrom::Accessor(Box::new(f));
        self
    }
    /// Accepts events up to `grace` after their window's end (event time = the header's
    /// timestamp, judged against the bus clock when the shard takes the event); the window
    /// is emitted when the grace is over. Later events are `Late`. The grace must cover
    /// the delivery delay you tolerate: an event that waits in a ring (a busy or stalled
    /// shard) past its window's end plus the grace is late, like an out-of-order event in
    /// Kafka Streams. Zero grace suits only a shard that keeps up.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
    /// At most `keys` keys with open windows at once; an event for a new key beyond that
    /// is counted and dead-lettered as `KeyOverflow`.
    pub fn key_capacity(mut self, keys: usize) -> Self {
        self.key_capacity = keys;
        self
    }
    /// The event type the results are published as.
    pub fn output(mut self, ty: EventType) -> Self {
        self.output = Some(ty);
        self
    }
    /// Checks the spec: its shape and the windows per key it needs.
    pub fn shape(&self) -> Result<(Shape, usize), WindowError> {
        if self.key_capacity == 0 || self.key_capacity > MAX_WINDOW_KEYS {
            return Err(WindowError::KeyCapacity {
                given: self.key_capacity,
                max: MAX_WINDOW_KEYS,
            });
        }
        Shape::new(self.kind, self.grace)
    }
}
