//! `Bus::wake_workers`: a parked worker takes an event at once when woken, instead of at
//! its park timeout (the NATS bridge wakes the workers after publishing what arrived).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, WaitStrategy};

#[test]
fn a_parked_worker_takes_an_event_when_woken() {
    // Workers that park for 2 s at a time once idle: without a wake, the event below
    // would wait for the rest of the park timeout (about 1.8 s).
    let bus = Bus::builder()
        .wait_strategy(WaitStrategy::Park(Duration::from_secs(2)))
        .build()
        .unwrap();
    let handled = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&handled);
    bus.subscribe(Filter::of_type(EventType::SYSTEM_EVENT), move |_| {
        h.store(true, Ordering::Release);
        Outcome::Done
    })
    .unwrap();
    let me = bus.register_agent("waker").unwrap();
    let mut publisher = bus.publisher(me).unwrap();
    // Let the worker spin, yield and park.
    std::thread::sleep(Duration::from_millis(200));
    // A wake consumed by the subscription's set-up could let it skip one park: wake once
    // now, and let it park again.
    bus.wake_workers();
    std::thread::sleep(Duration::from_millis(200));

    let start = Instant::now();
    publisher
        .publish(Event::new(EventType::SYSTEM_EVENT))
        .unwrap();
    bus.wake_workers();
    while !handled.load(Ordering::Acquire) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "the woken worker did not take the event"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    bus.close();
}
