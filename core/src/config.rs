//! Bus configuration and its builder. Every setting is checked in `build`, with a typed
//! error for a bad value.

use std::time::Duration;

use crate::backoff::RetryPolicy;
use crate::bus::Bus;
use crate::clock::{Clock, ManualClock};
use crate::dead_letters::{DeadLetter, DeadLetterHook, FullPolicy};
use crate::error::{BusError, ConfigError};
use crate::event::DEFAULT_SLOT;
use crate::memory::{
    MemoryFootprint, DEFAULT_MEMORY_BUDGET, MAX_DEAD_LETTER_CAPACITY, MAX_RING_CAPACITY,
};
use crate::priority::Priority;
use crate::shard::Shard;
use crate::targets::MAX_SHARDS;
use crate::wait::WaitStrategy;

/// How a bus's shards run: chosen by the build call ([`BusBuilder::build`] or
/// [`BusBuilder::build_polled`]), reported in [`Config::mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// The bus runs one worker thread per shard; `pin` pins worker `i` to a core (a
    /// failure to pin is reported in the shard's stats, and the worker runs unpinned).
    Workers {
        /// Pin workers to cores with `core_affinity`.
        pin: bool,
    },
    /// No thread of ours: the shards were returned by `build_polled`, and you call
    /// `poll` in your own loop.
    Poll,
}

/// The checked configuration of a bus.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Number of shards, `1..=64`.
    pub shards: usize,
    /// Capacity of each publisher->shard ring, per priority; powers of two.
    pub ring_capacity: [usize; Priority::COUNT],
    /// How blocked publishers and idle workers wait.
    pub wait: WaitStrategy,
    /// Starvation guard: see [`crate::Shard`].
    pub starvation_guard: u32,
    /// How shards run.
    pub mode: RunMode,
    /// The clock.
    pub clock: Clock,
    /// Retry policy for subscriptions that do not set their own.
    pub retry: RetryPolicy,
    /// Timer wheel tick.
    pub tick: Duration,
    /// Capacity of each shard's timer wheel (pending retries and scheduled events).
    pub timer_capacity: usize,
    /// Capacity of the dead-letter ring.
    pub dead_letter_capacity: usize,
    /// What the dead-letter ring does when full.
    pub dead_letter_policy: FullPolicy,
    /// Whether events no subscription matched at publish time go to the dead letters.
    pub dead_letter_unroutable: bool,
    /// Seed for retry jitter (deterministic runs).
    pub seed: u64,
    /// The most bytes the bus's preallocated structures may take: checked when the bus is
    /// built and when a publisher is created (see [`MemoryFootprint`]).
    pub memory_budget: usize,
    /// Whether shards record live analytics ([`crate::Bus::analytics`]).
    pub analytics: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shards: 1,
            ring_capacity: [1024, 1024, 4096, 1024],
            wait: WaitStrategy::default(),
            starvation_guard: 64,
            mode: RunMode::Workers { pin: false },
            clock: Clock::default(),
            retry: RetryPolicy::default(),
            tick: Duration::from_millis(1),
            timer_capacity: 4096,
            dead_letter_capacity: 4096,
            dead_letter_policy: FullPolicy::DropOldest,
            dead_letter_unroutable: false,
            seed: 0x5eed,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            analytics: false,
        }
    }
}

/// Builds a [`Bus`]. `SLOT` is the event slot size in bytes (see [`crate::Event`]).
///
/// ```
/// use dreamnet_bus::Bus;
/// // Two shards, each on a worker thread of its own, pinned to a core:
/// let bus = Bus::builder().shards(2).pinned(true).build()?;
/// # drop(bus);
/// # Ok::<(), dreamnet_bus::BusError>(())
/// ```
#[derive(Clone)]
pub struct BusBuilder<const SLOT: usize = DEFAULT_SLOT> {
    config: Config,
    hook: Option<DeadLetterHook<SLOT>>,
}

impl<const SLOT: usize> core::fmt::Debug for BusBuilder<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BusBuilder")
            .field("config", &self.config)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl<const SLOT: usize> Default for BusBuilder<SLOT> {
    fn default() -> Self {
        BusBuilder {
            config: Config::default(),
            hook: None,
        }
    }
}

impl<const SLOT: usize> BusBuilder<SLOT> {
    /// A builder with the defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of shards (default 1).
    pub fn shards(mut self, n: usize) -> Self {
        self.config.shards = n;
        self
    }

    /// Ring capacity for one priority level (a power of two).
    pub fn ring_capacity(mut self, level: Priority, capacity: usize) -> Self {
        self.config.ring_capacity[level.index()] = capacity;
        self
    }

    /// The same ring capacity for every level (a power of two).
    pub fn ring_capacity_all(mut self, capacity: usize) -> Self {
        self.config.ring_capacity = [capacity; Priority::COUNT];
        self
    }

