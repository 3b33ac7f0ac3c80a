//! `crossbeam_queue::ArrayQueue` (the bounded MPMC queue the bus may use for redrive
//! queues), driven single-threaded by an operation sequence and checked after every
//! operation against a `VecDeque`: FIFO, no loss, no duplication, `push` refused exactly
//! when the model is full, `force_push` evicting exactly the oldest.
//!
//! Slots are bus events (`Event<256>`, tagged in the correlation id) with a drop tracker, so
//! a leaked or doubly dropped slot is caught, including when the queue itself is dropped.
#![no_main]

use std::cell::Cell;
use std::collections::VecDeque;

use arbitrary::Arbitrary;
use crossbeam_queue::ArrayQueue;
use dreamnet_bus::{Event, EventType};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

#[derive(Debug)]
struct Slot {
    event: Event<256>,
}

impl Slot {
    fn new(tag: u64) -> Self {
        LIVE.with(|l| l.set(l.get() + 1));
        Slot {
            event: Event::new(EventType::SYSTEM_EVENT).with_correlation_id(tag),
        }
    }
    fn tag(&self) -> u64 {
        self.event.header().correlation_id()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push,
    ForcePush,
    Pop,
    /// Push `n` in a row (a batch), stopping at the first refusal.
    PushBatch {
        n: u8,
    },
    /// Pop up to `n` in a row.
    PopBatch {
        n: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    LIVE.with(|l| l.set(0));
    // `ArrayQueue::new(0)` panics by contract.
    let cap = usize::from(input.capacity % 70) + 1;
    let q = ArrayQueue::<Slot>::new(cap);
    let mut model = VecDeque::<u64>::new();
    let mut next = 0u64;
    let mut tag = || {
        next += 1;
        next
    };
    let push = |q: &ArrayQueue<Slot>, model: &mut VecDeque<u64>, t: u64| -> bool {
        match q.push(Slot::new(t)) {
            Ok(()) => {
                assert!(model.len() < cap, "push accepted into a full queue");
                model.push_back(t);
                true
            }
            Err(back) => {
                assert_eq!(model.len(), cap, "push refused with room");
                assert_eq!(back.tag(), t, "push handed back another value");
                false
            }
        }
    };
    for op in &input.ops {
        match *op {
            Op::Push => {
                push(&q, &mut model, tag());
            }
            Op::ForcePush => {
                let t = tag();
                let evicted = q.force_push(Slot::new(t));
                if model.len() == cap {
                    let oldest = model.pop_front();
                    assert_eq!(evicted.map(|s| s.tag()), oldest, "evicted not the oldest");
                } else {
                    assert!(evicted.is_none(), "evicted with room");
                }
                model.push_back(t);
            }
            Op::Pop => assert_eq!(q.pop().map(|s| s.tag()), model.pop_front()),
            Op::PushBatch { n } => {
                for _ in 0..n % 80 {
                    if !push(&q, &mut model, tag()) {
                        break;
                    }
                }
            }
            Op::PopBatch { n } => {
                for _ in 0..n % 80 {
                    let got = q.pop().map(|s| s.tag());
                    assert_eq!(got, model.pop_front());
                    if got.is_none() {
                        break;
                    }
                }
            }
        }
        assert_eq!(q.len(), model.len());
        assert_eq!(q.is_empty(), model.is_empty());
        assert_eq!(q.is_full(), model.len() == cap);
        assert_eq!(q.capacity(), cap);
        assert_eq!(
            LIVE.with(Cell::get),
            model.len() as i64,
            "leak or double drop"
        );
    }
    drop(q);
    assert_eq!(
        LIVE.with(Cell::get),
        0,
        "dropping the queue leaked or double-dropped"
    );
});
