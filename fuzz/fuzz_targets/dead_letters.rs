//! `dreamnet_bus::dead_letters::DeadLetterRing` under each full policy, against a
//! `VecDeque` model plus the two counters (stored, dropped): push (what gives way, and what
//! is handed back), pop, iter (inspect), drain_into, take_where (the redrive selection),
//! purge. Entries carry a drop tracker: nothing is leaked or dropped twice, also when the
//! ring itself is dropped. Capacity never grows (no reallocation past `new`).
#![no_main]

use std::cell::Cell;
use std::collections::VecDeque;

use arbitrary::Arbitrary;
use dreamnet_bus::dead_letters::{DeadLetterRing, FullPolicy, Pushed};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

#[derive(Debug, PartialEq, Eq)]
struct Entry(u32);

impl Entry {
    fn new(v: u32) -> Self {
        LIVE.with(|l| l.set(l.get() + 1));
        Entry(v)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Push(u32),
    /// Push `n` entries in a row (a burst of failures).
    Burst(u8),
    Pop,
    Inspect,
    DrainInto(u8),
    /// Take the entries whose value is `r` mod `m` (m in 1..=4), at most `max` of them.
    TakeWhere {
        m: u8,
        r: u8,
        max: u8,
    },
    Purge,
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    drop_oldest: bool,
    ops: Vec<Op>,
}

struct Harness {
    ring: DeadLetterRing<Entry>,
    model: VecDeque<u32>,
    cap: usize,
    policy: FullPolicy,
    stored: u64,
    dropped: u64,
    next: u32,
}

impl Harness {
    fn push(&mut self, v: u32) {
        let got = self.ring.push(Entry::new(v));
        if self.model.len() < self.cap {
            assert_eq!(got, Pushed::Stored);
            self.model.push_back(v);
            self.stored += 1;
            return;
        }
        self.dropped += 1;
        match self.policy {
            FullPolicy::DropOldest => {
                let oldest = self.model.pop_front().expect("cap >= 1");
                self.model.push_back(v);
                self.stored += 1;
                assert_eq!(got, Pushed::DroppedOldest(Entry(oldest)));
            }
            FullPolicy::RejectNew => assert_eq!(got, Pushed::Rejected(Entry(v))),
        }
        // The comparison values above were built without the tracker.
        LIVE.with(|l| l.set(l.get() + 1));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Push(v) => self.push(v),
            Op::Burst(n) => {
                for _ in 0..n % 40 {
                    self.next = self.next.wrapping_add(1);
                    self.push(self.next);
                }
            }
            Op::Pop => assert_eq!(self.ring.pop().map(|e| e.0), self.model.pop_front()),
            Op::Inspect => assert!(self.ring.iter().map(|e| e.0).eq(self.model.iter().copied())),
            Op::DrainInto(n) => {
                let n = usize::from(n % 40);
                let mut out: Vec<Entry> = Vec::new();
                let k = self.ring.drain_into(n, &mut out);
                let want: Vec<u32> = self.model.drain(..n.min(self.model.len())).collect();
                assert_eq!(k, want.len());
                assert_eq!(out.iter().map(|e| e.0).collect::<Vec<_>>(), want);
            }
            Op::TakeWhere { m, r, max } => {
                let m = u32::from(m % 4) + 1;
                let r = u32::from(r) % m;
                let mut left = usize::from(max % 8);
                let mut taken = Vec::new();
                let n = self.ring.take_where(
                    |e| {
                        if left > 0 && e.0 % m == r {
                            left -= 1;
                            true
                        } else {
                            false
                        }
                    },
                    |e| taken.push(e.0),
                );
                let mut left = usize::from(max % 8);
                let mut want = Vec::new();
                self.model.retain(|&v| {
                    if left > 0 && v % m == r {
                        left -= 1;
                        want.push(v);
                        false
                    } else {
                        true
                    }
                });
                assert_eq!(n, want.len());
                assert_eq!(taken, want, "taken oldest first");
            }
            Op::Purge => {
                assert_eq!(self.ring.purge(), self.model.len());
                self.model.clear();
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.ring.len(), self.model.len());
        assert_eq!(self.ring.is_empty(), self.model.is_empty());
        assert!(self.ring.len() <= self.cap);
        assert_eq!(self.ring.capacity(), self.cap);
        assert_eq!(self.ring.policy(), self.policy);
        assert_eq!(self.ring.stored(), self.stored);
        assert_eq!(self.ring.dropped(), self.dropped);
        assert!(self.ring.iter().map(|e| e.0).eq(self.model.iter().copied()));
        assert_eq!(
            LIVE.with(Cell::get),
            self.model.len() as i64,
            "leak or double drop"
        );
    }
}

fuzz_target!(|input: Input| {
    LIVE.with(|l| l.set(0));
    let policy = if input.drop_oldest {
        FullPolicy::DropOldest
    } else {
        FullPolicy::RejectNew
    };
    // `new` clamps a capacity of 0 to 1.
    let cap = usize::from(input.capacity % 24).max(1);
    let mut h = Harness {
        ring: DeadLetterRing::new(usize::from(input.capacity % 24), policy),
        model: VecDeque::new(),
        cap,
        policy,
        stored: 0,
        dropped: 0,
        next: 0,
    };
    h.check();
    for &op in input.ops.iter().take(2000) {
        h.apply(op);
        h.check();
    }
    drop(h.ring);
    assert_eq!(
        LIVE.with(Cell::get),
        0,
        "dropping the ring leaked or double-dropped"
    );
});
