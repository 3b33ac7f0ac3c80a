//! Faults: a dead server gives backpressure (the bridge's handler returns `Retry`, the bus
//! retries and dead-letters under its policy) and memory stays bounded; a three-server
//! JetStream cluster (R3) loses nothing when one server is killed mid-run.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, BridgeError, DropReason, Export, JetStreamImport};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome};
use dreamnet_bus_tests::nats_server::{NatsCluster, NatsServer};
use dreamnet_bus_tests::raw_nats::RawClient;

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

/// Starts a bridge, retrying while the cluster elects its JetStream leaders.
fn start_retrying(make: impl Fn() -> Result<Bridge, BridgeError>) -> Bridge {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match make() {
            Ok(b) => return b,
            Err(e) if Instant::now() < end => {
                eprintln!("cluster not ready yet: {e}");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("bridge never started on the cluster: {e}"),
        }
    }
}

#[test]
fn jetstream_r3_cluster_loses_nothing_when_a_server_is_killed() {
    const N: u64 = 1500;
    let mut cluster = NatsCluster::start(3);
    // Both clients are given the first server only, the one killed mid-run: they must
    // fail over to the servers the cluster told them about.
    let urls = cluster.servers[0].url();
    assert_eq!(cluster.urls().split(',').count(), 3);

    let consumer_bus = Arc::new(Bus::builder().build().unwrap());
    let job = consumer_bus.register_event_type("js.job").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumer = start_retrying(|| {
        let record = Arc::clone(&seen);
        Bridge::builder(&urls)
            .bus_id("consumer")
            .replicas(3)
            .max_reconnect_delay(Duration::from_millis(200))
            .ack_wait(Duration::from_secs(2))
            .jetstream_import(JetStreamImport::new(
                "r3-workers",
                Some("sink"),
                Filter::of_type(job),
                move |d| {
                    record.lock().unwrap().push(d.header().correlation_id());
                    Outcome::Done
                },
            ))
            .start(Arc::clone(&consumer_bus))
    });

    let producer_bus = Arc::new(Bus::builder().build().unwrap());
    let pjob = producer_bus.register_event_type("js.job").unwrap();
    let sink = producer_bus.register_agent("sink").unwrap();
    let me = producer_bus.register_agent("producer").unwrap();
    let patient = dreamnet_bus::RetryPolicy::builder()
        .max_attempts(100_000)
        .cap(Duration::from_millis(50))
        .build()
        .unwrap();
    let producer = start_retrying(|| {
        Bridge::builder(&urls)
            .bus_id("producer")
            .replicas(3)
            .queue_capacity(256)
            .retry_policy(patient)
            .max_reconnect_delay(Duration::from_millis(200))
            .export(Export::agent("sink", Filter::of_type(pjob)).jetstream())
            .start(Arc::clone(&producer_bus))
    });

    let mut publisher = producer_bus.publisher(me).unwrap();
    for i in 1..=N {
        publisher
            .publish(Event::new(pjob).to(sink).with_correlation_id(i))
            .unwrap();
        if i == N / 2 {
            cluster.servers[0].kill();
        }
    }
    let distinct = || {
        seen.lock()
            .unwrap()
            .iter()
            .copied()
            .collect::<BTreeSet<u64>>()
    };
    let all = wait_for(Duration::from_secs(40), || distinct().len() == N as usize);
    assert!(
        all,
        "lost {} of {N}: producer {:?} consumer {:?}",
        N as usize - distinct().len(),
        producer.stats(),
        consumer.stats()
    );
    assert_eq!(distinct(), (1..=N).collect());
    let mut raw = RawClient::connect(&cluster.servers[1].url()).unwrap();
    assert_eq!(raw.stream_messages("DREAMNET_dreamnet").unwrap(), N);
    let p = producer.shutdown();
    let c = consumer.shutdown();
    assert_eq!(p.out_acked, N, "{p:?}");
    assert_eq!(p.dropped_total() + c.dropped_total(), 0, "{p:?} {c:?}");
    assert!(
        p.reconnects >= 1 && c.reconnects >= 1,
        "failed over: {p:?} {c:?}"
    );
    eprintln!("r3 cluster: producer {p:?} consumer {c:?}");
}
