//! The language against its model: random syntax trees printed, parsed, compiled and run
//! over random events must agree with the naive recursive evaluator.

use proptest::prelude::*;

use super::ast::{Expr, Field, Op, Test, Value};
use super::*;
use crate::filter::program::Cmp;
use crate::priority::Priority;
use crate::Bus;

const TYPES: [&str; 6] = [
    "agent.task",
    "agent.status",
    "system.health",
    "system.x.y",
    "tool.run",
    "agent.task.sub",
];
const AGENTS: [&str; 3] = ["a1", "a2", "a3"];
const KEYS: [&str; 2] = ["tenant", "zone"];

fn bus() -> Bus {
    let (bus, _shards) = Bus::builder().build_polled().unwrap();
    for t in TYPES {
        bus.register_event_type(t).unwrap();
    }
    for a in AGENTS {
        bus.register_agent(a).unwrap();
    }
    for k in KEYS {
        bus.register_meta_key(k).unwrap();
    }
    bus
}

fn event(
    bus: &Bus,
    ty: &str,
    src: &str,
    dst: Option<&str>,
    prio: Priority,
    meta: &[(&str, u64)],
) -> Event {
    let mut e: Event = Event::new(bus.event_type(ty).unwrap()).with_priority(prio);
    e.stamp(1, bus.agent(src).unwrap(), 0);
    if let Some(d) = dst {
        e = e.to(bus.agent(d).unwrap());
    }
    for (k, v) in meta {
        e = e
            .with_metadata(bus.register_meta_key(k).unwrap(), *v)
            .unwrap();
    }
    e
}

#[test]
fn the_issue_example_passes_what_it_says() {
    let bus = bus();
    let x = Expression::parse(
        &bus,
        r#"type == "agent.task" && priority >= high && meta.tenant == 7"#,
    )
    .unwrap();
    let ok = event(
        &bus,
        "agent.task",
        "a1",
        None,
        Priority::High,
        &[("tenant", 7)],
    );
    assert!(x.matches(&ok));
    assert!(x.matches(&event(
        &bus,
        "agent.task",
        "a1",
        None,
        Priority::Critical,
        &[("zone", 1), ("tenant", 7)]
    )));
    assert!(!x.matches(&event(
        &bus,
        "agent.task",
        "a1",
        None,
        Priority::Normal,
        &[("tenant", 7)]
    )));
    assert!(!x.matches(&event(
        &bus,
        "agent.status",
        "a1",
        None,
        Priority::High,
        &[("tenant", 7)]
    )));
    assert!(!x.matches(&event(
        &bus,
        "agent.task",
        "a1",
        None,
        Priority::High,
        &[("tenant", 8)]
    )));
    assert!(!x.matches(&event(&bus, "agent.task", "a1", None, Priority::High, &[])));
    // The filter indexes the route by the named type.
    let f = Filter::from(x);
    assert_eq!(f.types(), &[EventType::AGENT_TASK]);
    assert!(f.matches(&ok));
}