    /// How blocked publishers and idle workers wait (default: spin, yield, then park 50 µs).
    pub fn wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.config.wait = wait;
        self
    }

    /// After `n` higher-priority events, a waiting lower level gets one (default 64).
    pub fn starvation_guard(mut self, n: u32) -> Self {
        self.config.starvation_guard = n;
        self
    }

    /// Pins worker `i` to core `i` (default: unpinned). A failure to pin is reported in
    /// the shard's stats, and the worker runs unpinned. No effect on
    /// [`build_polled`](Self::build_polled), where the shards run on your threads.
    pub fn pinned(mut self, pin: bool) -> Self {
        self.config.mode = RunMode::Workers { pin };
        self
    }

    /// Reads time from `clock` instead of the real clock.
    pub fn manual_clock(mut self, clock: ManualClock) -> Self {
        self.config.clock = Clock::Manual(clock);
        self
    }

    /// The default retry policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Timer wheel tick (default 1 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.config.tick = tick;
        self
    }

    /// Pending retries and scheduled events each shard can hold (default 4096).
    pub fn timer_capacity(mut self, n: usize) -> Self {
        self.config.timer_capacity = n;
        self
    }

    /// Dead-letter ring capacity (default 4096) and its policy when full.
    pub fn dead_letters(mut self, capacity: usize, policy: FullPolicy) -> Self {
        self.config.dead_letter_capacity = capacity;
        self.config.dead_letter_policy = policy;
        self
    }

    /// Send events that match no subscription at publish time to the dead letters
    /// (reason `NoSubscriber`) instead of only counting them.
    pub fn dead_letter_unroutable(mut self, on: bool) -> Self {
        self.config.dead_letter_unroutable = on;
        self
    }

    /// Calls `hook` with every dead letter as it is recorded (for metrics and alerts:
    /// `RetriesExhausted`, `Failed`, ...). It runs on the shard's thread: keep it short.
    pub fn on_dead_letter(
        mut self,
        hook: impl Fn(&DeadLetter<SLOT>) + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(std::sync::Arc::new(hook));
        self
    }

    /// The most bytes the bus may preallocate (default [`DEFAULT_MEMORY_BUDGET`], 1 GiB):
    /// rings, timer wheels, dead letters. `build` refuses a configuration whose shared
    /// structures plus one publisher exceed it, and `Bus::publisher` refuses a publisher
    /// whose rings would, with a typed error instead of an abort.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.config.memory_budget = bytes;
        self
    }

    /// The memory the configuration as it stands implies (see [`MemoryFootprint`]).
    pub fn memory_footprint(&self) -> MemoryFootprint {
        MemoryFootprint::of::<SLOT>(&self.config)
    }

    /// Live analytics (default off): each shard counts events per type and per source and
    /// records publish -> dispatch latency per priority, read with [`crate::Bus::analytics`].
    /// Costs about 0.6 MiB of tables per shard (counted in the memory budget); off, the
    /// hot path pays one predictable branch per chunk of events.
    pub fn analytics(mut self, on: bool) -> Self {
        self.config.analytics = on;
        self
    }

    /// Seed for retry jitter.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Checks the configuration.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let c = &self.config;
        if c.shards == 0 {
            return Err(ConfigError::Zero { what: "shards" });
        }
        if c.shards > MAX_SHARDS {
            return Err(ConfigError::TooLarge {
                what: "shards",
                value: c.shards,
                max: MAX_SHARDS,
            });
        }
        for &cap in &c.ring_capacity {
            if cap == 0 {
                return Err(ConfigError::Zero {
                    what: "ring capacity",
                });
            }
            if !cap.is_power_of_two() {
                return Err(ConfigError::NotPowerOfTwo {
                    what: "ring capacity",
                    value: cap,
                });
            }
            if cap > MAX_RING_CAPACITY {
                return Err(ConfigError::TooLarge {
                    what: "ring capacity",
                    value: cap,
                    max: MAX_RING_CAPACITY,
                });
            }
        }
        if c.starvation_guard == 0 {
            return Err(ConfigError::Zero {
                what: "starvation guard",
            });
        }
        if c.tick.is_zero() {
            return Err(ConfigError::Zero { what: "tick" });
        }
        if c.timer_capacity == 0 {
            return Err(ConfigError::Zero {
                what: "timer capacity",
            });
        }
        if c.timer_capacity > u32::MAX as usize / 2 {
            return Err(ConfigError::TooLarge {
                what: "timer capacity",
                value: c.timer_capacity,
                max: u32::MAX as usize / 2,
            });
        }
        if c.dead_letter_capacity == 0 {
            return Err(ConfigError::Zero {
                what: "dead-letter capacity",
            });
        }
        if c.dead_letter_capacity > MAX_DEAD_LETTER_CAPACITY {
            return Err(ConfigError::TooLarge {
                what: "dead-letter capacity",
                value: c.dead_letter_capacity,
                max: MAX_DEAD_LETTER_CAPACITY,
            });
        }
        // A bus is of no use without a publisher: the first one must fit too.
        let needed = self.memory_footprint().with_publishers(1);
        if needed > c.memory_budget {
            return Err(ConfigError::MemoryBudget {
                needed,
                budget: c.memory_budget,
            });
        }
        Ok(c.clone())
    }

    /// Builds the bus and starts one worker thread per shard.
    pub fn build(self) -> Result<Bus<SLOT>, BusError> {
        let mut config = self.config()?;
        if config.mode == RunMode::Poll {
            config.mode = RunMode::Workers { pin: false };
        }
        let (bus, shards) = Bus::from_config(config, self.hook)?;
        debug_assert!(shards.is_empty(), "workers own their shards");
        Ok(bus)
    }

    /// Builds the bus with no thread of its own: the shards come back with it, to run
    /// with [`Shard::poll`](crate::Shard::poll) in your own loop (move each to the thread
    /// that polls it).
    ///
    /// ```
    /// use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome};
    ///
    /// let (bus, mut shards) = Bus::builder().shards(2).build_polled()?;
    /// assert_eq!(shards.len(), 2);
    /// bus.subscribe(Filter::any(), |_| Outcome::Done)?;
    /// let mut publisher = bus.publisher(bus.register_agent("me")?)?;
    /// publisher.try_publish(Event::new(EventType::AGENT_TASK))?;
    /// let handled: usize = shards.iter_mut().map(|s| s.poll(64)).sum();
    /// assert_eq!(handled, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build_polled(self) -> Result<(Bus<SLOT>, Vec<Shard<SLOT>>), BusError> {
        let mut config = self.config()?;
        config.mode = RunMode::Poll;
        Bus::from_config(config, self.hook)
    }
}
