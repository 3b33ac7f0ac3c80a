//! Streaming subscriptions through the public API: each full-ring policy with exact
//! counts (and a property test of all three against a model), in-place reads, blocking
//! and timed waits on worker-mode buses, the end of a stream, the iterator and the async
//! `Stream`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dreamnet_bus::{
    Bus, DeadReason, Event, EventStream, EventType, Filter, Jitter, ManualClock, Publisher,
    RetryPolicy, Shard, StreamError, StreamPolicy, WaitStrategy, STREAM_FULL,
};
use proptest::prelude::*;

fn polled(retry_attempts: u32) -> (Bus, Vec<Shard>, ManualClock) {
    let clock = ManualClock::new();
    let retry = RetryPolicy::builder()
        .max_attempts(retry_attempts)
        .base(Duration::from_millis(1))
        .cap(Duration::from_millis(1))
        .jitter(Jitter::None)
        .build()
        .expect("policy");
    let (bus, shards) = Bus::builder()
        .manual_clock(clock.clone())
        .retry_policy(retry)
        .build_polled()
        .expect("bus");
    (bus, shards, clock)
}

fn publisher(bus: &Bus) -> Publisher {
    bus.publisher(bus.register_agent("producer").expect("agent"))
        .expect("publisher")
}

fn send(p: &mut Publisher, seq: u64) {
    let event = Event::new(EventType::AGENT_TASK)
        .with_payload(&seq)
        .expect("fits");
    p.try_publish(event).expect("published");
}

fn seq(e: &Event) -> u64 {
    e.payload::<u64>().expect("a u64").to_native()
}

fn poll(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(1024)).sum::<usize>() > 0 {}
}

