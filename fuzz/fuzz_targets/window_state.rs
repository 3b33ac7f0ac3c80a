//! `dreamnet_bus::window::WindowState` (aggregation windows: tumbling, hopping, session)
//! against the naive model of `tests/tests/window_model` (windows in a `BTreeMap`, values
//! in `Vec`s, percentiles by sorting): events with any key, value and timestamp (behind,
//! at or ahead of now), time moving forward, explicit closes, and a final close at the
//! end of time. After every op: the same outcome per event (counted into how many windows,
//! late, key overflow), the same results (count, sum, min, max, mean, p50/p90/p99, span,
//! causation) emitted so far, the same counts, and conservation.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use dreamnet_bus::window::{Shape, WindowKind, WindowResult, WindowState};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/tests/window_model/mod.rs"]
mod window_model;
use window_model::{canonical, Model};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Tumbling(u8),
    Hopping(u8, u8),
    Session(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// An event: key, how far behind now its timestamp is (negative: ahead), value.
    Event(u8, i8, i64),
    /// A small value (percentiles of close values are the interesting case).
    Small(u8, i8, i8),
    Advance(u8),
    Close,
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    grace: u8,
    capacity: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let ns = |v: u8| Duration::from_nanos(u64::from(v).max(1));
    let kind = match input.kind {
        Kind::Tumbling(s) => WindowKind::Tumbling(ns(s)),
        Kind::Hopping(s, k) => {
            let size = u64::from(s).max(1);
            let advance = (size / u64::from(k % 8).max(1)).max(1);
            WindowKind::Hopping {
                size: Duration::from_nanos(size),
                advance: Duration::from_nanos(advance),
            }
        }
        Kind::Session(g) => WindowKind::Session { gap: ns(g) },
    };
    let Ok((shape, per_key)) = Shape::new(kind, Duration::from_nanos(u64::from(input.grace)))
    else {
        return;
    };
    let cap = usize::from(input.capacity % 6).max(1);
    let mut state = WindowState::try_new(shape, cap, per_key).expect("a small table");
    let mut model = Model::new(shape, cap);
    let mut got: Vec<(WindowResult, u64)> = Vec::new();
    let mut now = 0u64;
    for (i, op) in input.ops.iter().enumerate().take(512) {
        let mut emit = |r: &WindowResult, cause: u64| {
            got.push((*r, cause));
            true
        };
        let event = match *op {
            Op::Event(k, back, v) => Some((k % 8, back, v)),
            Op::Small(k, back, v) => Some((k % 8, back, i64::from(v))),
            Op::Advance(d) => {
                now += u64::from(d);
                None
            }
            Op::Close => {
                state.close_due(now, &mut emit);
                model.close_due(now);
                None
            }
        };
        if let Some((key, back, value)) = event {
            let ts = if back >= 0 {
                now.saturating_sub(back as u64)
            } else {
                now + u64::from(back.unsigned_abs())
            };
            let cause = i as u64 + 1;
            let a = state.observe(u64::from(key), ts, value, cause, now, &mut emit);
            let b = model.observe(u64::from(key), ts, value, cause, now);
            assert_eq!(a, b, "op {i}: {op:?}");
        }
        assert_eq!(canonical(got.clone()), canonical(model.emitted.clone()), "after op {i}");
        let s = state.stats();
        assert!(s.conserved(), "{s:?}");
        assert_eq!(
            (s.counted, s.late, s.key_overflow, s.window_adds, s.late_windows),
            (model.counted, model.late, model.key_overflow, model.window_adds, model.late_windows)
        );
        assert_eq!(s.open_count, model.open_count());
        assert!(state.keys() <= cap);
    }
    state.close_due(u64::MAX, &mut |r: &WindowResult, c| {
        got.push((*r, c));
        true
    });
    model.close_due(u64::MAX);
    assert_eq!(canonical(got), canonical(model.emitted.clone()));
    assert_eq!(state.stats().open_count, 0);
    assert_eq!(state.keys(), 0);
});