#[test]
fn names_and_operators() {
    let bus = bus();
    let e = event(
        &bus,
        "system.x.y",
        "a2",
        Some("a3"),
        Priority::Low,
        &[("zone", 5)],
    );
    let yes = [
        r#"type == "system.>""#,
        r#"type in ["agent.*", "system.x.y"]"#,
        r#"type != "agent.*""#,
        r#"source == "a2" && destination == "a3""#,
        r#"source in ["a1", "a2"]"#,
        r#"destination != "a1""#,
        "priority < normal",
        "priority <= low",
        "priority in [low, high]",
        "priority != critical",
        "meta.zone >= 5 && meta.zone <= 5 && meta.zone > 4 && meta.zone < 6",
        "meta.zone in [1, 5]",
        "meta.zone != 4",
        "!(meta.tenant != 4)", // missing entry: the comparison fails, its negation passes
        "false || true",
    ];
    for text in yes {
        assert!(Expression::parse(&bus, text).unwrap().matches(&e), "{text}");
    }
    let no = [
        r#"type == "system.*""#,
        r#"destination == "a1""#,
        "priority >= normal",
        "meta.tenant != 4",
        "meta.zone in []",
        r#"type in []"#,
        "!true",
    ];
    for text in no {
        assert!(
            !Expression::parse(&bus, text).unwrap().matches(&e),
            "{text}"
        );
    }
    let broadcast = event(&bus, "tool.run", "a1", None, Priority::Normal, &[]);
    assert!(Expression::parse(&bus, r#"destination != "a1""#)
        .unwrap()
        .matches(&broadcast));
    assert!(!Expression::parse(&bus, r#"destination in ["a1", "a2"]"#)
        .unwrap()
        .matches(&broadcast));
}

#[test]
fn unknown_names_are_typed_errors_with_positions() {
    let bus = bus();
    let unknown = |text: &str| match Expression::parse(&bus, text) {
        Err(FilterError::UnknownName {
            position,
            kind,
            name,
        }) => (position, kind, name),
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        unknown(r#"type == "nope""#),
        (8, "event type", "nope".into())
    );
    assert_eq!(
        unknown(r#"true && source in ["a1", "zz"]"#),
        (25, "agent", "zz".into())
    );
    assert_eq!(
        unknown("meta.colour == 1"),
        (5, "metadata key", "colour".into())
    );
    assert!(matches!(
        Expression::parse(&bus, r#"type == "agent.>.x""#),
        Err(FilterError::BadPattern { position: 15, .. })
    ));
    assert!(matches!(
        Filter::wildcard(&bus, "agent.**"),
        Err(FilterError::BadPattern { position: 6, .. })
    ));
    assert!(matches!(
        Filter::wildcard(&bus, "agent.nope"),
        Err(FilterError::UnknownName { .. })
    ));
}

#[test]
fn wildcards_see_types_registered_after_them() {
    let bus = bus();
    let x = Expression::parse(&bus, r#"type == "plugin.*""#).unwrap();
    let w = Filter::wildcard(&bus, "plugin.>").unwrap();
    let later = bus.register_event_type("plugin.audio").unwrap();
    let deep = bus.register_event_type("plugin.audio.fx").unwrap();
    let mut e: Event = Event::new(later);
    assert!(x.matches(&e) && w.matches(&e));
    e.set_event_type(deep);
    assert!(!x.matches(&e) && w.matches(&e));
    e.set_event_type(EventType::AGENT_TASK);
    assert!(!x.matches(&e) && !w.matches(&e));
    assert_eq!(
        Filter::wildcard(&bus, "agent.task").unwrap().types(),
        &[EventType::AGENT_TASK]
    );
}

// ---- the property: random trees, printed, parsed, compiled, against the model ----

fn name(options: &'static [&'static str]) -> impl Strategy<Value = Value> {
    proptest::sample::select(options).prop_map(|s| Value::Name(s.to_owned(), 0))
}

fn test_strategy() -> impl Strategy<Value = Test> {
    let names_op = prop_oneof![Just(Op::Cmp(Cmp::Eq)), Just(Op::Cmp(Cmp::Ne)), Just(Op::In)];
    let ord_op = prop_oneof![
        Just(Op::Cmp(Cmp::Eq)),
        Just(Op::Cmp(Cmp::Ne)),
        Just(Op::Cmp(Cmp::Lt)),
        Just(Op::Cmp(Cmp::Le)),
        Just(Op::Cmp(Cmp::Gt)),
        Just(Op::Cmp(Cmp::Ge)),
        Just(Op::In)
    ];
    const TYPE_NAMES: [&str; 11] = [
        "agent.task",
        "agent.status",
        "system.health",
        "system.x.y",
        "tool.run",
        "agent.task.sub",
        "agent.*",
        "system.>",
        "*.task",
        ">",
        "tool.*.z",
    ];
    let level = proptest::sample::select(
        &[
            Priority::Critical,
            Priority::High,
            Priority::Normal,
            Priority::Low,
        ][..],
    )
    .prop_map(|p| Value::Level(p, 0));
    let int = (0u64..4).prop_map(|n| Value::Int(n, 0));
    prop_oneof![
        (
            names_op.clone(),
            proptest::collection::vec(name(&TYPE_NAMES), 0..3)
        )
            .prop_map(|(op, v)| (Field::Type, op, v)),
        (
            names_op.clone(),
            proptest::collection::vec(name(&AGENTS), 0..3)
        )
            .prop_map(|(op, v)| (Field::Source, op, v)),
        (names_op, proptest::collection::vec(name(&AGENTS), 0..3)).prop_map(|(op, v)| (
            Field::Destination,
            op,
            v
        )),
        (ord_op.clone(), proptest::collection::vec(level, 0..3)).prop_map(|(op, v)| (
            Field::Priority,
            op,
            v
        )),
        (
            ord_op,
            proptest::sample::select(&KEYS[..]),
            proptest::collection::vec(int, 0..3)
        )
            .prop_map(|(op, k, v)| (Field::Meta(k.to_owned()), op, v)),
    ]
    .prop_map(|(field, op, mut values)| {
        // A comparison takes exactly one value; `in` takes any number.
        if op != Op::In {
            values.truncate(1);
            if values.is_empty() {
                values.push(match field {
                    Field::Type => Value::Name("agent.*".into(), 0),
                    Field::Source | Field::Destination => Value::Name("a1".into(), 0),
                    Field::Priority => Value::Level(Priority::High, 0),
                    Field::Meta(_) => Value::Int(1, 0),
                });
            }
        }
        Test {
            field,
            pos: 0,
            op,
            values,
        }
    })
}

fn expr_strategy() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<bool>().prop_map(Expr::Bool),
        test_strategy().prop_map(Expr::Test),
        test_strategy().prop_map(Expr::Test)
    ]
    .prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
        ]
    })
}

