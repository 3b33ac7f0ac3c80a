//! Routing against a model: for random subscriptions (types, source, priorities,
//! predicate, `for_agent`, `to_destination`, shard, groups, some unsubscribed) and random
//! events from several publishers, the deliveries after draining in poll mode are exactly
//! what the routing rules in `router.rs`'s module doc say:
//! - a broadcast reaches every subscription whose filter passes it;
//! - a direct event to `d` reaches the subscriptions for `d` and the taps on `d` whose
//!   filter passes it;
//! - a group is one route: each event that passes goes to exactly one remaining member;
//! - an unsubscribed subscription gets nothing at the next poll (poll mode).

mod common;

use std::collections::BTreeMap;

use common::{drain_all, hits, new_log, record};
use dreamnet_bus::{AgentId, Balance, Bus, Event, EventType, Filter, Priority, Subscription};
use proptest::prelude::*;

const TYPES: [EventType; 4] = [
    EventType::AGENT_TASK,
    EventType::AGENT_RESPONSE,
    EventType::AGENT_STATUS,
    EventType::SYSTEM_HEALTH,
];
const AGENTS: usize = 4;
const PUBLISHERS: usize = 3;

#[derive(Clone, Debug)]
struct FilterSpec {
    types: Vec<usize>,
    source: Option<usize>,
    priorities: Vec<usize>,
    /// Passes events whose correlation id is a multiple of this.
    modulus: Option<u64>,
    tap: Option<usize>,
    for_agent: Option<usize>,
    shard: usize,
}

#[derive(Clone, Debug)]
struct SubSpec {
    filter: FilterSpec,
    unsubscribe: bool,
}

#[derive(Clone, Debug)]
struct GroupSpec {
    filter: FilterSpec,
    least_loaded: bool,
    members: usize,
    /// How many members leave before anything is published.
    leave: usize,
}

#[derive(Clone, Debug)]
struct EventSpec {
    publisher: usize,
    ty: usize,
    priority: usize,
    destination: Option<usize>,
}

fn filter_spec() -> impl Strategy<Value = FilterSpec> {
    (
        proptest::sample::subsequence((0..TYPES.len()).collect::<Vec<_>>(), 0..=2),
        proptest::option::weighted(0.3, 0..AGENTS),
        proptest::sample::subsequence((0..Priority::COUNT).collect::<Vec<_>>(), 0..=3),
        proptest::option::weighted(0.3, 2u64..4),
        proptest::option::weighted(0.3, 0..AGENTS),
        proptest::option::weighted(0.4, 0..AGENTS),
        0usize..3,
    )
        .prop_map(
            |(types, source, priorities, modulus, tap, for_agent, shard)| FilterSpec {
                types,
                source,
                priorities,
                modulus,
                tap,
                for_agent,
                shard,
            },
        )
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        0..PUBLISHERS,
        0..TYPES.len(),
        0..Priority::COUNT,
        proptest::option::weighted(0.4, 0..AGENTS),
    )
        .prop_map(|(publisher, ty, priority, destination)| EventSpec {
            publisher,
            ty,
            priority,
            destination,
        })
}

/// The routing rules, written out on the specs.
fn model_passes(f: &FilterSpec, e: &EventSpec, correlation: u64) -> bool {
    let reaches = match e.destination {
        None => true,
        Some(d) => f.for_agent == Some(d) || f.tap == Some(d),
    };
    reaches
        && (f.types.is_empty() || f.types.contains(&e.ty))
        // Publisher i publishes as agent i.
        && f.source.is_none_or(|s| s == e.publisher)
        && (f.priorities.is_empty() || f.priorities.contains(&e.priority))
        && f.modulus.is_none_or(|m| correlation.is_multiple_of(m))
}

fn subscription(f: &FilterSpec, agents: &[AgentId], shards: usize) -> Subscription {
    let types: Vec<EventType> = f.types.iter().map(|&t| TYPES[t]).collect();
    let mut filter = Filter::of_types(&types);
    if let Some(s) = f.source {
        filter = filter.from_source(agents[s]);
    }
    if !f.priorities.is_empty() {
        let levels: Vec<Priority> = f.priorities.iter().map(|&p| Priority::ALL[p]).collect();
        filter = filter.priorities(&levels);
    }
    if let Some(m) = f.modulus {
        filter = filter.matching(move |h| h.correlation_id().is_multiple_of(m));
    }
    if let Some(t) = f.tap {
        filter = filter.to_destination(agents[t]);
    }
    let mut s = Subscription::new(filter).on_shard(f.shard % shards);
    if let Some(a) = f.for_agent {
        s = s.for_agent(agents[a]);
    }
    s
}

/// Labels: plain subscription `i` is `i`; member `m` of group `g` is `GROUP_BASE * (g + 1) + m`.
const GROUP_BASE: usize = 1000;

