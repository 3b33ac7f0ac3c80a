//! What the security policy costs, end to end, in one run: the `bus` bench's dreamnet-bus
//! pipeline (one producer, one worker shard, 256-byte events with a 64-byte rkyv payload,
//! the handler reading it) with no policy, then with a policy that runs every check on
//! each publish: default deny, the agent allowed its type and destination, a payload
//! limit, an agent rate limit and a per-type rate limit (both far above the offered rate,
//! so each publish takes a token from two buckets) and a quota. The `off` row runs again
//! at the end to show the drift of the machine within the run.
//!
//! `publish_poll` isolates the publish path: poll mode, the bench thread publishes and
//! drains the shard itself every 1024 events (no second thread, less scheduler noise).

mod common;

use std::time::{Duration, Instant};

use common::{done, relax, timed, Probe, Task, CAPACITY};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::{
    AgentId, AgentPolicy, Bus, Event, EventType, Filter, Outcome, Policy, PublishError, Rate,
    RunMode, WaitStrategy,
};

fn full_policy(agent: AgentId) -> Policy {
    let fast = Rate::new(1_000_000_000, 1 << 40).expect("rate");
    Policy::deny_by_default().agent(
        agent,
        AgentPolicy::new()
            .may_publish([EventType::AGENT_TASK])
            .may_send_to([agent])
            .max_payload(EventType::AGENT_TASK, 128)
            .rate_limit(fast)
            .type_rate_limit(EventType::AGENT_TASK, fast)
            .quota(u64::MAX),
    )
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy_end_to_end_256B");
    g.throughput(Throughput::Elements(1));
    let d = done();
    let bus = Bus::builder()
        .mode(RunMode::Workers { pin: false })
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
    for (name, on) in [("off", false), ("on", true), ("off-again", false)] {
        if on {
            bus.set_policy(full_policy(agent)).expect("policy");
        } else {
            bus.clear_policy();
        }
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
    let bus = Bus::builder()
        .mode(RunMode::Poll)
        .ring_capacity_all(CAPACITY)
        .build()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut sum = 0u64;
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        sum = sum.wrapping_add(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
        std::hint::black_box(sum);
        Outcome::Done
    })
    .expect("subscribe");
    let mut shards = bus.take_shards().expect("shards");
    let mut publisher = bus.publisher(agent).expect("publisher");
    for (name, on) in [("off", false), ("on", true), ("off-again", false)] {
        if on {
            bus.set_policy(full_policy(agent)).expect("policy");
        } else {
            bus.clear_policy();
        }
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

fn config() -> Criterion {
    common::config()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = publish_poll, end_to_end
}
criterion_main!(benches);