#[derive(Debug, Clone)]
struct Ev {
    ty: usize,
    src: usize,
    dst: Option<usize>,
    prio: u8,
    meta: Vec<(usize, u64)>,
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    (
        0..TYPES.len() + 7,
        0..AGENTS.len(),
        proptest::option::of(0..AGENTS.len()),
        0u8..4,
        proptest::collection::vec((0..KEYS.len(), 0u64..4), 0..3),
    )
        .prop_map(|(ty, src, dst, prio, meta)| Ev {
            ty,
            src,
            dst,
            prio,
            meta,
        })
}

fn build(bus: &Bus, ev: &Ev) -> Event {
    // Types 0..7 are the built-ins, then TYPES in order (re-registered built-ins excepted).
    let mut e: Event = Event::new(EventType(
        ev.ty
            .min(bus.with_filter_registry(|r| r.names.event_type_count()) as usize - 1)
            as u16,
    ))
    .with_priority(Priority::from_u8(ev.prio).unwrap());
    e.stamp(1, bus.agent(AGENTS[ev.src]).unwrap(), 0);
    if let Some(d) = ev.dst {
        e = e.to(bus.agent(AGENTS[d]).unwrap());
    }
    for &(k, v) in &ev.meta {
        let _ = e.set_metadata(bus.register_meta_key(KEYS[k]).unwrap(), v);
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Printed, the tree parses back to itself; compiled, it agrees with the naive
    /// evaluator on every event; printed again from the parse, it compiles to an equal
    /// program.
    #[test]
    fn compiled_programs_agree_with_the_model(tree in expr_strategy(), evs in proptest::collection::vec(ev_strategy(), 1..8)) {
        let bus = bus();
        let text = tree.to_string();
        let parsed = parser::parse(&text).unwrap();
        prop_assert_eq!(&parsed.to_string(), &text);
        let x = Expression::parse(&bus, &text).unwrap();
        let again = Expression::parse(&bus, &x.to_string()).unwrap();
        prop_assert!(x == again);
        for ev in &evs {
            let e = build(&bus, ev);
            prop_assert_eq!(x.matches(&e), tree.eval_model(&BusNames(&bus), e.header()), "{} on {:?}", text, ev);
            prop_assert_eq!(x.matches(&e), x.matches_model(&bus, &e));
            prop_assert_eq!(Filter::from(Expression::parse(&bus, &text).unwrap()).matches(&e), x.matches(&e));
        }
    }

    /// Whatever the text, parsing returns (never panics), and an error's position lies
    /// within the text.
    #[test]
    fn parsing_arbitrary_text_never_panics(text in "[ -~]{0,80}") {
        let bus = bus();
        if let Err(e) = Expression::parse(&bus, &text) {
            prop_assert!(e.position() <= text.len());
        }
    }
}
