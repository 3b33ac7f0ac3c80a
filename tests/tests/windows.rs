//! Aggregation windows (issue 14 §6): the window table against a naive model (property
//! tests), the same through a real bus on a manual clock, conservation from the stats,
//! late / overflow / unaggregatable dead letters, payload accessors and `stop_window`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dreamnet_bus::window::{
    KeyBy, Observed, Shape, WindowKind, WindowResult, WindowSpec, WindowState,
};
use dreamnet_bus::{Bus, DeadReason, Event, EventType, Filter, ManualClock, Outcome, Shard};
use proptest::prelude::*;

mod window_model;
use window_model::{canonical, Model};

#[derive(Clone, Debug)]
enum Op {
    /// An event for `key`, stamped `back` ns before now (or `-back` after, if negative).
    Event {
        key: u64,
        back: i64,
        value: i64,
    },
    Advance(u64),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    let value = prop_oneof![-50i64..50, any::<i64>()];
    prop_oneof![
        6 => (0u64..6, -3i64..120, value).prop_map(|(key, back, value)| Op::Event { key, back, value }),
        3 => (0u64..40).prop_map(Op::Advance),
        1 => Just(Op::Close),
    ]
}

fn kind() -> impl Strategy<Value = WindowKind> {
    let ns = Duration::from_nanos;
    prop_oneof![
        (1u64..60).prop_map(move |s| WindowKind::Tumbling(ns(s))),
        (1u64..60, 1u64..=6).prop_map(move |(s, k)| WindowKind::Hopping {
            size: ns(s),
            advance: ns((s / k).max(1)),
        }),
        (1u64..40).prop_map(move |g| WindowKind::Session { gap: ns(g) }),
    ]
}

fn ts_of(now: u64, back: i64) -> u64 {
    if back >= 0 {
        now.saturating_sub(back as u64)
    } else {
        now + back.unsigned_abs()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The window table emits exactly what the model emits (results, percentiles and
    /// causation), reports the same outcome per event, and its counts match and conserve.
    #[test]
    fn window_state_matches_the_model(kind in kind(), grace in 0u64..40, cap in 1usize..5,
                                      ops in proptest::collection::vec(op(), 0..160)) {
        let Ok((shape, per_key)) = Shape::new(kind, Duration::from_nanos(grace)) else {
            return Ok(());
        };
        let mut state = WindowState::try_new(shape, cap, per_key).expect("a small table");
        let mut model = Model::new(shape, cap);
        let mut got: Vec<(WindowResult, u64)> = Vec::new();
        let mut now = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let mut emit = |r: &WindowResult, cause: u64| { got.push((*r, cause)); true };
            match *op {
                Op::Event { key, back, value } => {
                    let ts = ts_of(now, back);
                    let a = state.observe(key, ts, value, i as u64 + 1, now, &mut emit);
                    let b = model.observe(key, ts, value, i as u64 + 1, now);
                    prop_assert_eq!(a, b, "op {} {:?}", i, op);
                }
                Op::Advance(d) => now += d,
                Op::Close => {
                    state.close_due(now, &mut emit);
                    model.close_due(now);
                }
            }
            prop_assert_eq!(canonical(got.clone()), canonical(model.emitted.clone()), "after op {}", i);
        }
        let s = state.stats();
        prop_assert_eq!((s.counted, s.late, s.key_overflow), (model.counted, model.late, model.key_overflow));
        prop_assert_eq!((s.window_adds, s.late_windows), (model.window_adds, model.late_windows));
        prop_assert_eq!(s.open_count, model.open_count());
        prop_assert!(s.conserved(), "{:?}", s);
        // Everything still open comes out at the end of time, and nothing else.
        state.close_due(u64::MAX, &mut |r: &WindowResult, c| { got.push((*r, c)); true });
        model.close_due(u64::MAX);
        prop_assert_eq!(canonical(got), canonical(model.emitted.clone()));
        let s = state.stats();
        prop_assert_eq!((s.open_count, s.emitted_count), (0, s.window_adds));
        prop_assert_eq!(state.keys(), 0);
    }
}

/// Polls every shard until nothing more happens.
fn drain(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(1024)).sum::<usize>() > 0 {}
}

type Results = Arc<Mutex<Vec<(WindowResult, u64)>>>;

/// A bus with one window on shard 0 keyed by metadata `key`, value metadata `v`, and a
/// subscriber collecting its results.
struct Rig {
    clock: ManualClock,
    bus: Bus,
    shards: Vec<Shard>,
    window: dreamnet_bus::Window,
    key: dreamnet_bus::MetaKey,
    value: dreamnet_bus::MetaKey,
    results: Results,
}

