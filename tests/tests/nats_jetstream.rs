//! JetStream, at least once, with the server killed (SIGKILL) and restarted mid-run:
//! nothing is lost, and the stream holds each event once (`Nats-Msg-Id` dedupe).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, Export, JetStreamImport};
use dreamnet_bus::{Bus, Event, Filter, Outcome, RetryPolicy};
use dreamnet_bus_tests::nats_server::NatsServer;
use dreamnet_bus_tests::raw_nats::RawClient;

const N: u64 = 3000;

#[test]
fn jetstream_at_least_once_across_a_server_restart() {
    let mut server = NatsServer::start();
    let url = server.url();

    // The consumer: a durable consumer whose handler records correlation ids.
    let consumer_bus = Arc::new(Bus::builder().build().unwrap());
    let job = consumer_bus.register_event_type("js.job").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let consumer = Bridge::builder(&url)
        .bus_id("consumer")
        .max_reconnect_delay(Duration::from_millis(200))
        .ack_wait(Duration::from_secs(2))
        .jetstream_import(JetStreamImport::new(
            "sink-workers",
            Some("sink"),
            Filter::of_type(job),
            move |d| {
                record.lock().unwrap().push(d.header().correlation_id());
                Outcome::Done
            },
        ))
        .start(Arc::clone(&consumer_bus))
        .expect("consumer bridge");

    // The producer: direct events to `sink` go out through JetStream. A small queue and a
    // patient retry policy: while the server is down the bus holds events on its wheel.
    let producer_bus = Arc::new(Bus::builder().build().unwrap());
    let pjob = producer_bus.register_event_type("js.job").unwrap();
    let sink = producer_bus.register_agent("sink").unwrap();
    let me = producer_bus.register_agent("producer").unwrap();
    let patient = RetryPolicy::builder()
        .max_attempts(100_000)
        .base(Duration::from_millis(1))
        .cap(Duration::from_millis(50))
        .build()
        .unwrap();
    let producer = Bridge::builder(&url)
        .bus_id("producer")
        .max_reconnect_delay(Duration::from_millis(200))
        .queue_capacity(256)
        .retry_policy(patient)
        .export(Export::agent("sink", Filter::of_type(pjob)).jetstream())
        .start(Arc::clone(&producer_bus))
        .expect("producer bridge");

    let mut publisher = producer_bus.publisher(me).unwrap();
    for i in 1..=N {
        publisher
            .publish(Event::new(pjob).to(sink).with_correlation_id(i))
            .unwrap();
        if i == N / 3 {
            server.kill();
        }
        if i == 2 * N / 3 {
            // Down longer than the publish ack timeout (2 s): acks time out, publishes
            // are sent again, and the stream's dedupe keeps one copy of each.
            std::thread::sleep(Duration::from_millis(2500));
            server.restart();
        }
    }

    let end = Instant::now() + Duration::from_secs(40);
    let distinct = || {
        seen.lock()
            .unwrap()
            .iter()
            .copied()
            .collect::<BTreeSet<u64>>()
    };
    while distinct().len() < N as usize && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = distinct();
    let missing: Vec<u64> = (1..=N).filter(|i| !got.contains(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "lost: {} events, first {missing:?}; producer {:?}; consumer {:?}",
        N as usize - got.len(),
        producer.stats(),
        consumer.stats()
    );
    assert_eq!(got, (1..=N).collect());

    // Duplicates removed: the stream holds each event once.
    let mut raw = RawClient::connect(&url).unwrap();
    assert_eq!(raw.stream_messages("DREAMNET_dreamnet").unwrap(), N);
    let p = producer.shutdown();
    assert_eq!(p.out_sent, N, "{p:?}");
    assert_eq!(p.out_acked, N, "each publish acknowledged once: {p:?}");
    assert_eq!(p.dropped_total(), 0, "{p:?}");
    assert!(p.out_resent > 0, "the outage was felt: {p:?}");
    let c = consumer.shutdown();
    assert!(c.in_acked >= N, "{c:?}");
    assert_eq!(c.dropped_total(), 0, "{c:?}");
    eprintln!(
        "jetstream restart: handler calls {}, distinct {}, producer {p:?}, consumer {c:?}",
        seen.lock().unwrap().len(),
        got.len()
    );
}
