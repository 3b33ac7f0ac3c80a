//! How a thread waits when it cannot go on: a publisher on a full ring, a worker on empty
//! rings. Chosen once in the builder.

use std::time::Duration;

/// How to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin: lowest latency, burns a core. Use with pinned workers on spare cores.
    Spin,
    /// Spin briefly, then yield the time slice.
    Yield,
    /// Spin, yield, then sleep for up to the given duration at a time.
    Park(Duration),
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy::Park(Duration::from_micros(50))
    }
}

/// One waiting episode: escalates from spinning to the strategy's last step.
#[derive(Debug)]
pub(crate) struct Waiter {
    strategy: WaitStrategy,
    step: u32,
}

const SPIN_STEPS: u32 = 64;
const YIELD_STEPS: u32 = 64;

impl Waiter {
    pub(crate) fn new(strategy: WaitStrategy) -> Self {
        Waiter { strategy, step: 0 }
    }

    /// Back to spinning: there was work.
    pub(crate) fn reset(&mut self) {
        self.step = 0;
    }

    /// Waits once.
    pub(crate) fn wait(&mut self) {
        self.wait_or(std::thread::park_timeout);
    }

    /// Waits once; at the parking step, calls `park` with the strategy's longest sleep
    /// (a worker parks through its shard's sleep mark, `wakeup.rs`).
    pub(crate) fn wait_or(&mut self, park: impl FnOnce(Duration)) {
        self.step = self.step.saturating_add(1);
        match self.strategy {
            WaitStrategy::Spin => core::hint::spin_loop(),
            _ if self.step <= SPIN_STEPS => core::hint::spin_loop(),
            WaitStrategy::Yield => std::thread::yield_now(),
            WaitStrategy::Park(_) if self.step <= SPIN_STEPS + YIELD_STEPS => {
                std::thread::yield_now()
            }
            WaitStrategy::Park(max) => park(max),
        }
    }
}
