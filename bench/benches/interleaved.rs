//! The hot path against its peers in interleaved rounds: each round runs every pipeline
//! once, back to back, and reports each one's ratio to the disruptor of the same round; the
//! table ends with the median ratio over the rounds. On a shared VM the throughput of
//! every pipeline moves several-fold within a minute (vCPU placement, neighbours), so
//! ratios from separate criterion rows can compare different machines; a round's ratios
//! compare the same one.
//!
//! Every pipeline: one producer pinned to core 1, one consumer pinned to core 0, 256-byte
//! slots, a handler that reads a `u64` from the event and counts. The pipelines:
//! - `with`: `try_publish_with` (a 64-byte rkyv payload written in place), `WaitStrategy::Spin`;
//! - `event`: `try_publish` of an `Event` built on the stack;
//! - `batch`: `try_publish_batch_with` of 64 payloads;
//! - `d-slot` / `d-u64`: disruptor 4.4, `BusySpin`; the producer writes the whole slot / one `u64`;
//! - `d-batch`: the minimal disruptor's `batch_publish` of 64;
//! - `xbeam`: a bounded crossbeam channel of `Box<Slot>`, blocking `send` / `recv`;
//! - `with+a` / `batch+a`: `with` / `batch` on a bus with live analytics on
//!   (`BusBuilder::analytics(true)`): their ratio to `with` / `batch` is its cost;
//! - `poll` / `poll+a`: one thread, no cross-core traffic: `try_publish_with` 64 events,
//!   then `Shard::poll` them, analytics off / on. The steadiest view of what analytics
//!   adds to the shard's work per event (the two-core pipelines swing with the machine).
//!
//! `cargo bench -p dreamnet-bus-bench --bench interleaved` (about a minute);
//! `INTERLEAVED_EVENTS` and `INTERLEAVED_ROUNDS` change the size. `INTERLEAVED_ONLY=poll`
//! runs only the `poll` / `poll+a` pair (many short rounds: the analytics cost).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::{pin_current, Slot, Task, CAPACITY};
use disruptor::{BusySpin, ProcessorSettings as _, Producer as _};
use dreamnet_bus::{Draft, Event, EventType, Filter, Outcome, PublishError};

/// Consumer's and producer's cores.
const CONSUMER: usize = 0;
const PRODUCER: usize = 1;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits until the consumer has counted `n`.
fn wait(done: &AtomicU64, n: u64) {
    while done.load(Ordering::Acquire) < n {
        core::hint::spin_loop();
    }
}

/// Runs `publish` for `n` events on the producer core; M events/s until the consumer has all.
fn timed(n: u64, done: &AtomicU64, publish: impl FnOnce()) -> f64 {
    let took = common::with_pinned(PRODUCER, || {
        let start = Instant::now();
        publish();
        wait(done, n);
        start.elapsed()
    });
    n as f64 / took.as_secs_f64() / 1e6
}

#[derive(Clone, Copy, PartialEq)]
enum Ours {
    With,
    Event,
    Batch,
}

fn dreamnet(kind: Ours, n: u64, analytics: bool) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let bus = common::spinning_builder()
        .analytics(analytics)
        .build()
        .expect("bus");
    let agent = bus.register_agent("producer").expect("agent");
    let (d, mut count, mut sum) = (Arc::clone(&done), 0u64, 0u64);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        sum = sum.wrapping_add(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        count += 1;
        d.store(count, Ordering::Release);
        Outcome::Done
    })
    .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    let rate = timed(n, &done, || match kind {
        Ours::With => {
            for seq in 0..n {
                let task = Task::new(seq);
                while let Err(e) = p.try_publish_with(draft, &task) {
                    assert!(matches!(e, PublishError::Full(())), "{e}");
                    core::hint::spin_loop();
                }
            }
        }
        Ours::Event => {
            for seq in 0..n {
                let mut event = Event::new(EventType::AGENT_TASK)
                    .with_payload(&Task::new(seq))
                    .expect("fits");
                loop {
                    match p.try_publish(event) {
                        Ok(_) => break,
                        Err(PublishError::Full(back)) => event = back,
                        Err(e) => panic!("{e}"),
                    }
                    core::hint::spin_loop();
                }
            }
        }
        Ours::Batch => {
            let mut tasks: Vec<Task> = (0..64).map(Task::new).collect();
            let mut seq = 0;
            while seq < n {
                for (i, t) in tasks.iter_mut().enumerate() {
                    *t = Task::new(seq + i as u64);
                }
                let mut sent = 0;
                while sent < tasks.len() {
                    match p.try_publish_batch_with(draft, &tasks[sent..]) {
                        Ok(r) => sent += r.count,
                        Err(PublishError::Full(())) => core::hint::spin_loop(),
                        Err(e) => panic!("{e}"),
                    }
                }
                seq += tasks.len() as u64;
            }
        }
    });
    drop(p);
    bus.close();
    rate
}

