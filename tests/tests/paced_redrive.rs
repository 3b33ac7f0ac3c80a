//! Rate-limited redrive: dead letters go back at the rate asked for, never more than a
//! burst after a long pause, and the redrive can be followed, cancelled, and ends when it
//! has sent its `max`, when nothing matches any more, or when the bus closes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dreamnet_bus::{
    Bus, BusError, DeadReason, Event, EventType, Filter, ManualClock, Outcome, PaceEnd, Rate,
    Shard, SubscriptionId,
};

struct World {
    bus: Bus,
    shards: Vec<Shard>,
    clock: ManualClock,
    failing: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    sub: SubscriptionId,
}

/// A bus whose one subscription fails everything while `failing` is set; `letters`
/// events published and dead-lettered, then `failing` cleared.
fn world(letters: u64) -> World {
    let clock = ManualClock::new();
    clock.set_ns(1_000_000_000);
    let (bus, mut shards) = Bus::builder()
        .shards(2)
        .manual_clock(clock.clone())
        .build_polled()
        .unwrap();
    let agent = bus.register_agent("producer").unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let (f, d) = (Arc::clone(&failing), Arc::clone(&delivered));
    let sub = bus
        .subscribe(Filter::of_type(EventType::AGENT_TASK), move |_| {
            if f.load(Ordering::Relaxed) {
                Outcome::fail(7)
            } else {
                d.fetch_add(1, Ordering::Relaxed);
                Outcome::Done
            }
        })
        .unwrap();
    let mut p = bus.publisher(agent).unwrap();
    for i in 0..letters {
        p.try_publish(Event::new(EventType::AGENT_TASK).with_correlation_id(i))
            .unwrap();
    }
    for s in &mut shards {
        s.drain();
    }
    assert_eq!(bus.dead_letters().len() as u64, letters);
    failing.store(false, Ordering::Relaxed);
    World {
        bus,
        shards,
        clock,
        failing,
        delivered,
        sub,
    }
}

impl World {
    fn poll(&mut self) {
        for s in &mut self.shards {
            s.poll(256);
        }
        // Letters moved by shard 0's pacer to the other shard's queue arrive there.
        for s in &mut self.shards {
            s.poll(256);
        }
    }
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

#[test]
fn letters_go_back_at_the_rate_and_never_more_than_a_burst() {
    let mut w = world(10);
    let rate = Rate::new(2, 1).unwrap();
    let job = w
        .bus
        .redrive_paced(100, rate, None, |l| {
            matches!(l.reason, DeadReason::Failed { .. })
        })
        .unwrap();
    assert_eq!(job.ended(), None);
    w.poll();
    assert_eq!((w.delivered(), job.sent()), (1, 1), "one at once (burst 1)");
    w.poll();
    w.clock.advance(Duration::from_millis(499));
    w.poll();
    assert_eq!(w.delivered(), 1, "the next one is due 500 ms later");
    w.clock.advance(Duration::from_millis(1));
    w.poll();
    assert_eq!(w.delivered(), 2);
    // A long pause does not release a flood: at most the burst per tick.
    w.clock.advance(Duration::from_secs(60));
    w.poll();
    assert_eq!(w.delivered(), 3);
    w.clock.advance(Duration::from_millis(500));
    w.poll();
    assert_eq!(w.delivered(), 4);
    assert_eq!(
        w.bus.dead_letters().len(),
        6,
        "the rest wait in the dead letters"
    );
    let redriven: u64 = w.bus.stats().shards.iter().map(|s| s.redriven).sum();
    assert_eq!(redriven, 4, "counted as redriven by the shards");
    // Cancel: nothing more goes, and the handle says why it stopped.
    job.cancel();
    w.clock.advance(Duration::from_secs(1));
    w.poll();
    assert_eq!(job.ended(), Some(PaceEnd::Cancelled));
    w.clock.advance(Duration::from_secs(10));
    w.poll();
    assert_eq!((w.delivered(), job.sent()), (4, 4));
    assert_eq!(w.bus.dead_letters().len(), 6);
    assert!(job.ticks() >= 4);
}

#[test]
fn it_ends_at_max_or_when_nothing_matches() {
    let mut w = world(6);
    let fast = Rate::new(1_000, 100).unwrap();
    let two = w.bus.redrive_paced(2, fast, None, |_| true).unwrap();
    w.poll();
    assert_eq!((two.sent(), two.ended()), (2, Some(PaceEnd::Done)));
    assert_eq!(w.delivered(), 2);
    // Only correlation ids below 4 match: two are left (2 and 3), then it is drained.
    let rest = w
        .bus
        .redrive_paced(100, fast, None, |l| l.event.header().correlation_id() < 4)
        .unwrap();
    w.poll();
    assert_eq!((rest.sent(), rest.ended()), (2, Some(PaceEnd::Drained)));
    assert_eq!(w.bus.dead_letters().len(), 2, "4 and 5 did not match");
    let none = w.bus.redrive_paced(0, fast, None, |_| true).unwrap();
    assert_eq!(none.ended(), Some(PaceEnd::Done));
}

#[test]
fn redrive_to_another_subscription_at_a_pace() {
    let mut w = world(3);
    let other = Arc::new(AtomicU64::new(0));
    let o = Arc::clone(&other);
    let spare = w
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_STATUS), move |_| {
            o.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        })
        .unwrap();
    let job = w
        .bus
        .redrive_paced(3, Rate::new(1, 1).unwrap(), Some(spare), |_| true)
        .unwrap();
    w.poll();
    w.clock.advance(Duration::from_secs(1));
    w.poll();
    assert_eq!(other.load(Ordering::Relaxed), 2);
    assert_eq!(w.delivered(), 0, "the original subscription gets nothing");
    w.clock.advance(Duration::from_secs(1));
    w.poll();
    assert_eq!((job.sent(), job.ended()), (3, Some(PaceEnd::Done)));
    assert!(!w.failing.load(Ordering::Relaxed));
}

