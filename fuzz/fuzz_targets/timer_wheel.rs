//! `dreamnet_bus::timer_wheel::TimerWheel` against a `BTreeMap` model, checking the
//! module's contract after every operation:
//!
//! - never early: `fire` only for deadlines `<=` the call's target;
//! - never late: an unbounded `advance(t)` leaves no pending entry with deadline `<= t`
//!   (lateness 0); a bounded one fires exactly `min(max, due)`, and finishes the job when
//!   it fires fewer than `max`;
//! - exactly once, values moved out; cancelled entries never fire; stale keys do nothing;
//! - `BeyondHorizon` exactly when `deadline > now && deadline - now >= HORIZON_TICKS`;
//! - `Full` exactly at capacity, with the value handed back;
//! - firing order: entries already due at the call first, then ascending deadline, equal
//!   deadlines in insertion order;
//! - `len`, `is_full`, `next_expiration` (exact), `next_wake` (never after the earliest),
//!   `deadline(key)` agree with the model; dropping the wheel drops each pending value once.
#![no_main]

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};

use arbitrary::Arbitrary;
use dreamnet_bus::timer_wheel::{InsertError, TimerKey, TimerWheel, HORIZON_TICKS, LEVELS};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// A value with a drop tracker.
#[derive(Debug, PartialEq, Eq)]
struct Val(u64);

