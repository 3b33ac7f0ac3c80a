//! What the security policy costs, end to end, in one run: the `bus` bench's dreamnet-bus
//! pipeline (one producer, one worker shard, 256-byte events with a 64-byte rkyv payload,
//! the handler reading it) with no policy (`off`), then with
//!
//! - `acl`: an access-control policy: default deny, the agent allowed its type and
//!   destination, a payload limit (reads only, no shared state is written);
//! - `full`: the same plus an agent rate limit, a per-type rate limit (both far above
//!   the offered rate, so each publish spends a token of two buckets) and a quota: state
//!   shared by every publisher of the agent, which a publisher leases a few units of at
//!   a time (`core/src/policy/lease.rs`), so most publishes write no shared word.
//!
//! The `off` row runs again at the end to show the drift of the machine within the run.
//!
//! `publish_poll` isolates the publish path: poll mode, the bench thread publishes and
//! drains the shard itself every 1024 events (no second thread, less scheduler noise).
//!
//! `interleaved` is for a shared, noisy machine, where criterion's rows, run one after
//! the other, drift by more than the effect: it runs the poll-mode pipeline in rounds of
//! 4096 events per mode, `off`, `acl`, `full` back to back, 300 rounds, and prints the
//! median over rounds of each mode's time relative to the `off` batch of the same round;
//! then the same with the end-to-end worker pipeline (100 rounds).

mod common;

use std::time::{Duration, Instant};

use common::{done, relax, timed, Probe, Task, CAPACITY};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::{
    AgentId, AgentPolicy, Bus, Event, EventType, Filter, Outcome, Policy, PublishError, Rate,
    WaitStrategy,
};

fn acl(agent: AgentId) -> AgentPolicy {
    AgentPolicy::new()
        .may_publish([EventType::AGENT_TASK])
        .may_send_to([agent])
        .max_payload(EventType::AGENT_TASK, 128)
}

/// `None`: no policy.
fn policy(agent: AgentId, kind: &str) -> Option<Policy> {
    let fast = Rate::new(1_000_000_000, 1 << 40).expect("rate");
    let rules = match kind {
        "acl" => acl(agent),
        "full" => acl(agent)
            .rate_limit(fast)
            .type_rate_limit(EventType::AGENT_TASK, fast)
            .quota(u64::MAX),
        _ => return None,
    };
    Some(Policy::deny_by_default().agent(agent, rules))
}

const ROWS: [&str; 4] = ["off", "acl", "full", "off-again"];

fn install(bus: &Bus, agent: AgentId, row: &str) {
    match policy(agent, row) {
        Some(p) => bus.set_policy(p).expect("policy"),
        None => bus.clear_policy(),
    }
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_end_to_end_256B");
    g.throughput(Throughput::Elements(1));
    let d = done();
    let bus = Bus::builder()
        .pinned(false)
        .wait_strategy(WaitStrategy::Yield)
        .ring_capacity_all(CAPACITY)
        .build()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut probe = Probe::new(&d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        let seq = dl.payload::<Task>().map_or(u64::MAX, |t| t.seq.to_native());
        probe.observe(seq);
        Outcome::Done
    })
    .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    let mut next = 0u64;
    for name in ROWS {
        install(&bus, agent, name);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                timed(n, &mut next, &d, |seq| {
                    let event = Event::new(EventType::AGENT_TASK)
                        .with_payload(&Task::new(seq))
                        .expect("payload fits");
                    publisher.publish(event).expect("publish");
                })
            })
        });
    }
    drop(publisher);
    bus.close();
    assert_eq!(bus.violations(agent).total(), 0);
    g.finish();
}

