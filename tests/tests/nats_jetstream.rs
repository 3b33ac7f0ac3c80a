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

/// The handler's outcome is the ack: `Done` acks, `Retry` naks (JetStream redelivers after
/// the policy's delay), `Fail` terminates, and a `Retry` on the last delivery the policy
/// allows (MaxDeliver = `max_attempts`) terminates too; both end in the bus's dead letters.
#[test]
fn jetstream_outcomes_ack_nak_and_term() {
    use dreamnet_bus::bridge::jetstream::DELIVERIES_EXHAUSTED;
    use dreamnet_bus::{DeadReason, ErrorCode, Jitter};
    use std::collections::HashMap;

    const EACH: u64 = 10;
    let server = NatsServer::start();
    let url = server.url();
    let consumer_bus = Arc::new(Bus::builder().build().unwrap());
    let job = consumer_bus.register_event_type("js.job").unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .base(Duration::from_millis(10))
        .cap(Duration::from_millis(40))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let calls: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let record = Arc::clone(&calls);
    let consumer = Bridge::builder(&url)
        .bus_id("consumer")
        .jetstream_import(
            JetStreamImport::new("outcomes", Some("sink"), Filter::of_type(job), move |d| {
                let c = d.header().correlation_id();
                let mut calls = record.lock().unwrap();
                let n = calls.entry(c).or_insert(0);
                *n += 1;
                match c % 3 {
                    0 => Outcome::fail(7),
                    1 if *n == 1 => Outcome::retry(1),
                    1 => Outcome::Done,
                    _ => Outcome::retry(2),
                }
            })
            .with_retry(policy),
        )
        .start(Arc::clone(&consumer_bus))
        .expect("consumer bridge");

    let producer_bus = Arc::new(Bus::builder().build().unwrap());
    let pjob = producer_bus.register_event_type("js.job").unwrap();
    let sink = producer_bus.register_agent("sink").unwrap();
    let me = producer_bus.register_agent("producer").unwrap();
    let producer = Bridge::builder(&url)
        .bus_id("producer")
        .export(Export::agent("sink", Filter::of_type(pjob)).jetstream())
        .start(Arc::clone(&producer_bus))
        .expect("producer bridge");
    let mut publisher = producer_bus.publisher(me).unwrap();
    for c in 1..=3 * EACH {
        publisher
            .publish(Event::new(pjob).to(sink).with_correlation_id(c))
            .unwrap();
    }

    let expected = |c: u64| match c % 3 {
        0 => 1,
        1 => 2,
        _ => 3,
    };
    let end = Instant::now() + Duration::from_secs(20);
    let done = || {
        let calls = calls.lock().unwrap();
        (1..=3 * EACH).all(|c| calls.get(&c).copied() == Some(expected(c)))
            && consumer_bus.dead_letters().len() == 2 * EACH as usize
    };
    while !done() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let calls_now = calls.lock().unwrap().clone();
    for c in 1..=3 * EACH {
        assert_eq!(calls_now.get(&c).copied(), Some(expected(c)), "event {c}");
    }
    let mut reasons: HashMap<DeadReason, u64> = HashMap::new();
    consumer_bus
        .dead_letters()
        .inspect(|l| *reasons.entry(l.reason).or_default() += 1);
    assert_eq!(
        reasons,
        HashMap::from([
            (DeadReason::Failed { code: ErrorCode(7) }, EACH),
            (
                DeadReason::Failed {
                    code: DELIVERIES_EXHAUSTED
                },
                EACH
            ),
        ])
    );
    let s = consumer.shutdown();
    assert_eq!(s.in_acked, EACH, "{s:?}");
    assert_eq!(s.in_nacked, EACH + 2 * EACH, "{s:?}");
    assert_eq!(s.in_termed, 2 * EACH, "{s:?}");
    assert_eq!(s.in_redelivered, EACH + 2 * EACH, "{s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
    drop(producer);
}

/// A JetStream import whose filter does not match what its consumer pulls: no handler can
/// ever ack those messages, so they are terminated and counted, not redelivered forever.
#[test]
fn jetstream_messages_no_handler_takes_are_terminated_and_counted() {
    use dreamnet_bus::bridge::DropReason;

    let server = NatsServer::start();
    let url = server.url();
    let consumer_bus = Arc::new(Bus::builder().build().unwrap());
    let other = consumer_bus.register_event_type("js.other").unwrap();
    let consumer = Bridge::builder(&url)
        .bus_id("consumer")
        .jetstream_import(JetStreamImport::new(
            "mismatch",
            Some("sink"),
            Filter::of_type(other),
            |_| Outcome::Done,
        ))
        .start(Arc::clone(&consumer_bus))
        .unwrap();
    let producer_bus = Arc::new(Bus::builder().build().unwrap());
    let job = producer_bus.register_event_type("js.job").unwrap();
    let sink = producer_bus.register_agent("sink").unwrap();
    let me = producer_bus.register_agent("producer").unwrap();
    let producer = Bridge::builder(&url)
        .bus_id("producer")
        .export(Export::agent("sink", Filter::of_type(job)).jetstream())
        .start(Arc::clone(&producer_bus))
        .unwrap();
    let mut publisher = producer_bus.publisher(me).unwrap();
    for c in 1..=3 {
        publisher
            .publish(Event::new(job).to(sink).with_correlation_id(c))
            .unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    while consumer.stats().in_termed < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let s = consumer.stats();
    assert_eq!(s.dropped(DropReason::NoHandler), 3, "{s:?}");
    assert_eq!(
        (s.in_received, s.in_termed, s.in_redelivered),
        (3, 3, 0),
        "{s:?}"
    );
    drop(producer);
}