impl Val {
    fn new(seq: u64) -> Self {
        LIVE.with(|l| l.set(l.get() + 1));
        Val(seq)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

/// A deadline relative to `now()`, shaped so the interesting places are likely.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Offset {
    Small(i8),
    Medium(i16),
    Large(u32),
    /// Around the edge of level `level`: `64^level + delta`.
    Edge {
        level: u8,
        delta: i8,
    },
    /// Around the horizon: `HORIZON_TICKS + delta`.
    Horizon(i8),
    /// Anywhere (absolute deadline).
    Absolute(u64),
    /// In the past by this much.
    Past(u64),
}

/// An amount of time to advance by.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Amount {
    Zero,
    Small(u8),
    Medium(u16),
    Large(u32),
    Edge {
        level: u8,
        delta: i8,
    },
    Huge(u64),
    /// To this absolute tick (may be in the past: then time does not move).
    To(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Insert(Offset),
    /// Cancel the n-th key ever handed out (pending, fired, or cancelled).
    Cancel(u16),
    Advance(Amount),
    AdvanceBounded(Amount, u8),
    /// Advance to `next_wake()` (the poll loop's hop).
    AdvanceToWake,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    start: Start,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Start {
    Zero,
    At(u64),
    NearHorizon(i8),
    NearMax(u16),
}

fn edge(level: u8, delta: i8) -> i128 {
    let level = u32::from(level) % (LEVELS as u32 + 1);
    (1i128 << (6 * level)) + i128::from(delta)
}

fn resolve(now: u64, off: Offset) -> u64 {
    let rel: i128 = match off {
        Offset::Small(d) => i128::from(d),
        Offset::Medium(d) => i128::from(d),
        Offset::Large(d) => i128::from(d),
        Offset::Edge { level, delta } => edge(level, delta),
        Offset::Horizon(d) => i128::from(HORIZON_TICKS) + i128::from(d),
        Offset::Absolute(t) => return t,
        Offset::Past(d) => -i128::from(d),
    };
    (i128::from(now) + rel).clamp(0, i128::from(u64::MAX)) as u64
}

fn target(now: u64, a: Amount) -> u64 {
    let by: u64 = match a {
        Amount::Zero => 0,
        Amount::Small(d) => d.into(),
        Amount::Medium(d) => d.into(),
        Amount::Large(d) => d.into(),
        Amount::Edge { level, delta } => edge(level, delta).max(0) as u64,
        Amount::Huge(d) => d,
        Amount::To(t) => return t,
    };
    now.saturating_add(by)
}

struct Harness {
    wheel: TimerWheel<Val>,
    cap: usize,
    /// (deadline, seq) of pending entries.
    model: BTreeMap<(u64, u64), TimerKey>,
    /// Every key handed out: (key, deadline, seq).
    keys: Vec<(TimerKey, u64, u64)>,
    /// Seqs that fired or were cancelled.
    gone: HashSet<u64>,
    seq: u64,
}

impl Harness {
    fn advance(&mut self, to: u64, max: usize) {
        let before = self.wheel.now();
        let effective = to.max(before);
        let due: Vec<(u64, u64)> = self
            .model
            .range(..=(effective, u64::MAX))
            .map(|(&k, _)| k)
            .collect();
        let mut fired: Vec<(TimerKey, u64, u64)> = Vec::new();
        let n = self.wheel.advance_bounded(to, max, |k, d, v| {
            fired.push((k, d, v.0));
            drop(v);
        });
        assert_eq!(n, fired.len());
        assert_eq!(
            n,
            due.len().min(max),
            "fired {n} of {} due (max {max})",
            due.len()
        );
        for &(key, deadline, seq) in &fired {
            assert!(
                deadline <= effective,
                "early: deadline {deadline} > {effective}"
            );
            assert!(
                self.gone.insert(seq),
                "seq {seq} fired twice or after cancel"
            );
            assert_eq!(
                self.model.remove(&(deadline, seq)),
                Some(key),
                "fired an entry the model does not have pending, or under another key"
            );
        }
        // Already-due entries (deadline <= now() before the call) fire first; then the rest
        // in ascending deadline order, ties in insertion order.
        let split = fired
            .iter()
            .position(|f| f.1 > before)
            .unwrap_or(fired.len());
        assert!(
            fired[split..].iter().all(|f| f.1 > before),
            "an already-due entry fired after a newly due one"
        );
        for w in fired[split..].windows(2) {
            assert!(
                (w[0].1, w[0].2) < (w[1].1, w[1].2),
                "order: {:?} before {:?}",
                w[0],
                w[1]
            );
        }
        if n < max {
            // Finished: time is at the target and nothing due is left (lateness 0).
            assert_eq!(self.wheel.now(), effective);
            assert!(
                self.model.range(..=(effective, u64::MAX)).next().is_none(),
                "late: an entry due at or before {effective} did not fire"
            );
        } else {
            assert!(self.wheel.now() >= before && self.wheel.now() <= effective);
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.wheel.now();
        match op {
            Op::Insert(off) => {
                let deadline = resolve(now, off);
                self.seq += 1;
                let seq = self.seq;
                let beyond = deadline > now && deadline - now >= HORIZON_TICKS;
                match self.wheel.insert(deadline, Val::new(seq)) {
                    Ok(key) => {
                        assert!(!beyond, "accepted {deadline} beyond the horizon at {now}");
                        assert!(self.model.len() < self.cap, "accepted beyond capacity");
                        self.model.insert((deadline, seq), key);
                        self.keys.push((key, deadline, seq));
                    }
                    Err(InsertError::BeyondHorizon(v)) => {
                        assert!(beyond, "refused {deadline} at {now} as beyond the horizon");
                        assert_eq!(v.0, seq);
                    }
                    Err(InsertError::Full(v)) => {
                        assert!(!beyond, "Full reported where BeyondHorizon applies");
                        assert_eq!(self.model.len(), self.cap, "Full below capacity");
                        assert_eq!(v.0, seq);
                    }
                }
            }
            Op::Cancel(n) => {
                if self.keys.is_empty() {
                    return;
                }
                let (key, deadline, seq) = self.keys[usize::from(n) % self.keys.len()];
                let expected = self.model.remove(&(deadline, seq));
                let got = self.wheel.cancel(key);
                assert_eq!(got.as_ref().map(|v| v.0), expected.map(|_| seq));
                if got.is_some() {
                    assert!(self.gone.insert(seq));
                }
            }
            Op::Advance(a) => self.advance(target(now, a), usize::MAX),
            Op::AdvanceBounded(a, max) => self.advance(target(now, a), usize::from(max % 8)),
            Op::AdvanceToWake => {
                if let Some(wake) = self.wheel.next_wake() {
                    self.advance(wake, usize::MAX);
                }
            }
        }
    }

    fn check(&self) {
        let w = &self.wheel;
        assert_eq!(w.len(), self.model.len());
        assert_eq!(w.is_empty(), self.model.is_empty());
        assert_eq!(w.is_full(), self.model.len() == self.cap);
        assert_eq!(w.capacity(), self.cap);
        let earliest = self.model.keys().next().map(|&(d, _)| d);
        assert_eq!(w.next_expiration(), earliest);
        match (w.next_wake(), earliest) {
            (Some(wake), Some(e)) => {
                assert!(
                    wake <= e.max(w.now()),
                    "next_wake {wake} after earliest {e}"
                );
                assert!(wake >= w.now());
            }
            (None, None) => {}
            (wake, e) => panic!("next_wake {wake:?} with earliest {e:?}"),
        }
        // Keys: recent ones every time, all of them now and then (cost).
        let from = if self.keys.len() % 16 == 0 {
            0
        } else {
            self.keys.len().saturating_sub(8)
        };
        for &(key, deadline, seq) in &self.keys[from..] {
            let pending = self.model.contains_key(&(deadline, seq));
            assert_eq!(w.deadline(key), pending.then_some(deadline));
        }
        assert_eq!(LIVE.with(Cell::get), self.model.len() as i64);
    }
}

fuzz_target!(|input: Input| {
    LIVE.with(|l| l.set(0));
    let cap = usize::from(input.capacity % 40);
    let start = match input.start {
        Start::Zero => 0,
        Start::At(t) => t,
        Start::NearHorizon(d) => (i128::from(HORIZON_TICKS) + i128::from(d)) as u64,
        Start::NearMax(d) => u64::MAX - u64::from(d),
    };
    let mut h = Harness {
        wheel: TimerWheel::new(cap, start),
        cap,
        model: BTreeMap::new(),
        keys: Vec::new(),
        gone: HashSet::new(),
        seq: 0,
    };
    assert_eq!(h.wheel.now(), start);
    for &op in input.ops.iter().take(600) {
        h.apply(op);
        h.check();
    }
    // Draining reaches everything left: every deadline is within a horizon of now (or
    // time saturates at u64::MAX, past every deadline).
    let left = h.model.len();
    let end = h.wheel.now().saturating_add(HORIZON_TICKS);
    h.advance(end, usize::MAX);
    assert!(
        h.model.is_empty(),
        "{} of {left} never fired",
        h.model.len()
    );
    drop(h.wheel);
    assert_eq!(
        LIVE.with(Cell::get),
        0,
        "dropping the wheel leaked or double-dropped"
    );
});
