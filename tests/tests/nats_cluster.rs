//! A three-server JetStream cluster (R3) loses nothing when the server both clients are
//! connected to is killed mid-run: they fail over to the servers the cluster announced.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, BridgeError, Export, JetStreamImport};
use dreamnet_bus::{Bus, Event, Filter, Outcome};
use dreamnet_bus_tests::nats_server::NatsCluster;
use dreamnet_bus_tests::raw_nats::RawClient;

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