fn publish_poll(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_publish_poll_256B");
    g.throughput(Throughput::Elements(1));
    let (bus, mut shards) = Bus::builder()
        .ring_capacity_all(CAPACITY)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut sum = 0u64;
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        sum = sum.wrapping_add(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        std::hint::black_box(sum);
        Outcome::Done
    })
    .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    for name in ROWS {
        install(&bus, agent, name);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let start = Instant::now();
                for seq in 0..n {
                    let event = Event::new(EventType::AGENT_TASK)
                        .with_payload(&Task::new(seq))
                        .expect("payload fits");
                    let mut event = Some(event);
                    while let Some(e) = event.take() {
                        match publisher.try_publish(e) {
                            Ok(_) => {}
                            Err(PublishError::Full(back)) => {
                                shards[0].poll(1024);
                                event = Some(back);
                                relax();
                            }
                            Err(e) => panic!("publish: {e}"),
                        }
                    }
                    if seq % 1024 == 1023 {
                        shards[0].poll(1024);
                    }
                }
                while shards[0].poll(1024) > 0 {}
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// Publishes and dispatches `n` events in poll mode; returns the time taken.
fn poll_batch(
    publisher: &mut dreamnet_bus::Publisher,
    shard: &mut dreamnet_bus::Shard,
    first: u64,
    n: u64,
) -> Duration {
    let start = Instant::now();
    for seq in first..first + n {
        let event = Event::new(EventType::AGENT_TASK)
            .with_payload(&Task::new(seq))
            .expect("payload fits");
        match publisher.try_publish(event) {
            Ok(_) => {}
            Err(e) => panic!("publish: {e}"),
        }
        if seq % 1024 == 1023 {
            shard.poll(1024);
        }
    }
    while shard.poll(1024) > 0 {}
    start.elapsed()
}

fn interleaved(_: &mut Criterion) {
    const ROUNDS: usize = 300;
    const BATCH: u64 = 4096;
    let (bus, mut shards) = Bus::builder()
        .ring_capacity_all(CAPACITY)
        .build_polled()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut sum = 0u64;
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        sum = sum.wrapping_add(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        std::hint::black_box(sum);
        Outcome::Done
    })
    .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    let modes = ["off", "acl", "full"];
    let mut ns = vec![Vec::with_capacity(ROUNDS); modes.len()];
    let mut seq = 0;
    for round in 0..ROUNDS + 10 {
        for (m, mode) in modes.iter().enumerate() {
            install(&bus, agent, mode);
            let t = poll_batch(&mut publisher, &mut shards[0], seq, BATCH);
            seq += BATCH;
            if round >= 10 {
                ns[m].push(t.as_nanos() as f64 / BATCH as f64);
            }
        }
    }
    report("poll mode, publish + dispatch on one thread", &modes, &ns);
    drop(publisher);
    bus.close();

    // End to end: worker shard, blocking publish, handler reading the payload.
    const E2E_ROUNDS: usize = 100;
    let d = done();
    let bus = Bus::builder()
        .pinned(false)
        .wait_strategy(WaitStrategy::Yield)
        .ring_capacity_all(CAPACITY)
        .build()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut probe = Probe::new(&d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        probe.observe(dl.payload::<Task>().map_or(u64::MAX, |t| t.seq.to_native()));
        Outcome::Done
    })
    .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    let mut ns = vec![Vec::with_capacity(E2E_ROUNDS); modes.len()];
    let mut next = 0;
    for round in 0..E2E_ROUNDS + 5 {
        for (m, mode) in modes.iter().enumerate() {
            install(&bus, agent, mode);
            let t = timed(BATCH, &mut next, &d, |seq| {
                let event = Event::new(EventType::AGENT_TASK)
                    .with_payload(&Task::new(seq))
                    .expect("payload fits");
                publisher.publish(event).expect("publish");
            });
            if round >= 5 {
                ns[m].push(t.as_nanos() as f64 / BATCH as f64);
            }
        }
    }
    report("end to end, one worker shard", &modes, &ns);
    drop(publisher);
    bus.close();
}

fn report(what: &str, modes: &[&str], ns: &[Vec<f64>]) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "policy/interleaved ({what}): {} rounds of 4096 events per mode",
        ns[0].len()
    );
    for (m, mode) in modes.iter().enumerate() {
        let ratio: Vec<f64> = ns[m].iter().zip(&ns[0]).map(|(x, o)| x / o).collect();
        println!(
            "  {mode:>4}: median {:.1} ns/event, median ratio to off in the same round {:.3}",
            median(ns[m].clone()),
            median(ratio)
        );
    }
}

fn config() -> Criterion {
    common::config()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = interleaved, publish_poll, end_to_end
}
criterion_main!(benches);
