//! The filter-expression parser on arbitrary text, against the reference evaluator.
//!
//! A poll-mode bus with a few event types (built-ins, `system.x.y`, `tool.run`,
//! `a-b:c/d`), agents and metadata keys. The input, as UTF-8 (lossily), is parsed with
//! `Expression::parse`. It must return, never panic; an error's position lies within the
//! text. Anything that parses prints to a canonical text that parses back to an equal
//! compiled program and prints the same again; and the compiled program agrees with the
//! reference evaluator (a walk of the syntax tree comparing names as strings) on a fixed
//! set of events covering every type, source, destination, priority and metadata shape.
//! Wildcard patterns in the input bind to the bus; a type registered afterwards is
//! checked too (its name comes from the input, when it is a valid name).
#![no_main]

use std::sync::OnceLock;

use dreamnet_bus::{Bus, Event, EventType, Expression, MetaKey, Priority};
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 3] = ["system.x.y", "tool.run", "a-b:c/d"];
const AGENTS: [&str; 3] = ["a1", "a2", "lucid"];
const KEYS: [&str; 2] = ["tenant", "zone"];

struct World {
    bus: Bus,
    events: Vec<Event>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let (bus, _shards) = Bus::builder().build_polled().expect("bus");
        for t in TYPES {
            bus.register_event_type(t).expect("type");
        }
        let agents: Vec<_> = AGENTS.iter().map(|a| bus.register_agent(a).expect("agent")).collect();
        let keys: Vec<MetaKey> = KEYS.iter().map(|k| bus.register_meta_key(k).expect("key")).collect();
        let types: Vec<EventType> = EventType::BUILT_IN
            .iter()
            .map(|(t, _)| *t)
            .chain(TYPES.iter().map(|t| bus.event_type(t).expect("registered")))
            .collect();
        let mut events = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            for (j, prio) in Priority::ALL.into_iter().enumerate() {
                let mut e: Event = Event::new(*ty).with_priority(prio);
                if (i + j) % 3 != 0 {
                    e = e.to(agents[(i + j) % agents.len()]);
                }
                let meta = [(i + j) as u64 % 4, (i * j) as u64 % 3];
                for (k, key) in keys.iter().enumerate().take((i + 2 * j) % 3) {
                    e = e.with_metadata(*key, meta[k]).expect("room");
                }
                // A publisher stamps the source; from bytes (the header's `source` field
                // at offset 40) is the public way to set one here.
                let mut bytes = *e.as_bytes();
                let source = agents[(i * 7 + j) % agents.len()].raw();
                bytes[40..44].copy_from_slice(&source.to_ne_bytes());
                let e = Event::from_bytes(&bytes).expect("valid");
                assert_eq!(e.header().source().raw(), source);
                events.push(e);
            }
        }
        World { bus, events }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let w = world();
    let x = match Expression::parse(&w.bus, &text) {
        Ok(x) => x,
        Err(e) => {
            assert!(e.position() <= text.len(), "{e} for {} bytes", text.len());
            return;
        }
    };
    let printed = x.to_string();
    let again = Expression::parse(&w.bus, &printed)
        .unwrap_or_else(|e| panic!("canonical text {printed:?} of {text:?} does not parse: {e}"));
    assert!(x == again, "{text:?} -> {printed:?}: programs differ");
    assert_eq!(again.to_string(), printed, "printing is not a fixpoint");
    for e in &w.events {
        assert_eq!(
            x.matches(e),
            x.matches_model(&w.bus, e),
            "{printed} on {:?}",
            e.header()
        );
    }
    // A type registered after the expression was made: if the input names one (the first
    // quoted, valid name that is not registered yet), register it and check again.
    if let Some(name) = text.split('"').nth(1) {
        let fresh = name.replace(['*', '>'], "z");
        if w.bus.event_type(&fresh).is_none() {
            if let Ok(ty) = w.bus.register_event_type(&fresh) {
                let e: Event = Event::new(ty);
                assert_eq!(x.matches(&e), x.matches_model(&w.bus, &e), "{printed} on later {fresh}");
            }
        }
    }
});
