//! A parked worker takes an event the moment it is published, not at its park timeout:
//! the publish wakes it through its shard's sleep mark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, WaitStrategy};

#[test]
fn a_publish_wakes_a_parked_worker() {
    // Workers that park for 2 s at a time once idle: without the wake, each event below
    // would wait for the rest of a park timeout.
    let bus = Bus::builder()
        .wait_strategy(WaitStrategy::Park(Duration::from_secs(2)))
        .build()
        .unwrap();
    let handled = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&handled);
    bus.subscribe(Filter::of_type(EventType::SYSTEM_EVENT), move |_| {
        h.fetch_add(1, Ordering::Release);
        Outcome::Done
    })
    .unwrap();
    let me = bus.register_agent("waker").unwrap();
    let mut publisher = bus.publisher(me).unwrap();
    const ROUNDS: u64 = 5;
    let mut slowest = Duration::ZERO;
    for round in 1..=ROUNDS {
        // Let the worker spin, yield and park.
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        publisher
            .publish(Event::new(EventType::SYSTEM_EVENT))
            .unwrap();
        while handled.load(Ordering::Acquire) < round {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "round {round}: the parked worker did not take the event"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        slowest = slowest.max(start.elapsed());
    }
    bus.close();
    eprintln!("slowest wake: {slowest:?}");
}
