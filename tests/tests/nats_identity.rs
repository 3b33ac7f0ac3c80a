//! Who an event from the wire is published as (issue 12's item for the bridge), against a
//! real nats-server: no sequence of public calls (local registrations before and after the
//! bridge starts, remote declarations, messages from other processes claiming any name)
//! makes the inbound path stamp another process's message with a local agent's id. The
//! rule is `bridge::sources`' (module documentation): declared remote, first seen from the
//! wire, or refused.
//!
//! A proptest with few cases (each starts a bus and a bridge on one server the test starts,
//! and syncs on the bridge's counters after every message); the same property over thousands of
//! sequences runs as a unit test of the mapping (`core/src/bridge/sources.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, DropReason, Import, RejectReason};
use dreamnet_bus::{AgentId, Bus, Event, EventType, Filter, Outcome};
use dreamnet_bus_tests::nats_server::NatsServer;
use dreamnet_bus_tests::raw_nats::RawClient;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const NAMES: [&str; 5] = ["planner", "lucid", "beta", "gamma", "delta"];

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// The application registers an agent (and publishes once as it, locally).
    Local(usize),
    /// Another process broadcasts an event claiming this source.
    Claim(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..NAMES.len()).prop_map(Op::Local),
        2 => (0..NAMES.len()).prop_map(Op::Claim),
    ]
}

/// A delivery seen by the local subscriber: its source and whether it came from the wire.
type Seen = Arc<Mutex<Vec<(AgentId, bool)>>>;

fn run_case(url: &str, before: &HashSet<usize>, declared: &HashSet<usize>, ops: &[Op]) {
    static CASE: AtomicU32 = AtomicU32::new(0);
    let ns = format!("ident{}", CASE.fetch_add(1, Ordering::Relaxed));
    let bus = Arc::new(Bus::builder().build().expect("bus"));
    let ty = bus.register_event_type("claim").expect("type");
    let mut owner: HashMap<usize, &str> = HashMap::new();
    for &i in before {
        bus.register_agent(NAMES[i]).expect("agent");
        owner.insert(i, "local");
    }
    let mut builder = Bridge::builder(url)
        .bus_id("home")
        .namespace(&ns)
        .import(Import::broadcast());
    for &i in declared {
        builder = builder.remote_agent(NAMES[i]);
    }
    let bridge = builder.start(Arc::clone(&bus)).expect("bridge");
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let mark = bridge.wire_mark();
    bus.subscribe(Filter::of_type(ty), move |d| {
        let h = d.header();
        s.lock().unwrap().push((h.source(), mark.is_on(h)));
        Outcome::Done
    })
    .expect("subscribe");

    let mut raw = RawClient::connect(url).expect("raw client");
    let body = Event::<256>::new(EventType::SYSTEM_EVENT)
        .as_bytes()
        .to_vec();
    let subject = format!("{ns}.claim.all");
    let (mut claims, mut refused, mut local_sent) = (0u64, 0u64, 0usize);
    let mut refused_names = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Local(i) => {
                let id = bus.register_agent(NAMES[i]).expect("agent");
                owner.entry(i).or_insert("local");
                let mut p = bus.publisher(id).expect("publisher");
                p.publish(Event::new(ty)).expect("publish");
                local_sent += 1;
            }
            Op::Claim(i) => {
                let id = n.to_string();
                let headers = [
                    ("Dreamnet-Path", "elsewhere"),
                    ("Dreamnet-Hops", "1"),
                    ("Dreamnet-Id", id.as_str()),
                    ("Dreamnet-Type", "claim"),
                    ("Dreamnet-Source", NAMES[i]),
                    ("Dreamnet-Priority", "normal"),
                ];
                raw.publish(&subject, Some(&headers), &body)
                    .expect("publish");
                claims += 1;
                // The model: refused iff the name is owned by this bus and not declared.
                let local = owner.get(&i).is_some_and(|o| *o == "local");
                if local && !declared.contains(&i) {
                    refused += 1;
                    refused_names.push(NAMES[i]);
                } else {
                    owner.entry(i).or_insert("wire");
                }
                // Sync: the bridge has decided on this message before the next step.
                wait_for("the bridge to handle a claim", || {
                    let s = bridge.stats();
                    s.in_published + s.dropped_total() == claims
                });
            }
        }
    }
    let expected = (claims - refused) as usize + local_sent;
    wait_for("every delivery", || seen.lock().unwrap().len() >= expected);
    assert!(bus.wait_idle(Duration::from_secs(5)));

    let s = bridge.stats();
    assert_eq!(s.dropped(DropReason::LocalSource), refused, "{s:?}");
    assert_eq!(s.in_published, claims - refused, "{s:?}");
    let mut rejected = Vec::new();
    bridge.rejects(|r| {
        if let RejectReason::LocalSource(name) = &r.reason {
            rejected.push(name.clone());
        }
    });
    assert_eq!(rejected, refused_names);

    // The property: nothing from the wire carries the id of an agent this bus owns.
    let local_ids: HashSet<AgentId> = owner
        .iter()
        .filter(|(i, o)| **o == "local" && !declared.contains(i))
        .filter_map(|(i, _)| bus.agent(NAMES[*i]))
        .collect();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), expected);
    for (source, from_wire) in seen.iter() {
        if *from_wire {
            assert!(
                !local_ids.contains(source),
                "a wire event was stamped with local agent {source:?}"
            );
        }
    }
    assert_eq!(
        seen.iter().filter(|(_, w)| *w).count() as u64,
        claims - refused
    );
}

/// The property over random sequences, on one server for every case (started here and
/// dropped, so killed, when the test ends).
#[test]
fn a_remote_process_cannot_act_as_a_local_agent() {
    let server = NatsServer::start();
    let url = server.url();
    let strategy = (
        proptest::collection::hash_set(0..NAMES.len(), 0..4),
        proptest::collection::hash_set(0..NAMES.len(), 0..3),
        proptest::collection::vec(op(), 1..12),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let result = runner.run(&strategy, |(before, declared, ops)| {
        run_case(&url, &before, &declared, &ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The cases spelled out: a local name is refused, a declared one and an unknown one map.
#[test]
fn local_names_are_refused_declared_and_new_names_map() {
    let before: HashSet<usize> = [0, 2].into(); // planner, beta registered locally
    let declared: HashSet<usize> = [2].into(); // beta declared remote
    let server = NatsServer::start();
    run_case(
        &server.url(),
        &before,
        &declared,
        &[
            Op::Claim(0),
            Op::Claim(2),
            Op::Claim(3),
            Op::Local(3),
            Op::Claim(3),
        ],
    );
}