/// Publish and poll on one thread (poll mode): M events/s.
fn dreamnet_polled(n: u64, analytics: bool) -> f64 {
    let (bus, mut shards) = dreamnet_bus::Bus::builder()
        .analytics(analytics)
        .ring_capacity_all(CAPACITY)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("producer").expect("agent");
    let (mut count, mut sum) = (0u64, 0u64);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        sum = sum.wrapping_add(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        count += 1;
        std::hint::black_box((count, sum));
        Outcome::Done
    })
    .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    let rate = common::with_pinned(PRODUCER, || {
        let start = Instant::now();
        let mut seq = 0;
        let mut handled = 0u64;
        while seq < n {
            for _ in 0..64 {
                p.try_publish_with(draft, &Task::new(seq)).expect("room");
                seq += 1;
            }
            handled += shards[0].poll(64) as u64;
        }
        assert_eq!(handled, seq);
        n as f64 / start.elapsed().as_secs_f64() / 1e6
    });
    drop(p);
    bus.close();
    rate
}

#[derive(Clone, Copy, PartialEq)]
enum Disruptor {
    Slot,
    U64,
    Batch,
}

fn disruptor(kind: Disruptor, n: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let (d, mut count, mut sum) = (Arc::clone(&done), 0u64, 0u64);
    let handler = move |ev: &Slot, _: i64, _: bool| {
        sum = sum.wrapping_add(ev.seq);
        count += 1;
        d.store(count, Ordering::Release);
    };
    let mut producer = disruptor::build_single_producer(CAPACITY, || Slot::new(0, 0), BusySpin)
        .pin_at_core(CONSUMER)
        .handle_events_with(handler)
        .build();
    timed(n, &done, || match kind {
        Disruptor::Slot => (0..n).for_each(|seq| producer.publish(|ev| ev.fill(0, seq))),
        Disruptor::U64 => (0..n).for_each(|seq| producer.publish(|ev| ev.seq = seq)),
        Disruptor::Batch => {
            let mut seq = 0;
            while seq < n {
                producer.batch_publish(64, |iter| {
                    for ev in iter {
                        ev.seq = seq;
                        seq += 1;
                    }
                });
            }
        }
    })
}

fn crossbeam(n: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let (tx, rx) = crossbeam_channel::bounded::<Box<Slot>>(CAPACITY);
    let d = Arc::clone(&done);
    let consumer = std::thread::spawn(move || {
        pin_current(CONSUMER);
        let (mut count, mut sum) = (0u64, 0u64);
        while let Ok(ev) = rx.recv() {
            sum = sum.wrapping_add(ev.seq);
            count += 1;
            d.store(count, Ordering::Release);
        }
        std::hint::black_box(sum);
    });
    let rate = timed(n, &done, || {
        for seq in 0..n {
            tx.send(Box::new(Slot::new(0, seq))).expect("send");
        }
    });
    drop(tx);
    consumer.join().expect("consumer");
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let bench = std::env::args().any(|a| a == "--bench");
    let n = env_or("INTERLEAVED_EVENTS", if bench { 2_000_000 } else { 20_000 });
    let rounds = env_or("INTERLEAVED_ROUNDS", if bench { 5 } else { 1 }) as usize;
    if std::env::var("INTERLEAVED_ONLY").is_ok_and(|v| v == "poll") {
        let pairs: Vec<(f64, f64)> = (0..rounds)
            .map(|_| (dreamnet_polled(n, false), dreamnet_polled(n, true)))
            .collect();
        let ratios: Vec<f64> = pairs.iter().map(|(off, on)| on / off).collect();
        println!(
            "{rounds} rounds of {n} events, poll mode: median off {:.2} M/s, on {:.2} M/s, \
             median same-round ratio on / off {:.3}",
            median(pairs.iter().map(|p| p.0).collect()),
            median(pairs.iter().map(|p| p.1).collect()),
            median(ratios)
        );
        return;
    }
    let names = [
        "with", "event", "batch", "d-slot", "d-u64", "d-batch", "xbeam", "with+a", "batch+a",
        "poll", "poll+a",
    ];
    println!(
        "{n} events per pipeline per round; M events/s, then ratios in the same round\n{}",
        names.map(|s| format!("{s:>8}")).join("")
    );
    let mut rows = Vec::new();
    for _ in 0..rounds {
        let r = [
            dreamnet(Ours::With, n, false),
            dreamnet(Ours::Event, n, false),
            dreamnet(Ours::Batch, n, false),
            disruptor(Disruptor::Slot, n),
            disruptor(Disruptor::U64, n),
            disruptor(Disruptor::Batch, n),
            crossbeam(n),
            dreamnet(Ours::With, n, true),
            dreamnet(Ours::Batch, n, true),
            dreamnet_polled(n, false),
            dreamnet_polled(n, true),
        ];
        println!("{}", r.map(|x| format!("{x:8.1}")).join(""));
        rows.push(r);
    }
    let ratio = |a: usize, b: usize| median(rows.iter().map(|r| r[a] / r[b]).collect());
    println!("median over {rounds} rounds of the same-round ratios:");
    println!(
        "  with / d-slot {:.2}   event / d-slot {:.2}   with / d-u64 {:.2}",
        ratio(0, 3),
        ratio(1, 3),
        ratio(0, 4)
    );
    println!(
        "  batch64 / d-batch64 {:.2}   with / xbeam {:.1}   event / xbeam {:.1}",
        ratio(2, 5),
        ratio(0, 6),
        ratio(1, 6)
    );
    println!(
        "  analytics on / off: with+a / with {:.2}   batch+a / batch {:.2}   poll+a / poll {:.2}",
        ratio(7, 0),
        ratio(8, 2),
        ratio(10, 9)
    );
}
