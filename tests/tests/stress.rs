//! Multi-producer stress in worker mode: 4 producers x 1,000,000 events, 2 pinned shards
//! (pinning may fail; the run goes on), several subscriptions on each shard, some
//! filtered. Every event reaches every matching subscription exactly once, FIFO per
//! publisher per priority, and nothing is lost by `close`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use dreamnet_bus::{
    AgentId, Bus, Delivery, Event, EventType, Filter, Outcome, Priority, Subscription, DEFAULT_SLOT,
};

const PRODUCERS: usize = 4;
const PER_PRODUCER: u64 = 1_000_000;
/// Correlation id = publisher << SEQ_SHIFT | seq.
const SEQ_SHIFT: u32 = 40;

const TYPES: [EventType; 3] = [
    EventType::AGENT_TASK,
    EventType::AGENT_STATUS,
    EventType::AGENT_RESPONSE,
];

/// What producer `p` publishes as its event number `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kind {
    ty: EventType,
    priority: Priority,
    direct: bool,
}

fn kind(seq: u64) -> Kind {
    Kind {
        ty: TYPES[(seq % 3) as usize],
        priority: Priority::ALL[((seq / 3) % 4) as usize],
        direct: seq % 10 == 7,
    }
}

/// A subscription and the model of what it must receive.
struct Sub {
    shard: usize,
    subscription: fn(&Agents) -> Subscription,
    wants: fn(usize, u64, Kind) -> bool,
}

struct Agents {
    producers: [AgentId; PRODUCERS],
    sink: AgentId,
}

fn subs() -> Vec<Sub> {
    vec![
        // Every broadcast, on each shard.
        Sub {
            shard: 0,
            subscription: |_| Subscription::new(Filter::any()),
            wants: |_, _, k| !k.direct,
        },
        Sub {
            shard: 1,
            subscription: |_| Subscription::new(Filter::any()),
            wants: |_, _, k| !k.direct,
        },
        Sub {
            shard: 0,
            subscription: |_| Subscription::new(Filter::of_type(EventType::AGENT_TASK)),
            wants: |_, _, k| !k.direct && k.ty == EventType::AGENT_TASK,
        },
        Sub {
            shard: 1,
            subscription: |_| {
                Subscription::new(
                    Filter::of_type(EventType::AGENT_STATUS)
                        .priorities(&[Priority::Critical, Priority::High]),
                )
            },
            wants: |_, _, k| {
                !k.direct && k.ty == EventType::AGENT_STATUS && k.priority <= Priority::High
            },
        },
        Sub {
            shard: 1,
            subscription: |a| Subscription::new(Filter::any().from_source(a.producers[2])),
            wants: |p, _, k| !k.direct && p == 2,
        },
        // On behalf of the sink: all of its direct traffic and every broadcast.
        Sub {
            shard: 0,
            subscription: |a| Subscription::new(Filter::any()).for_agent(a.sink),
            wants: |_, _, _| true,
        },
        Sub {
            shard: 0,
            subscription: |_| {
                Subscription::new(
                    Filter::any().matching(|h| {
                        (h.correlation_id() & ((1 << SEQ_SHIFT) - 1)).is_multiple_of(5)
                    }),
                )
            },
            wants: |_, seq, k| !k.direct && seq.is_multiple_of(5),
        },
        // A tap on the sink's direct traffic, responses only.
        Sub {
            shard: 1,
            subscription: |a| {
                Subscription::new(Filter::of_type(EventType::AGENT_RESPONSE).to_destination(a.sink))
            },
            wants: |_, _, k| k.ty == EventType::AGENT_RESPONSE,
        },
    ]
}

/// What a subscription's handler reports.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    unwanted: AtomicU64,
    wrong_content: AtomicU64,
}

