//! Transform stages through the public API: a chain of three with causation and
//! correlation asserted link by link, zero-or-more outputs per input, a cycle stopped by
//! the hop limit with exact counts, and a full ring that dead-letters the derived event
//! instead of blocking the shard.

use dreamnet_bus::{
    Bus, DeadReason, Draft, EmitError, Event, EventType, Filter, Outcome, Shard, Stage,
    StreamPolicy,
};

fn poll(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(1024)).sum::<usize>() > 0 {}
}

fn value(e: &Event) -> u64 {
    e.payload::<u64>().expect("a u64").to_native()
}

/// A stage that reads a u64 and emits `f(x)` as an event of type `out`.
fn map_stage(
    bus: &Bus,
    name: &str,
    out: EventType,
    f: impl Fn(u64) -> u64 + Send + 'static,
) -> Stage<
    impl FnMut(&dreamnet_bus::Delivery<'_, 256>, &mut dreamnet_bus::Emitter<'_, 256>) -> Outcome
        + Send
        + 'static,
> {
    let publisher = bus
        .publisher(bus.register_agent(name).expect("agent"))
        .expect("publisher");
    Stage::new(publisher, move |d, emit| {
        let Ok(x) = d.payload::<u64>() else {
            return Outcome::fail(400);
        };
        match emit.emit(Draft::new(out), &f(x.to_native())) {
            Ok(_) => Outcome::Done,
            Err(_) => Outcome::fail(503),
        }
    })
}

#[test]
fn a_chain_of_three_stages_links_causation_and_keeps_the_correlation() {
    let (bus, mut shards) = Bus::builder().shards(2).build_polled().expect("bus");
    let [t1, t2, t3] = ["t1", "t2", "t3"].map(|n| bus.register_event_type(n).expect("type"));
    let a = bus
        .transform(
            Filter::of_type(EventType::AGENT_TASK),
            map_stage(&bus, "plus-one", t1, |x| x + 1),
        )
        .expect("stage a");
    let b = bus
        .transform(
            Filter::of_type(t1),
            map_stage(&bus, "double", t2, |x| x * 2),
        )
        .expect("stage b");
    let c = bus
        .transform(
            Filter::of_type(t2),
            map_stage(&bus, "minus-three", t3, |x| x - 3),
        )
        .expect("stage c");
    let mut seen = bus
        .stream(
            Filter::of_types(&[t1, t2, t3]),
            64,
            StreamPolicy::Backpressure,
        )
        .expect("stream");
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    let root = Event::new(EventType::AGENT_TASK)
        .with_correlation_id(99)
        .with_payload(&10u64)
        .expect("fits");
    let root_id = p.try_publish(root).expect("published").id;
    poll(&mut shards);
    let mut out: Vec<Event> = core::iter::from_fn(|| seen.try_next().ok()).collect();
    out.sort_by_key(|e| e.header().hops());
    let types: Vec<EventType> = out.iter().map(|e| e.header().event_type()).collect();
    assert_eq!(types, [t1, t2, t3]);
    assert_eq!(out.iter().map(value).collect::<Vec<_>>(), [11, 22, 19]);
    let mut cause = root_id;
    for (i, e) in out.iter().enumerate() {
        let h = e.header();
        assert_eq!(h.causation_id(), cause, "link {i}");
        assert_eq!(h.correlation_id(), 99, "link {i} keeps the conversation");
        assert_eq!(h.hops() as usize, i + 1);
        cause = h.id();
    }
    for (stage, name) in [(a, "a"), (b, "b"), (c, "c")] {
        let st = stage.stats();
        assert_eq!(
            (st.inputs, st.emitted, st.dead_lettered),
            (1, 1, 0),
            "{name}"
        );
    }
}

#[test]
fn a_stage_emits_zero_or_more_events_per_input() {
    let (bus, mut shards) = Bus::builder().build_polled().expect("bus");
    let pair = bus.register_event_type("pair").expect("type");
    let publisher = bus
        .publisher(bus.register_agent("splitter").expect("agent"))
        .expect("publisher");
    // Odd inputs: nothing. Even: two events, x and x + 1.
    let stage = bus
        .transform(
            Filter::of_type(EventType::AGENT_TASK),
            Stage::new(publisher, move |d, emit| {
                let x = d.payload::<u64>().map_or(1, |x| x.to_native());
                if x % 2 == 0 {
                    for v in [x, x + 1] {
                        if emit.emit(Draft::new(pair), &v).is_err() {
                            return Outcome::fail(503);
                        }
                    }
                }
                Outcome::Done
            }),
        )
        .expect("stage");
    let mut out = bus
        .stream(Filter::of_type(pair), 64, StreamPolicy::Backpressure)
        .expect("stream");
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    for x in 0..6u64 {
        let e = Event::new(EventType::AGENT_TASK)
            .with_payload(&x)
            .expect("fits");
        p.try_publish(e).expect("published");
    }
    poll(&mut shards);
    let got: Vec<u64> = core::iter::from_fn(|| out.try_next().ok())
        .map(|e| value(&e))
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    let st = stage.stats();
    assert_eq!((st.inputs, st.emitted), (6, 6));
}