fn tasks(bus: &Bus, capacity: usize, policy: StreamPolicy) -> EventStream {
    bus.stream(Filter::of_type(EventType::AGENT_TASK), capacity, policy)
        .expect("stream")
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts_every_drop() {
    let (bus, mut shards, _) = polled(5);
    let mut stream = tasks(&bus, 4, StreamPolicy::DropOldest);
    let mut p = publisher(&bus);
    for i in 0..10 {
        send(&mut p, i);
    }
    poll(&mut shards);
    let got: Vec<u64> = (0..4).map(|_| seq(&stream.try_next().unwrap())).collect();
    assert_eq!(got, [6, 7, 8, 9]);
    assert_eq!(stream.try_next().unwrap_err(), StreamError::Empty);
    let st = stream.stats();
    assert_eq!((st.delivered, st.stored, st.consumed), (10, 10, 4));
    assert_eq!((st.dropped, st.lag_reported, st.queued), (6, 0, 0));
    assert_eq!(st.delivered, st.consumed + st.dropped + st.queued);
}

#[test]
fn lag_tells_the_consumer_how_many_it_missed_before_the_next_event() {
    let (bus, mut shards, _) = polled(5);
    let mut stream = tasks(&bus, 4, StreamPolicy::Lag);
    let mut p = publisher(&bus);
    for i in 0..3 {
        send(&mut p, i);
    }
    poll(&mut shards);
    assert_eq!(seq(&stream.try_next().unwrap()), 0);
    for i in 3..10 {
        send(&mut p, i);
    }
    poll(&mut shards);
    // Queued: 1 2 3 4 5 6 7 8 9 in a ring of 4: 1..=5 were evicted.
    assert_eq!(stream.try_next().unwrap_err(), StreamError::Lagged(5));
    let rest: Vec<u64> = (0..4).map(|_| seq(&stream.try_next().unwrap())).collect();
    assert_eq!(rest, [6, 7, 8, 9]);
    assert_eq!(stream.try_next().unwrap_err(), StreamError::Empty);
    let st = stream.stats();
    assert_eq!(
        (st.delivered, st.consumed, st.dropped, st.lag_reported),
        (10, 5, 5, 5)
    );
}

#[test]
fn backpressure_retries_on_the_wheel_then_dead_letters() {
    // 3 attempts: the first delivery and two retries, 1 ms apart.
    let (bus, mut shards, clock) = polled(3);
    let mut stream = tasks(&bus, 2, StreamPolicy::Backpressure);
    let mut p = publisher(&bus);
    for i in 0..5 {
        send(&mut p, i);
    }
    poll(&mut shards);
    let st = stream.stats();
    assert_eq!((st.stored, st.backpressured), (2, 3));
    // Room for one: the first retry of event 2 gets in, 3 and 4 are refused again.
    assert_eq!(seq(&stream.try_next().unwrap()), 0);
    clock.advance(Duration::from_millis(1));
    poll(&mut shards);
    assert_eq!(
        (stream.stats().stored, stream.stats().backpressured),
        (3, 5)
    );
    // No room: the last attempts of 3 and 4 are refused; they go to the dead letters.
    clock.advance(Duration::from_millis(1));
    poll(&mut shards);
    let got: Vec<u64> = core::iter::from_fn(|| stream.try_next().ok())
        .map(|e| seq(&e))
        .collect();
    assert_eq!(got, [1, 2]);
    let mut dead = Vec::new();
    bus.dead_letters()
        .inspect(|l| dead.push((seq(&l.event), l.reason, l.last_error)));
    assert_eq!(
        dead,
        [3, 4].map(|s| (s, DeadReason::RetriesExhausted, Some(STREAM_FULL)))
    );
    let st = stream.stats();
    assert_eq!(
        st.consumed + dead.len() as u64,
        5,
        "every event consumed or dead-lettered"
    );
    assert_eq!((st.delivered, st.backpressured), (10, 7));
}

#[test]
fn a_borrowed_event_is_never_evicted_and_what_is_refused_instead_is_counted() {
    let (bus, mut shards, _) = polled(5);
    let mut stream = tasks(&bus, 2, StreamPolicy::DropOldest);
    let mut p = publisher(&bus);
    send(&mut p, 0);
    send(&mut p, 1);
    poll(&mut shards);
    {
        let held = stream.try_next_ref().unwrap();
        assert_eq!(seq(&held), 0);
        for i in 2..5 {
            send(&mut p, i);
        }
        poll(&mut shards);
        assert_eq!(seq(&held), 0, "still event 0: its slot was not written");
    }
    let rest: Vec<u64> = core::iter::from_fn(|| stream.try_next().ok())
        .map(|e| seq(&e))
        .collect();
    // 2 fits beside the held 0; 3 and 4 find the ring full with its oldest held.
    assert_eq!(rest, [1, 2]);
    let st = stream.stats();
    assert_eq!((st.delivered, st.consumed, st.dropped), (5, 3, 2));
}

#[test]
fn a_stream_ends_after_unsubscribe_once_its_events_are_out() {
    let (bus, mut shards, _) = polled(5);
    let mut stream = tasks(&bus, 8, StreamPolicy::Backpressure);
    let mut p = publisher(&bus);
    send(&mut p, 1);
    poll(&mut shards);
    bus.unsubscribe(stream.id()).expect("subscribed");
    poll(&mut shards);
    assert_eq!(seq(&stream.try_next().unwrap()), 1, "stored before the end");
    assert_eq!(stream.try_next().unwrap_err(), StreamError::Closed);
    assert_eq!(stream.next().unwrap_err(), StreamError::Closed, "no wait");
}

#[test]
fn capacity_out_of_range_is_a_typed_error() {
    let (bus, _shards, _) = polled(5);
    let err = bus.stream(Filter::any(), 0, StreamPolicy::Lag).unwrap_err();
    assert!(matches!(
        err,
        dreamnet_bus::BusError::StreamCapacity { capacity: 0, .. }
    ));
}

fn worker_bus(wait: WaitStrategy) -> Bus {
    Bus::builder()
        .shards(1)
        .wait_strategy(wait)
        .build()
        .expect("bus")
}

#[test]
fn a_blocked_next_is_woken_by_the_shard() {
    // The shard yields (it sees the publish at once); the consumer parks for up to 5 s at
    // a time, so only the shard's wake-up can make it return sooner. On a loaded machine
    // the consumer may not have reached its park when the event comes (then nobody needs
    // waking): rounds until one shows a wake-up.
    let bus = worker_bus(WaitStrategy::Yield);
    let mut p = publisher(&bus);
    let mut woken = 0;
    for round in 0..5 {
        let mut stream = tasks(&bus, 16, StreamPolicy::Backpressure);
        stream.set_wait_strategy(WaitStrategy::Park(Duration::from_secs(5)));
        let consumer = std::thread::spawn(move || {
            let started = Instant::now();
            let e = stream.next().expect("an event");
            let id = stream.id();
            (seq(&e), started.elapsed(), stream.stats(), id)
        });
        // Longer each round: the consumer yields before it parks, and on a loaded machine
        // each yield can take a time slice.
        std::thread::sleep(Duration::from_millis(100 << round));
        send(&mut p, round);
        let (got, waited, stats, id) = consumer.join().expect("consumer");
        bus.unsubscribe(id).expect("subscribed");
        assert_eq!(got, round);
        assert!(
            waited < Duration::from_secs(4),
            "woken, not timed out: {waited:?}"
        );
        assert!(
            waited >= Duration::from_millis(90),
            "it did block: {waited:?}"
        );
        assert!(stats.wakeups <= 1, "{stats:?}");
        woken += stats.wakeups;
        if woken > 0 {
            return;
        }
    }
    panic!("the consumer never slept in 5 rounds");
}

#[test]
fn a_consumer_that_keeps_up_costs_the_shard_no_wakeups() {
    let bus = worker_bus(WaitStrategy::Yield);
    let mut stream = tasks(&bus, 1 << 14, StreamPolicy::Backpressure);
    stream.set_wait_strategy(WaitStrategy::Spin);
    let consumer = std::thread::spawn(move || {
        let mut sum = 0;
        for _ in 0..10_000 {
            sum += seq(&stream.next().expect("an event"));
        }
        (sum, stream.stats())
    });
    let mut p = publisher(&bus);
    for i in 0..10_000u64 {
        let event = Event::new(EventType::AGENT_TASK)
            .with_payload(&i)
            .expect("fits");
        p.publish(event).expect("published");
    }
    let (sum, stats) = consumer.join().expect("consumer");
    assert_eq!(sum, (0..10_000).sum::<u64>());
    assert_eq!((stats.consumed, stats.wakeups), (10_000, 0));
}

#[test]
fn next_timeout_times_out_and_then_delivers() {
    let bus = worker_bus(WaitStrategy::default());
    let mut stream = tasks(&bus, 16, StreamPolicy::Lag);
    let started = Instant::now();
    assert_eq!(
        stream.next_timeout(Duration::from_millis(30)).unwrap_err(),
        StreamError::Timeout
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    send(&mut publisher(&bus), 7);
    let e = stream
        .next_timeout(Duration::from_secs(5))
        .expect("delivered");
    assert_eq!(seq(&e), 7);
}

#[test]
fn the_iterator_yields_in_order_and_ends_when_the_bus_closes() {
    let bus = worker_bus(WaitStrategy::default());
    let stream = tasks(&bus, 1024, StreamPolicy::Backpressure);
    let consumer = std::thread::spawn(move || {
        stream
            .map(|r| seq(&r.expect("no lag under backpressure")))
            .collect::<Vec<_>>()
    });
    let mut p = publisher(&bus);
    for i in 0..500 {
        send(&mut p, i);
    }
    drop(p);
    bus.close();
    drop(bus); // the shard stops: its handlers (the stream's producer) are dropped
    let got = consumer.join().expect("consumer");
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

#[test]
fn the_async_stream_works_on_tokio() {
    use futures_core::Stream;
    let bus = worker_bus(WaitStrategy::default());
    let mut stream = tasks(&bus, 64, StreamPolicy::Lag);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut p = publisher(&bus);
    let got = rt.block_on(async move {
        let producer = tokio::task::spawn_blocking(move || {
            for i in 0..100 {
                std::thread::sleep(Duration::from_micros(200));
                send(&mut p, i);
            }
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            let item = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx))
                .await
                .expect("open")
                .expect("no lag: the task keeps up");
            got.push(seq(&item));
        }
        producer.await.expect("producer");
        got
    });
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

#[derive(Clone, Debug)]
enum Op {
    Publish(u8),
    Poll,
    Consume(u8),
}

fn policy() -> impl Strategy<Value = StreamPolicy> {
    prop_oneof![
        Just(StreamPolicy::Backpressure),
        Just(StreamPolicy::DropOldest),
        Just(StreamPolicy::Lag)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any interleaving of publishes, polls and consumes, for each policy, against a model
    /// (a deque of the capacity; Backpressure with one attempt, so a refused event goes
    /// straight to the dead letters): the same events come out, the same lags are
    /// reported, and the counts add up.
    #[test]
    fn every_policy_matches_a_model(
        policy in policy(),
        capacity in 1usize..6,
        ops in proptest::collection::vec(prop_oneof![
            (1u8..6).prop_map(Op::Publish), Just(Op::Poll), (1u8..6).prop_map(Op::Consume)
        ], 1..40),
    ) {
        let (bus, mut shards, _) = polled(1);
        let mut stream = tasks(&bus, capacity, policy);
        let mut p = publisher(&bus);
        let (mut next, mut in_flight) = (0u64, VecDeque::new());
        let mut model: VecDeque<u64> = VecDeque::new();
        let (mut dropped, mut dead, mut lag) = (0u64, 0u64, 0u64);
        for op in ops {
            match op {
                Op::Publish(n) => for _ in 0..n {
                    send(&mut p, next);
                    in_flight.push_back(next);
                    next += 1;
                },
                Op::Poll => {
                    poll(&mut shards);
                    let (d, evicted) = model_poll(policy, &mut model, &mut in_flight, capacity);
                    dead += d;
                    dropped += evicted;
                    lag += evicted;
                }
                Op::Consume(n) => for _ in 0..n {
                    let got = stream.try_next();
                    if policy == StreamPolicy::Lag && lag > 0 {
                        prop_assert_eq!(got, Err(StreamError::Lagged(lag)));
                        lag = 0;
                        continue;
                    }
                    match model.pop_front() {
                        Some(s) => prop_assert_eq!(got.map(|e| seq(&e)), Ok(s)),
                        None => prop_assert_eq!(got, Err(StreamError::Empty)),
                    }
                },
            }
        }
        poll(&mut shards);
        let (d, evicted) = model_poll(policy, &mut model, &mut in_flight, capacity);
        let st = stream.stats();
        prop_assert_eq!(st.dropped, dropped + evicted);
        prop_assert_eq!(bus.dead_letters().len() as u64, dead + d);
        prop_assert_eq!(st.queued, model.len() as u64);
        prop_assert_eq!(next, st.consumed + st.dropped + st.queued + dead + d);
    }
}

/// A poll in the model: the events in flight enter the deque of `capacity`, as `policy`
/// says. Returns how many were dead-lettered and how many evicted.
fn model_poll(
    policy: StreamPolicy,
    model: &mut VecDeque<u64>,
    in_flight: &mut VecDeque<u64>,
    capacity: usize,
) -> (u64, u64) {
    let (mut dead, mut evicted) = (0, 0);
    for s in in_flight.drain(..) {
        if model.len() < capacity {
            model.push_back(s);
        } else if policy == StreamPolicy::Backpressure {
            dead += 1;
        } else {
            model.pop_front();
            model.push_back(s);
            evicted += 1;
        }
    }
    (dead, evicted)
}
