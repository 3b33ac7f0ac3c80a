//! Faults: a dead server gives backpressure (the bridge's handler returns `Retry`, the bus
//! retries and dead-letters under its policy) and memory stays bounded. The only test in
//! this binary, so nothing else allocates while RSS is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, DropReason, Export};
use dreamnet_bus::{Bus, Event, EventType, Filter};
use dreamnet_bus_tests::nats_server::NatsServer;

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

#[test]
fn a_dead_server_gives_backpressure_and_bounded_memory() {
    const EVENTS: u64 = 200_000;
    const QUEUE: usize = 64;
    let mut server = NatsServer::start();
    let bus = Arc::new(Bus::builder().build().unwrap());
    let me = bus.register_agent("alpha").unwrap();
    let bridge = Bridge::builder(&server.url())
        .bus_id("alpha")
        .queue_capacity(QUEUE)
        .max_reconnect_delay(Duration::from_millis(100))
        .export(Export::broadcast(Filter::of_type(EventType::SYSTEM_EVENT)))
        .start(Arc::clone(&bus))
        .unwrap();
    server.kill();
    assert!(wait_for(Duration::from_secs(5), || bridge
        .stats()
        .disconnects
        > 0));

    let mut publisher = bus.publisher(me).unwrap();
    let before = rss();
    for i in 0..EVENTS {
        publisher
            .publish(Event::new(EventType::SYSTEM_EVENT).with_correlation_id(i))
            .unwrap();
    }
    assert!(
        bus.wait_idle(Duration::from_secs(20)),
        "retries never ended"
    );
    let grown = rss().saturating_sub(before);
    let s = bridge.stats();
    // 200,000 slots of 256 bytes are 51 MB: far more than the bounds allow to be held.
    assert!(grown < 24 << 20, "RSS grew {grown} bytes: {s:?}");
    assert!(s.out_queue_full > 0, "no backpressure: {s:?}");
    // Held at most: the queue, the client's own bounded buffer (2048) and one in hand.
    assert!(s.out_queued <= (QUEUE + 2048 + 2) as u64, "{s:?}");
    // Nothing silent: each event is queued for NATS or in the dead letters.
    let lettered = bus.dead_letters().stored();
    assert_eq!(
        s.out_queued + lettered,
        EVENTS,
        "{s:?}, dead letters {lettered}"
    );

    // The server comes back: what was queued goes out.
    server.restart();
    assert!(
        wait_for(Duration::from_secs(10), || {
            let s = bridge.stats();
            s.out_sent + s.dropped(DropReason::PublishFailed) == s.out_queued
        }),
        "{:?}",
        bridge.stats()
    );
    assert!(bridge.stats().reconnects >= 1);
}
