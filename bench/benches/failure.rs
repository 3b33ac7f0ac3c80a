//! Failure paths: the cost per event of
//!
//! - `done`: the plain path (publish in place, dispatch, handler returns `Done`);
//! - `retry-once`: the handler returns `Outcome::retry(..)` on the first attempt and `Done`
//!   on the second; the retry is scheduled on the shard's timer wheel and fired after the
//!   (manual) clock is advanced past its backoff (no jitter, 1 ms base, 1 ms tick);
//! - `dead-letter`: the handler returns `Outcome::fail(..)`; the event goes to the dead-letter
//!   ring (1,024 entries, `FullPolicy::DropOldest`, so it stays full and drops the oldest).
//!
//! Poll mode on the bench thread, batches of 64 (the most timer entries one poll fires), a
//! `ManualClock`. One iteration is one published event, whatever happens to it after.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{done, Probe, Task};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::{
    Bus, Draft, EventType, Filter, FullPolicy, Jitter, ManualClock, Outcome, RetryPolicy,
};

const BATCH: u64 = 64;

#[derive(Clone, Copy, PartialEq)]
enum Path {
    Done,
    RetryOnce,
    DeadLetter,
}

fn case(c: &mut Criterion, path: Path) {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .ring_capacity_all(1024)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(1),
            multiplier: 2.0,
            cap: Duration::from_secs(1),
            jitter: Jitter::None,
        })
        .tick(Duration::from_millis(1))
        .dead_letters(1024, FullPolicy::DropOldest)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("producer").expect("agent");
    let d = done();
    let mut probe = Probe::new(&d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        let first = dl.header().attempts() == 0;
        let outcome = match path {
            Path::Done => Outcome::Done,
            Path::RetryOnce if first => return Outcome::retry(7),
            Path::RetryOnce => Outcome::Done,
            Path::DeadLetter => Outcome::fail(9),
        };
        probe.observe(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        outcome
    })
    .expect("subscribe");
    let mut shard = shards.remove(0);
    let mut publisher = bus.publisher(agent).expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    let name = match path {
        Path::Done => "done",
        Path::RetryOnce => "retry-once",
        Path::DeadLetter => "dead-letter",
    };
    let mut next = 0u64;
    let mut g = c.benchmark_group("failure_paths");
    g.throughput(Throughput::Elements(1));
    g.bench_function(name, |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            let mut left = n;
            while left > 0 {
                let k = left.min(BATCH);
                for _ in 0..k {
                    publisher
                        .try_publish_with(draft, &Task::new(next))
                        .expect("publish");
                    next += 1;
                }
                let mut polled = 0;
                while polled < k as usize {
                    polled += shard.poll(BATCH as usize);
                }
                if path == Path::RetryOnce {
                    // Past the 1 ms backoff; the retries fire on the next polls.
                    clock.advance(Duration::from_millis(2));
                    while d.load(Ordering::Acquire) < next {
                        shard.poll(BATCH as usize);
                    }
                }
                left -= k;
            }
            start.elapsed()
        })
    });
    g.finish();
    assert_eq!(d.load(Ordering::Acquire), next, "every event handled once");
    let stats = bus.stats();
    let shard_stats = &stats.shards[0];
    match path {
        Path::Done => assert_eq!(shard_stats.retries_scheduled + shard_stats.dead_lettered, 0),
        Path::RetryOnce => assert_eq!(shard_stats.retries_fired, next),
        Path::DeadLetter => assert_eq!(shard_stats.dead_lettered, next),
    }
    drop(publisher);
    drop(shard);
    bus.close();
}

fn failure(c: &mut Criterion) {
    case(c, Path::Done);
    case(c, Path::RetryOnce);
    case(c, Path::DeadLetter);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = failure
}
criterion_main!(benches);
