//! What a filter costs on the routing path: one standalone `Router` (the shard's own
//! routing and dispatch, on the bench thread, no rings), eight subscriptions (one per type
//! besides the measured one), and a stream of 64 events cycling type, priority and a
//! `tenant` metadata entry. Same run, same events; only the measured subscription's filter
//! changes:
//! - `type`: `Filter::of_type(agent.task)` (the router's per-type fast path);
//! - `closure`: `of_type(agent.task).matching(|h| priority >= high && tenant == 7)`, the
//!   hand-written predicate;
//! - `expression`: `Filter::parse(r#"type == "agent.task" && priority >= high &&
//!   meta.tenant == 7"#)`, the same test compiled from text;
//! - `wildcard`: `Filter::wildcard("agent.*")`, a type-bitset program on every broadcast.
//!
//! Group `route`: `Router::route` per event (dispatch, handler call and the envelope
//! included). Group `matches`: `Filter::matches` alone on the same events, the filter's
//! own cost. Throughput is events per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, Router};

fn events(bus: &Bus) -> Vec<Event> {
    let tenant = bus.register_meta_key("tenant").expect("key");
    (0..64u64)
        .map(|i| {
            let ty = if i % 2 == 0 {
                EventType::AGENT_TASK
            } else {
                EventType::AGENT_STATUS
            };
            Event::new(ty)
                .with_priority(Priority::ALL[(i / 2 % 4) as usize])
                .with_metadata(tenant, 6 + i / 8 % 3)
                .expect("room")
        })
        .collect()
}

fn router(measured: Filter) -> Router {
    let mut router: Router = Router::new();
    let others = [
        EventType::AGENT_RESPONSE,
        EventType::AGENT_CAPABILITY,
        EventType::AGENT_STATUS,
        EventType::AGENT_ERROR,
        EventType::SYSTEM_HEALTH,
        EventType::SYSTEM_EVENT,
    ];
    for ty in others {
        router.register_handler(ty, |_| Outcome::Done);
    }
    let mut hits = 0u64;
    router.subscribe(
        measured,
        None,
        Box::new(move |_| {
            hits += 1;
            std::hint::black_box(hits);
            Outcome::Done
        }),
    );
    router
}

fn filters(c: &mut Criterion) {
    let (bus, _shards) = Bus::builder().build_polled().expect("bus");
    let events = events(&bus);
    let tenant = bus.register_meta_key("tenant").expect("key");
    let variants = || -> [(&str, Filter); 4] {
        [
            ("type", Filter::of_type(EventType::AGENT_TASK)),
            (
                "closure",
                Filter::of_type(EventType::AGENT_TASK).matching(move |h| {
                    h.priority() <= Priority::High && h.metadata(tenant) == Some(7)
                }),
            ),
            (
                "expression",
                Filter::parse(
                    &bus,
                    r#"type == "agent.task" && priority >= high && meta.tenant == 7"#,
                )
                .expect("parses"),
            ),
            (
                "wildcard",
                Filter::wildcard(&bus, "agent.*").expect("pattern"),
            ),
        ]
    };
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    for (name, filter) in variants() {
        let mut router = router(filter);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let e = &events[i % events.len()];
                i = i.wrapping_add(1);
                std::hint::black_box(router.route(e))
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("matches");
    g.throughput(Throughput::Elements(1));
    for (name, filter) in variants() {
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let e = &events[i % events.len()];
                i = i.wrapping_add(1);
                std::hint::black_box(filter.matches(e))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, filters);
criterion_main!(benches);