#[test]
fn bad_calls_are_typed_errors_and_close_ends_a_running_redrive() {
    let mut w = world(4);
    let slow = Rate::new(1, 1).unwrap();
    let gone = w
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_ERROR), |_| Outcome::Done)
        .unwrap();
    w.bus.unsubscribe(gone).unwrap();
    assert_eq!(
        w.bus
            .redrive_paced(1, slow, Some(gone), |_| true)
            .unwrap_err(),
        BusError::UnknownSubscription(gone)
    );
    let job = w.bus.redrive_paced(4, slow, None, |_| true).unwrap();
    w.poll();
    assert_eq!(job.sent(), 1);
    // Letters whose subscription left stay in the dead letters (as with `redrive`); the
    // pacer keeps trying them at its pace until cancelled or closed.
    w.bus.unsubscribe(w.sub).unwrap();
    w.clock.advance(Duration::from_secs(5));
    w.poll();
    assert_eq!((job.sent(), job.ended()), (1, None));
    assert_eq!(w.bus.dead_letters().len(), 3);
    w.bus.close();
    w.poll();
    assert_eq!(job.ended(), Some(PaceEnd::Closed));
    assert_eq!(
        w.bus.redrive_paced(1, slow, None, |_| true).unwrap_err(),
        BusError::Closed
    );
}

/// Worker mode, real clock: 20 letters at 100/s (burst 1) take about 190 ms, not one
/// poll; all arrive.
#[test]
fn a_worker_shard_paces_in_real_time() {
    let bus = Bus::builder().build().unwrap();
    let agent = bus.register_agent("producer").unwrap();
    let failing = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let (f, d) = (Arc::clone(&failing), Arc::clone(&delivered));
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |_| {
        if f.load(Ordering::Relaxed) {
            Outcome::fail(1)
        } else {
            d.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        }
    })
    .unwrap();
    let mut p = bus.publisher(agent).unwrap();
    for _ in 0..20 {
        p.publish(Event::new(EventType::AGENT_TASK)).unwrap();
    }
    assert!(bus.wait_idle(Duration::from_secs(10)));
    assert_eq!(bus.dead_letters().len(), 20);
    failing.store(false, Ordering::Relaxed);
    let start = std::time::Instant::now();
    let job = bus
        .redrive_paced(20, Rate::new(100, 1).unwrap(), None, |_| true)
        .unwrap();
    while job.ended().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "pacer stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = start.elapsed();
    assert_eq!(job.ended(), Some(PaceEnd::Done));
    assert!(
        took >= Duration::from_millis(180),
        "20 at 100/s took only {took:?}"
    );
    assert!(bus.wait_idle(Duration::from_secs(10)));
    assert_eq!(delivered.load(Ordering::Relaxed), 20);
}

/// A paced redrive's ticks wait on shard 0's timer wheel beside scheduled events and
/// retries: with no room left there it ends with a reason, never silently.
#[test]
fn a_full_timer_wheel_ends_a_paced_redrive_with_a_reason() {
    let clock = ManualClock::new();
    clock.set_ns(1_000_000_000);
    let (bus, mut shards) = Bus::builder()
        .timer_capacity(1)
        .manual_clock(clock.clone())
        .build_polled()
        .unwrap();
    let agent = bus.register_agent("producer").unwrap();
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |_| Outcome::fail(7))
        .unwrap();
    let mut p = bus.publisher(agent).unwrap();
    p.try_publish(Event::new(EventType::AGENT_TASK)).unwrap();
    shards[0].drain();
    assert_eq!(bus.dead_letters().len(), 1);
    // The wheel's one place: an event scheduled an hour from now.
    p.try_publish_after(Event::new(EventType::AGENT_TASK), Duration::from_secs(3600))
        .unwrap();
    shards[0].poll(16);
    assert_eq!(shards[0].pending_timers(), 1);
    let job = bus
        .redrive_paced(10, Rate::new(1, 1).unwrap(), None, |_| true)
        .unwrap();
    shards[0].poll(16);
    assert_eq!(job.ended(), Some(PaceEnd::WheelFull));
    assert_eq!((job.sent(), bus.dead_letters().len()), (0, 1));
}
