//! Replay pacing: as fast as possible, or with the recorded gaps between events (as
//! JetStream's ReplayInstant and ReplayOriginal), sped up and with long gaps capped.

use std::time::{Duration, Instant};

use crate::event::Event;

/// How fast a replay hands out events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// No waiting.
    Instant,
    /// The recorded gaps between event timestamps, divided by `speed` (2.0 is twice as
    /// fast), each capped at `max_gap` (after the speed-up). Timestamps that go backwards
    /// (drain order is not publish order) give no wait.
    Original {
        /// Speed multiplier (> 0; anything else is treated as instant).
        speed: f64,
        /// The longest wait between two events.
        max_gap: Duration,
    },
}

impl Pacing {
    /// The wait before an event stamped `ts`, after one stamped `prev`.
    pub fn gap(&self, prev: u64, ts: u64) -> Duration {
        match *self {
            Pacing::Instant => Duration::ZERO,
            Pacing::Original { speed, max_gap } => {
                if speed.is_nan() || speed <= 0.0 {
                    return Duration::ZERO;
                }
                let ns = ts.saturating_sub(prev) as f64 / speed;
                Duration::from_secs_f64(ns / 1e9).min(max_gap)
            }
        }
    }
}

/// Paces a stream of events: [`Pacer::wait`] sleeps until each is due. Waits are
/// scheduled from the start (the sum of the gaps), so sleep overshoot does not add up
/// over a long replay.
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    start: Option<Instant>,
    due: Duration,
    prev_ts: u64,
}

impl Pacer {
    /// A pacer; the first event is due at once.
    pub fn new(pacing: Pacing) -> Self {
        Pacer {
            pacing,
            start: None,
            due: Duration::ZERO,
            prev_ts: 0,
        }
    }

    /// How long after the first event this one is due (and records it as the last).
    pub fn due<const SLOT: usize>(&mut self, event: &Event<SLOT>) -> Duration {
        let ts = event.header().timestamp_ns();
        if self.start.is_some() {
            self.due += self.pacing.gap(self.prev_ts, ts);
        } else {
            self.start = Some(Instant::now());
        }
        self.prev_ts = ts;
        self.due
    }

    /// Sleeps until `event` is due.
    pub fn wait<const SLOT: usize>(&mut self, event: &Event<SLOT>) {
        let due = self.due(event);
        if let Some(start) = self.start {
            let target = start + due;
            let now = Instant::now();
            if target > now {
                std::thread::sleep(target - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ts: u64) -> Event {
        let mut e: Event = Event::new(crate::names::EventType::AGENT_TASK);
        e.stamp(1, crate::names::AgentId(0), ts);
        e
    }

    proptest! {
        /// The schedule is the running sum of capped, sped-up, non-negative gaps.
        #[test]
        fn schedule_matches_model(ts in proptest::collection::vec(0u64..10_000_000, 1..50),
                                  speed in 0.1f64..10.0, cap_us in 1u64..5_000) {
            let max_gap = Duration::from_micros(cap_us);
            let pacing = Pacing::Original { speed, max_gap };
            let mut p = Pacer::new(pacing);
            let mut model = 0f64;
            for (i, t) in ts.iter().enumerate() {
                if i > 0 {
                    let gap = (t.saturating_sub(ts[i - 1]) as f64 / speed / 1e9).min(max_gap.as_secs_f64());
                    model += gap;
                }
                let due = p.due(&at(*t)).as_secs_f64();
                prop_assert!((due - model).abs() < 1e-6, "{} vs {}", due, model);
            }
            let mut inst = Pacer::new(Pacing::Instant);
            for t in &ts {
                prop_assert_eq!(inst.due(&at(*t)), Duration::ZERO);
            }
        }
    }

    #[test]
    fn waits_take_the_scheduled_time() {
        let mut p = Pacer::new(Pacing::Original {
            speed: 2.0,
            max_gap: Duration::from_millis(30),
        });
        let t0 = Instant::now();
        p.wait(&at(0));
        p.wait(&at(40_000_000)); // 40 ms at 2x: 20 ms
        p.wait(&at(200_000_000)); // 160 ms at 2x = 80 ms, capped: 30 ms
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}