#[test]
fn a_cycle_between_two_stages_ends_in_loop_detected_with_exact_counts() {
    let (bus, mut shards) = Bus::builder().build_polled().expect("bus");
    let [ty_a, ty_b] = ["cycle.a", "cycle.b"].map(|n| bus.register_event_type(n).expect("type"));
    let to_b = bus
        .transform(
            Filter::of_type(ty_a),
            map_stage(&bus, "a-to-b", ty_b, |x| x + 1).max_hops(5),
        )
        .expect("a->b");
    let to_a = bus
        .transform(
            Filter::of_type(ty_b),
            map_stage(&bus, "b-to-a", ty_a, |x| x + 1).max_hops(5),
        )
        .expect("b->a");
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    p.try_publish(Event::new(ty_a).with_payload(&0u64).expect("fits"))
        .expect("published");
    poll(&mut shards);
    // A(0 hops) -> B(1) -> A(2) -> B(3) -> A(4) -> B(5): refused by b-to-a.
    let (ab, ba) = (to_b.stats(), to_a.stats());
    assert_eq!((ab.inputs, ab.emitted, ab.loops_detected), (3, 3, 0));
    assert_eq!((ba.inputs, ba.emitted, ba.loops_detected), (3, 2, 1));
    let mut dead = Vec::new();
    bus.dead_letters().inspect(|l| dead.push(l.clone()));
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.reason, DeadReason::LoopDetected);
    assert_eq!(letter.subscription, Some(to_a.id()));
    assert_eq!(letter.event.header().event_type(), ty_b);
    assert_eq!(letter.event.header().hops(), 5);
    assert_eq!(value(&letter.event), 5);
    let shard = &bus.stats().shards[0];
    assert_eq!(shard.dead_by_reason[DeadReason::LoopDetected.index()], 1);
    assert_eq!(shard.dead_lettered, 1);
}

#[test]
fn a_full_ring_dead_letters_the_derived_event_and_a_redrive_delivers_it() {
    let (bus, mut shards) = Bus::builder()
        .ring_capacity_all(4)
        .build_polled()
        .expect("bus");
    let burst = bus.register_event_type("burst").expect("type");
    let publisher = bus
        .publisher(bus.register_agent("burster").expect("agent"))
        .expect("publisher");
    let stage = bus
        .transform(
            Filter::of_type(EventType::AGENT_TASK),
            Stage::new(publisher, move |_, emit| {
                let mut dead = 0u64;
                for v in 0..6u64 {
                    match emit.emit(Draft::new(burst), &v) {
                        Ok(_) => {}
                        Err(EmitError::DeadLettered { reason }) => {
                            assert_eq!(reason, DeadReason::EmitFull);
                            dead += 1;
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                assert_eq!(dead, 2, "4 fit in the ring, 2 do not");
                Outcome::Done
            }),
        )
        .expect("stage");
    let mut out = bus
        .stream(Filter::of_type(burst), 16, StreamPolicy::Backpressure)
        .expect("stream");
    let mut p = bus
        .publisher(bus.register_agent("root").expect("agent"))
        .expect("publisher");
    let root = p
        .try_publish(Event::new(EventType::AGENT_TASK))
        .expect("published")
        .id;
    poll(&mut shards);
    let st = stage.stats();
    assert_eq!((st.inputs, st.emitted, st.dead_lettered), (1, 4, 2));
    let mut dead = Vec::new();
    bus.dead_letters().inspect(|l| dead.push(l.clone()));
    assert_eq!(dead.len(), 2);
    for l in &dead {
        assert_eq!(l.reason, DeadReason::EmitFull);
        assert_eq!(l.subscription, None);
        assert_eq!(l.event.header().causation_id(), root);
        assert_eq!(l.event.header().hops(), 1);
    }
    assert_eq!(bus.redrive(16, |_| true).expect("redrive"), 2);
    poll(&mut shards);
    let mut got: Vec<u64> = core::iter::from_fn(|| out.try_next().ok())
        .map(|e| value(&e))
        .collect();
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3, 4, 5], "nothing lost");
}