/// A handler that checks, with state it owns, that events come in order per (publisher,
/// priority), that it wanted each one, and that the header is what was published.
fn checker(
    tally: &Arc<Tally>,
    wants: fn(usize, u64, Kind) -> bool,
    agents: [AgentId; PRODUCERS],
    sink: AgentId,
) -> impl FnMut(&Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send + 'static {
    let tally = Arc::clone(tally);
    let mut next = [[0u64; Priority::COUNT]; PRODUCERS];
    move |d| {
        let h = d.header();
        let c = h.correlation_id();
        let p = (c >> SEQ_SHIFT) as usize;
        let seq = c & ((1 << SEQ_SHIFT) - 1);
        let Some(&source) = agents.get(p) else {
            tally.wrong_content.fetch_add(1, Ordering::Relaxed);
            return Outcome::Done;
        };
        let k = kind(seq);
        let seen = Kind {
            ty: h.event_type(),
            priority: h.priority(),
            direct: h.destination().is_some(),
        };
        if seen != k || h.source() != source || (k.direct && h.destination() != Some(sink)) {
            tally.wrong_content.fetch_add(1, Ordering::Relaxed);
        }
        if !wants(p, seq, k) {
            tally.unwanted.fetch_add(1, Ordering::Relaxed);
        }
        // Strictly increasing per (publisher, priority): in order and no duplicates.
        let slot = &mut next[p][k.priority.index()];
        if seq < *slot {
            tally.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        *slot = seq + 1;
        tally.delivered.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    }
}

#[test]
fn four_producers_million_events_each_reach_every_matching_subscription_once_in_order() {
    let bus = Bus::builder()
        .shards(2)
        .pinned(true)
        .build()
        .expect("worker bus");
    let producers: [AgentId; PRODUCERS] =
        core::array::from_fn(|i| bus.register_agent(&format!("producer-{i}")).expect("agent"));
    let sink = bus.register_agent("sink").expect("agent");
    let agents = Agents { producers, sink };

    let subs = subs();
    let tallies: Vec<Arc<Tally>> = subs.iter().map(|_| Arc::default()).collect();
    for (s, tally) in subs.iter().zip(&tallies) {
        bus.subscribe(
            (s.subscription)(&agents).on_shard(s.shard),
            checker(tally, s.wants, producers, sink),
        )
        .expect("subscribe");
    }

    let start = Arc::new(Barrier::new(PRODUCERS));
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut publisher = bus.publisher(producers[p]).expect("publisher");
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for seq in 0..PER_PRODUCER {
                    let k = kind(seq);
                    let mut e = Event::new(k.ty)
                        .with_priority(k.priority)
                        .with_correlation_id(((p as u64) << SEQ_SHIFT) | seq);
                    if k.direct {
                        e = e.to(sink);
                    }
                    if let Err(err) = publisher.publish(e) {
                        panic!("producer {p}: publish {seq} refused: {err:?}");
                    }
                }
            })
        })
        .collect();

    // The model's counts, computed while the producers run.
    let mut expected = vec![0u64; subs.len()];
    for p in 0..PRODUCERS {
        for seq in 0..PER_PRODUCER {
            let k = kind(seq);
            for (i, s) in subs.iter().enumerate() {
                if (s.wants)(p, seq, k) {
                    expected[i] += 1;
                }
            }
        }
    }

    for h in handles {
        h.join().expect("producer");
    }
    bus.close();

    let stats = bus.stats();
    // Pinning may fail on this machine; the run must go on either way. Just report it.
    for (i, s) in stats.shards.iter().enumerate() {
        println!("shard {i}: pin_failed = {}", s.pin_failed);
    }
    for (i, t) in tallies.iter().enumerate() {
        assert_eq!(
            t.out_of_order.load(Ordering::Relaxed),
            0,
            "sub {i}: out of order"
        );
        assert_eq!(
            t.unwanted.load(Ordering::Relaxed),
            0,
            "sub {i}: unwanted events"
        );
        assert_eq!(
            t.wrong_content.load(Ordering::Relaxed),
            0,
            "sub {i}: bad headers"
        );
        assert_eq!(
            t.delivered.load(Ordering::Relaxed),
            expected[i],
            "sub {i}: every matching event exactly once"
        );
    }
    let total = PRODUCERS as u64 * PER_PRODUCER;
    assert_eq!(stats.published, total);
    assert_eq!(stats.unroutable, 0);
    assert_eq!(stats.rejected_closed, 0);
    assert_eq!(stats.rejected_invalid, 0);
    assert_eq!(stats.queued(), 0, "close drained everything");
    assert_eq!(stats.delivered(), expected.iter().sum::<u64>());
    for s in &stats.shards {
        assert_eq!(s.published, s.dispatched, "every ring entry was taken");
        assert_eq!(s.panicked, 0);
    }
}