fn rig(kind: WindowKind, grace: Duration, cap: usize) -> Rig {
    let clock = ManualClock::new();
    let (bus, shards) = Bus::builder()
        .manual_clock(clock.clone())
        .tick(Duration::from_micros(1))
        .build_polled()
        .expect("bus");
    let key = bus.register_meta_key("key").expect("meta");
    let value = bus.register_meta_key("v").expect("meta");
    let spec = WindowSpec::new(kind)
        .key_by(KeyBy::Meta(key))
        .value_meta(value)
        .grace(grace)
        .key_capacity(cap);
    let window = bus
        .window(Filter::of_type(EventType::AGENT_TASK), spec)
        .expect("window");
    let results: Results = Arc::default();
    let r = Arc::clone(&results);
    bus.subscribe(Filter::of_type(window.output()), move |d| {
        let p = d.payload::<WindowResult>().expect("a window result");
        let res = rkyv::deserialize::<WindowResult, rkyv::rancor::Error>(p).expect("deserialize");
        r.lock().unwrap().push((res, d.header().causation_id()));
        Outcome::Done
    })
    .expect("subscribe");
    Rig {
        clock,
        bus,
        shards,
        window,
        key,
        value,
        results,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Through a real bus on a manual clock: events published at the clock's time and
    /// delivered at later polls produce the model's results (closed on the timer wheel)
    /// and its late / overflow counts, and late events are dead-lettered as `Late`.
    #[test]
    fn bus_windows_match_the_model(kind in kind(), grace_us in 0u64..40, cap in 1usize..4,
                                   ops in proptest::collection::vec((0u64..4, -20i64..20, 0u64..30, any::<bool>()), 1..60)) {
        let us = Duration::from_micros;
        let kind = match kind {
            WindowKind::Tumbling(s) => WindowKind::Tumbling(us(s.as_nanos() as u64)),
            WindowKind::Hopping { size, advance } => WindowKind::Hopping {
                size: us(size.as_nanos() as u64), advance: us(advance.as_nanos() as u64) },
            WindowKind::Session { gap } => WindowKind::Session { gap: us(gap.as_nanos() as u64) },
        };
        let Ok((shape, _)) = Shape::new(kind, us(grace_us)) else { return Ok(()); };
        let mut rig = rig(kind, us(grace_us), cap);
        let mut model = Model::new(shape, cap);
        let mut publisher = rig.bus.publisher(rig.bus.register_agent("p").unwrap()).unwrap();
        // Published but not yet polled: (key, ts, value, id).
        let mut pending: Vec<(u64, u64, i64, u64)> = Vec::new();
        for (key, value, advance_us, poll) in ops {
            let event = Event::new(EventType::AGENT_TASK)
                .with_metadata(rig.key, key).unwrap()
                .with_metadata(rig.value, value as u64).unwrap();
            let receipt = publisher.try_publish(event).unwrap();
            pending.push((key, rig.clock.now_ns(), value, receipt.id));
            rig.clock.advance(us(advance_us));
            if poll {
                let now = rig.clock.now_ns();
                drain(&mut rig.shards);
                model.close_due(now);
                for (k, ts, v, id) in pending.drain(..) {
                    model.observe(k, ts, v, id, now);
                }
            }
        }
        let now = rig.clock.now_ns();
        drain(&mut rig.shards);
        for (k, ts, v, id) in pending.drain(..) {
            model.observe(k, ts, v, id, now);
        }
        // The end of time: every window closes on the wheel.
        rig.clock.advance(Duration::from_secs(1));
        drain(&mut rig.shards);
        model.close_due(rig.clock.now_ns());
        let got = rig.results.lock().unwrap().clone();
        prop_assert_eq!(canonical(got), canonical(model.emitted.clone()));
        let s = rig.window.stats();
        prop_assert_eq!((s.counted, s.late, s.key_overflow), (model.counted, model.late, model.key_overflow));
        prop_assert!(s.conserved() && s.open_count == 0, "{:?}", s);
        let mut late = 0;
        let mut overflow = 0;
        rig.bus.dead_letters().inspect(|l| match l.reason {
            DeadReason::Late => late += 1,
            DeadReason::KeyOverflow => overflow += 1,
            _ => {}
        });
        prop_assert_eq!((late, overflow), (model.late, model.key_overflow));
    }
}

/// Conservation from the stats alone, with every path taken: counted (hopping, so
/// several windows per event), late, key overflow and unaggregatable (no key).
#[test]
fn every_input_is_counted_late_overflowed_or_unaggregatable() {
    let ms = Duration::from_millis;
    let mut rig = rig(
        WindowKind::Hopping {
            size: ms(10),
            advance: ms(5),
        },
        ms(2),
        2,
    );
    let mut p = rig
        .bus
        .publisher(rig.bus.register_agent("p").unwrap())
        .unwrap();
    let ev = |k: u64, v: i64| {
        Event::new(EventType::AGENT_TASK)
            .with_metadata(rig.key, k)
            .unwrap()
            .with_metadata(rig.value, v as u64)
            .unwrap()
    };
    rig.clock.set_ns(ms(7).as_nanos() as u64);
    let mut last_id = 0;
    for v in 1..=4 {
        last_id = p.try_publish(ev(1, v)).unwrap().id; // windows [0,10) and [5,15)
    }
    p.try_publish(ev(2, 100)).unwrap();
    p.try_publish(ev(3, 7)).unwrap(); // a third key: overflow (capacity 2)
    p.try_publish(Event::new(EventType::AGENT_TASK)).unwrap(); // no key: unaggregatable
    drain(&mut rig.shards);
    // An event stamped at 7 ms but delivered at 20 ms: [0,10) closed at 12, [5,15) at 17.
    p.try_publish(ev(1, 5)).unwrap();
    rig.clock.set_ns(ms(20).as_nanos() as u64);
    drain(&mut rig.shards);
    let s = rig.window.stats();
    assert_eq!(s.inputs, 8);
    assert_eq!(
        (s.counted, s.late, s.key_overflow, s.unaggregatable),
        (5, 1, 1, 1)
    );
    assert_eq!(
        s.window_adds, 10,
        "each counted event is in two hopping windows"
    );
    assert!(s.conserved(), "{s:?}");
    assert_eq!(
        (s.emitted_windows, s.emitted_count, s.open_count),
        (4, 10, 0)
    );
    let mut reasons = Vec::new();
    rig.bus.dead_letters().inspect(|l| reasons.push(l.reason));
    reasons.sort_by_key(|r| r.index());
    assert_eq!(
        reasons,
        [
            DeadReason::Late,
            DeadReason::KeyOverflow,
            DeadReason::Unaggregatable
        ]
    );
    let mut got = rig.results.lock().unwrap().clone();
    got.sort_by_key(|(r, _)| (r.key, r.start_ns));
    let key1: Vec<_> = got
        .iter()
        .filter(|(r, _)| r.key == 1)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(key1.len(), 2);
    for r in &key1 {
        assert_eq!((r.count, r.sum, r.min, r.max, r.mean), (4, 10, 1, 4, 2.5));
        assert_eq!((r.p50, r.p90, r.p99), (2, 4, 4));
    }
    assert_eq!(key1[0].start_ns, 0);
    assert_eq!(key1[1].start_ns, ms(5).as_nanos() as u64);
    assert_eq!(got[0].1, last_id, "causation: the last event counted in");
    rig.bus.close();
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Reading {
    sensor: u32,
    micros: i64,
}

/// A value read from the archived payload, keyed by type; a session window; and
/// `stop_window` emitting what is still open.
#[test]
fn payload_accessor_session_and_stop_window() {
    let clock = ManualClock::new();
    let (bus, mut shards) = Bus::builder()
        .manual_clock(clock.clone())
        .build_polled()
        .unwrap();
    let spec = WindowSpec::session(Duration::from_millis(5))
        .key_by(KeyBy::Type)
        .value_with(|d| d.payload::<Reading>().ok().map(|r| r.micros.to_native()));
    let window = bus
        .window(Filter::of_type(EventType::AGENT_TASK), spec)
        .unwrap();
    let results: Arc<Mutex<Vec<WindowResult>>> = Arc::default();
    let r = Arc::clone(&results);
    bus.subscribe(Filter::of_type(window.output()), move |d| {
        let p = d.payload::<WindowResult>().unwrap();
        r.lock()
            .unwrap()
            .push(rkyv::deserialize::<WindowResult, rkyv::rancor::Error>(p).unwrap());
        Outcome::Done
    })
    .unwrap();
    let mut p = bus
        .publisher(bus.register_agent("sensor").unwrap())
        .unwrap();
    for (i, micros) in [10i64, -20, 1000].into_iter().enumerate() {
        let e = Event::new(EventType::AGENT_TASK)
            .with_payload(&Reading {
                sensor: i as u32,
                micros,
            })
            .unwrap();
        p.try_publish(e).unwrap();
        clock.advance(Duration::from_millis(2)); // within the gap: one session
        drain(&mut shards);
    }
    assert!(
        results.lock().unwrap().is_empty(),
        "the session is still open"
    );
    assert_eq!(
        shards[0].pending_timers(),
        1,
        "the session's close is on the wheel"
    );
    assert_eq!(bus.stop_window(&window).unwrap(), 1);
    drain(&mut shards);
    clock.advance(Duration::from_millis(10));
    drain(&mut shards);
    assert_eq!(shards[0].pending_timers(), 0);
    assert_eq!(
        bus.stats().shards[0].scheduled_cancelled,
        1,
        "stopping cancelled its tick"
    );
    let got = results.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let r = got[0];
    assert_eq!(
        (r.key, r.count, r.sum, r.min, r.max),
        (u64::from(EventType::AGENT_TASK.raw()), 3, 990, -20, 1000)
    );
    assert_eq!((r.start_ns, r.end_ns), (0, 4_000_000 + 5_000_000));
    assert_eq!(r.p50, 10);
    assert!(window.stats().conserved());
    // Stopped: a new event is not aggregated.
    p.try_publish(
        Event::new(EventType::AGENT_TASK)
            .with_payload(&Reading {
                sensor: 9,
                micros: 1,
            })
            .unwrap(),
    )
    .unwrap();
    drain(&mut shards);
    assert_eq!(window.stats().inputs, 3);
}

/// Bad specs are typed errors, never panics.
#[test]
fn bad_specs_are_typed_errors() {
    use dreamnet_bus::window::WindowError;
    let bus = Bus::builder().build().unwrap();
    let w = |spec: WindowSpec| bus.window(Filter::any(), spec).map(|_| ()).unwrap_err();
    assert!(matches!(
        w(WindowSpec::tumbling(Duration::ZERO)),
        WindowError::ZeroSpan { what: "size" }
    ));
    assert!(matches!(
        w(WindowSpec::hopping(
            Duration::from_secs(1),
            Duration::from_secs(2)
        )),
        WindowError::AdvanceExceedsSize { .. }
    ));
    assert!(matches!(
        w(WindowSpec::hopping(
            Duration::from_secs(100),
            Duration::from_secs(1)
        )),
        WindowError::TooManyWindowsPerKey { needed: 101, .. }
    ));
    assert!(matches!(
        w(WindowSpec::tumbling(Duration::from_secs(1)).key_capacity(0)),
        WindowError::KeyCapacity { given: 0, .. }
    ));
    assert!(matches!(
        w(WindowSpec::tumbling(Duration::from_secs(
            2 * 365 * 24 * 3600
        ))),
        WindowError::SpanTooLong(_)
    ));
    // 65,536 keys x 61 windows x ~4 KiB is ~16 GB: over the default 1 GiB budget.
    let huge = WindowSpec::hopping(Duration::from_secs(60), Duration::from_secs(1))
        .key_capacity(dreamnet_bus::window::MAX_WINDOW_KEYS);
    assert!(matches!(w(huge), WindowError::MemoryBudget { budget, .. } if budget == 1 << 30));
    let small = Bus::<128>::builder_with_slot().build().unwrap();
    let err = small
        .window(
            Filter::any(),
            WindowSpec::<128>::tumbling(Duration::from_secs(1)),
        )
        .unwrap_err();
    assert!(
        matches!(err, WindowError::SlotTooSmall { slot: 128 }),
        "{err:?}"
    );
    let _ = Observed::Late;
}

/// On worker threads with the real clock: every event ends up in an emitted window, the
/// closes driven by the wheel alone (no more events arrive after the last publish). The
/// grace covers the delivery delay of a loaded 2-core machine (lateness is judged on the
/// bus clock when the shard takes the event).
#[test]
fn worker_mode_real_clock_emits_every_event() {
    let bus = Bus::builder().shards(2).build().unwrap();
    // 21 open windows per key at most: (50 ms + 1 s) / 50 ms.
    let spec = WindowSpec::tumbling(Duration::from_millis(50))
        .key_by(KeyBy::Source)
        .grace(Duration::from_secs(1));
    let window = bus
        .window(Filter::of_type(EventType::AGENT_TASK), spec)
        .unwrap();
    let total = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Arc::clone(&total);
    bus.subscribe(Filter::of_type(window.output()), move |d| {
        let n = d
            .payload::<WindowResult>()
            .map_or(0, |r| r.count.to_native());
        t.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Outcome::Done
    })
    .unwrap();
    let mut p = bus.publisher(bus.register_agent("w").unwrap()).unwrap();
    for _ in 0..1000 {
        p.publish(Event::new(EventType::AGENT_TASK)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while total.load(std::sync::atomic::Ordering::Relaxed) < 1000
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        total.load(std::sync::atomic::Ordering::Relaxed),
        1000,
        "{:?} {:?}",
        window.stats(),
        bus.stats()
    );
    let s = window.stats();
    assert!(
        s.conserved() && s.counted == 1000 && s.open_count == 0,
        "{s:?}"
    );
    bus.close();
}