fn check(
    shards: usize,
    subs: &[SubSpec],
    groups: &[GroupSpec],
    events: &[EventSpec],
) -> Result<(), TestCaseError> {
    let (bus, mut shard_handles) = Bus::builder()
        .shards(shards)
        .ring_capacity_all(64)
        .build_polled()
        .expect("bus");
    let agents: Vec<AgentId> = (0..AGENTS)
        .map(|i| bus.register_agent(&format!("agent-{i}")).expect("agent"))
        .collect();
    let log = new_log();
    let mut leaving = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let id = bus
            .subscribe(subscription(&s.filter, &agents, shards), record(&log, i))
            .expect("subscribe");
        if s.unsubscribe {
            leaving.push(id);
        }
    }
    for (g, spec) in groups.iter().enumerate() {
        let balance = if spec.least_loaded {
            Balance::LeastLoaded
        } else {
            Balance::RoundRobin
        };
        let group = bus
            .group(
                &format!("group-{g}"),
                subscription(&spec.filter, &agents, shards),
                balance,
            )
            .expect("group");
        let ids: Vec<_> = (0..spec.members)
            .map(|m| {
                bus.join(group, record(&log, GROUP_BASE * (g + 1) + m))
                    .expect("join")
            })
            .collect();
        for id in &ids[..spec.leave] {
            bus.unsubscribe(*id).expect("leave");
        }
    }
    let mut publishers: Vec<_> = agents[..PUBLISHERS]
        .iter()
        .map(|a| bus.publisher(*a).expect("publisher"))
        .collect();

    let mut model: BTreeMap<(usize, u64), u32> = BTreeMap::new();
    let mut model_groups: BTreeMap<(usize, u64), u32> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let correlation = i as u64 + 1;
        let mut event = Event::new(TYPES[e.ty])
            .with_priority(Priority::ALL[e.priority])
            .with_correlation_id(correlation);
        if let Some(d) = e.destination {
            event = event.to(agents[d]);
        }
        let receipt = publishers[e.publisher]
            .try_publish(event)
            .expect("rings hold every event");
        for (s, spec) in subs.iter().enumerate() {
            if !spec.unsubscribe && model_passes(&spec.filter, e, correlation) {
                model.insert((s, correlation), 1);
            }
        }
        for (g, spec) in groups.iter().enumerate() {
            if spec.members > spec.leave && model_passes(&spec.filter, e, correlation) {
                model_groups.insert((g, correlation), 1);
            }
        }
        // An event called unroutable at publish time must be one nobody wants.
        if receipt.shards == 0 {
            let wanted = model
                .keys()
                .chain(model_groups.keys())
                .any(|&(_, c)| c == correlation);
            prop_assert!(
                !wanted,
                "event {} was unroutable but is wanted",
                correlation
            );
        }
    }
    for id in leaving {
        bus.unsubscribe(id).expect("unsubscribe");
    }
    drain_all(&mut shard_handles);

    let mut got: BTreeMap<(usize, u64), u32> = BTreeMap::new();
    let mut got_groups: BTreeMap<(usize, u64), u32> = BTreeMap::new();
    for h in hits(&log) {
        if h.sub >= GROUP_BASE {
            let g = h.sub / GROUP_BASE - 1;
            let m = h.sub % GROUP_BASE;
            prop_assert!(
                m >= groups[g].leave,
                "member {m} of group {g} left but got event {}",
                h.correlation
            );
            *got_groups.entry((g, h.correlation)).or_default() += 1;
        } else {
            *got.entry((h.sub, h.correlation)).or_default() += 1;
        }
    }
    prop_assert_eq!(&got, &model, "plain subscriptions");
    prop_assert_eq!(&got_groups, &model_groups, "groups: each event once");
    let stats = bus.stats();
    prop_assert_eq!(stats.published, events.len() as u64);
    prop_assert_eq!(stats.delivered(), (model.len() + model_groups.len()) as u64);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(debug_assertions) { 96 } else { 512 },
        ..ProptestConfig::default()
    })]

    #[test]
    fn deliveries_equal_the_routing_model(
        shards in 1usize..=3,
        subs in proptest::collection::vec(
            (filter_spec(), proptest::bool::weighted(0.2))
                .prop_map(|(filter, unsubscribe)| SubSpec { filter, unsubscribe }),
            0..8,
        ),
        groups in proptest::collection::vec(
            (filter_spec(), any::<bool>(), 1usize..4, 0usize..2).prop_map(
                |(filter, least_loaded, members, leave)| GroupSpec {
                    filter,
                    least_loaded,
                    members,
                    leave: leave.min(members),
                },
            ),
            0..3,
        ),
        events in proptest::collection::vec(event_spec(), 0..40),
    ) {
        check(shards, &subs, &groups, &events)?;
    }
}
