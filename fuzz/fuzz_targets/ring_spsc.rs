//! The `rtrb` SPSC ring the bus uses for its lanes, driven single-threaded by an operation
//! sequence and checked after every operation against a `VecDeque`: FIFO, no loss, no
//! duplication, `Full` / `TooFewSlots` exactly when the model says, exact slot counts.
//!
//! Two rings run side by side: one of bus event slots (`Event<256>`, each tagged with a
//! sequence number in its correlation id, plus a drop-tracking token so a leaked or doubly
//! dropped slot is caught), one of plain 256-byte `Copy` slots for the slice APIs.
//! Interleavings between threads are loom's job, not this target's.
#![no_main]

use std::cell::Cell;
use std::collections::VecDeque;

use arbitrary::Arbitrary;
use dreamnet_bus::{Event, EventType, Priority};
use libfuzzer_sys::fuzz_target;
use rtrb::{Consumer, Producer, RingBuffer};

thread_local! {
    /// Live `Slot` values: +1 on creation, -1 on drop.
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

/// An event slot as a lane holds it, plus a drop tracker.
#[derive(Debug)]
struct Slot {
    event: Event<256>,
}

impl Slot {
    fn new(tag: u64) -> Self {
        LIVE.with(|l| l.set(l.get() + 1));
        let event = Event::new(EventType::AGENT_TASK)
            .with_priority(Priority::ALL[(tag % 4) as usize])
            .with_correlation_id(tag);
        Slot { event }
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

/// A 256-byte `Copy` slot for the slice APIs (`u64` payload in the first word).
type Raw = [u64; 32];

fn raw(tag: u64) -> Raw {
    let mut r = [0u64; 32];
    r[0] = tag;
    r[31] = !tag;
    r
}

fn raw_tag(r: &Raw) -> u64 {
    assert_eq!(r[31], !r[0], "torn Copy slot");
    assert!(r[1..31].iter().all(|w| *w == 0), "corrupted Copy slot");
    r[0]
}

#[derive(Arbitrary, Debug)]
enum Op {
    Push,
    Pop,
    Peek,
    /// `write_chunk_uninit(n)` filled from an iterator yielding `k` items (k may be < n).
    WriteChunk {
        n: u8,
        k: u8,
    },
    /// `read_chunk(n)`, check its contents, then commit `k` of them.
    ReadChunk {
        n: u8,
        k: u8,
    },
    /// `read_chunk(n).into_iter()`, take `k` items, drop the iterator.
    ReadIter {
        n: u8,
        k: u8,
    },
    /// Copy ring: push one.
    RawPush,
    /// Copy ring: pop one.
    RawPop,
    /// Copy ring: `push_entire_slice` of `n`.
    RawPushEntire {
        n: u8,
    },
    /// Copy ring: `push_partial_slice` of `n`.
    RawPushPartial {
        n: u8,
    },
    /// Copy ring: `pop_entire_slice` of `n`.
    RawPopEntire {
        n: u8,
    },
    /// Copy ring: `pop_partial_slice` of `n`.
    RawPopPartial {
        n: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    capacity: u8,
    raw_capacity: u8,
    ops: Vec<Op>,
    /// Drop the consumers at the end (checks `is_abandoned` and that the ring drops what
    /// it still holds exactly once).
    drop_consumer_first: bool,
}

struct Rings {
    p: Producer<Slot>,
    c: Consumer<Slot>,
    model: VecDeque<u64>,
    cap: usize,
    rp: Producer<Raw>,
    rc: Consumer<Raw>,
    rmodel: VecDeque<u64>,
    rcap: usize,
    next: u64,
}

impl Rings {
    fn check(&self) {
        let len = self.model.len();
        assert!(len <= self.cap);
        assert_eq!(self.p.slots(), self.cap - len);
        assert_eq!(self.c.slots(), len);
        assert!(self.p.cached_slots() <= self.cap - len);
        assert!(self.c.cached_slots() <= len);
        assert_eq!(self.p.is_full(), len == self.cap);
        assert_eq!(self.c.is_empty(), len == 0);
        assert_eq!(self.p.buffer().capacity(), self.cap);
        assert_eq!(self.c.buffer().capacity(), self.cap);
        assert!(!self.p.is_abandoned() && !self.c.is_abandoned());
        let rlen = self.rmodel.len();
        assert_eq!(self.rp.slots(), self.rcap - rlen);
        assert_eq!(self.rc.slots(), rlen);
        assert_eq!(self.rp.is_full(), rlen == self.rcap);
        assert_eq!(self.rc.is_empty(), rlen == 0);
        // Every Slot alive is either in the ring or nowhere: nothing leaked, nothing
        // dropped twice.
        assert_eq!(LIVE.with(Cell::get), len as i64);
    }

    fn tag(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Push => {
                let tag = self.tag();
                match self.p.push(Slot::new(tag)) {
                    Ok(()) => {
                        assert!(
                            self.model.len() < self.cap,
                            "push accepted into a full ring"
                        );
                        self.model.push_back(tag);
                    }
                    Err(rtrb::PushError::Full(back)) => {
                        assert_eq!(self.model.len(), self.cap, "Full on a ring with room");
                        assert_eq!(back.tag(), tag, "Full handed back another value");
                    }
                }
            }
            Op::Pop => match self.c.pop() {
                Ok(slot) => assert_eq!(Some(slot.tag()), self.model.pop_front()),
                Err(rtrb::PopError::Empty) => assert!(self.model.is_empty()),
            },
            Op::Peek => match self.c.peek() {
                Ok(slot) => assert_eq!(Some(slot.tag()), self.model.front().copied()),
                Err(rtrb::PeekError::Empty) => assert!(self.model.is_empty()),
            },
            Op::WriteChunk { n, k } => {
                let (n, k) = (usize::from(n % 80), usize::from(k % 80));
                let free = self.cap - self.model.len();
                let start = self.next;
                match self.p.write_chunk_uninit(n) {
                    Ok(chunk) => {
                        assert!(n <= free, "chunk of {n} granted with {free} free");
                        assert_eq!(chunk.len(), n);
                        assert_eq!(chunk.is_empty(), n == 0);
                        let items = (1..=k as u64).map(|i| Slot::new(start + i));
                        let written = chunk.fill_from_iter(items);
                        assert_eq!(written, n.min(k));
                        for i in 1..=written as u64 {
                            self.model.push_back(start + i);
                        }
                        self.next = start + written as u64;
                    }
                    Err(rtrb::chunks::ChunkError::TooFewSlots(s)) => {
                        assert!(n > free, "chunk of {n} refused with {free} free");
                        assert_eq!(s, free);
                    }
                }
            }
            Op::ReadChunk { n, k } => {
                let n = usize::from(n % 80);
                let len = self.model.len();
                match self.c.read_chunk(n) {
                    Ok(chunk) => {
                        assert!(n <= len);
                        assert_eq!(chunk.len(), n);
                        let (a, b) = chunk.as_slices();
                        assert_eq!(a.len() + b.len(), n);
                        for (slot, want) in a.iter().chain(b).zip(&self.model) {
                            assert_eq!(slot.tag(), *want);
                        }
                        let k = if n == 0 { 0 } else { usize::from(k) % (n + 1) };
                        chunk.commit(k);
                        self.model.drain(..k);
                    }
                    Err(rtrb::chunks::ChunkError::TooFewSlots(s)) => {
                        assert!(n > len);
                        assert_eq!(s, len);
                    }
                }
            }
            Op::ReadIter { n, k } => {
                let n = usize::from(n % 80);
                let len = self.model.len();
                match self.c.read_chunk(n) {
                    Ok(chunk) => {
                        assert!(n <= len);
                        let mut it = chunk.into_iter();
                        let mut taken = 0;
                        for _ in 0..usize::from(k) {
                            match it.next() {
                                Some(slot) => {
                                    assert_eq!(Some(slot.tag()), self.model.pop_front());
                                    taken += 1;
                                }
                                None => break,
                            }
                        }
                        assert_eq!(it.iterated(), taken);
                        assert_eq!(taken, n.min(usize::from(k)));
                    }
                    Err(rtrb::chunks::ChunkError::TooFewSlots(s)) => {
                        assert!(n > len);
                        assert_eq!(s, len);
                    }
                }
            }
            Op::RawPush => {
                let tag = self.tag();
                match self.rp.push(raw(tag)) {
                    Ok(()) => {
                        assert!(self.rmodel.len() < self.rcap);
                        self.rmodel.push_back(tag);
                    }
                    Err(rtrb::PushError::Full(back)) => {
                        assert_eq!(self.rmodel.len(), self.rcap);
                        assert_eq!(raw_tag(&back), tag);
                    }
                }
            }
            Op::RawPop => match self.rc.pop() {
                Ok(r) => assert_eq!(Some(raw_tag(&r)), self.rmodel.pop_front()),
                Err(_) => assert!(self.rmodel.is_empty()),
            },
            Op::RawPushEntire { n } => {
                let n = usize::from(n % 80);
                let start = self.next;
                let items: Vec<Raw> = (1..=n as u64).map(|i| raw(start + i)).collect();
                let free = self.rcap - self.rmodel.len();
                match self.rp.push_entire_slice(&items) {
                    Ok(()) => {
                        assert!(n <= free);
                        self.rmodel.extend((1..=n as u64).map(|i| start + i));
                        self.next = start + n as u64;
                    }
                    Err(rtrb::chunks::ChunkError::TooFewSlots(s)) => {
                        assert!(n > free);
                        assert_eq!(s, free);
                    }
                }
            }
            Op::RawPushPartial { n } => {
                let n = usize::from(n % 80);
                let start = self.next;
                let items: Vec<Raw> = (1..=n as u64).map(|i| raw(start + i)).collect();
                let free = self.rcap - self.rmodel.len();
                let (pushed, rest) = self.rp.push_partial_slice(&items);
                assert_eq!(pushed.len(), n.min(free));
                assert_eq!(pushed.len() + rest.len(), n);
                self.rmodel
                    .extend((1..=pushed.len() as u64).map(|i| start + i));
                self.next = start + pushed.len() as u64;
            }
            Op::RawPopEntire { n } => {
                let n = usize::from(n % 80);
                let len = self.rmodel.len();
                let mut out = vec![[0u64; 32]; n];
                match self.rc.pop_entire_slice(&mut out) {
                    Ok(()) => {
                        assert!(n <= len);
                        for r in &out {
                            assert_eq!(Some(raw_tag(r)), self.rmodel.pop_front());
                        }
                    }
                    Err(rtrb::chunks::ChunkError::TooFewSlots(s)) => {
                        assert!(n > len);
                        assert_eq!(s, len);
                    }
                }
            }
            Op::RawPopPartial { n } => {
                let n = usize::from(n % 80);
                let len = self.rmodel.len();
                let mut out = vec![[0u64; 32]; n];
                let (popped, rest) = self.rc.pop_partial_slice(&mut out);
                assert_eq!(popped.len(), n.min(len));
                assert_eq!(popped.len() + rest.len(), n);
                for r in popped.iter() {
                    assert_eq!(Some(raw_tag(r)), self.rmodel.pop_front());
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    LIVE.with(|l| l.set(0));
    let cap = usize::from(input.capacity % 70);
    let rcap = usize::from(input.raw_capacity % 70);
    let (p, c) = RingBuffer::new(cap);
    let (rp, rc) = RingBuffer::new(rcap);
    let mut rings = Rings {
        p,
        c,
        model: VecDeque::new(),
        cap,
        rp,
        rc,
        rmodel: VecDeque::new(),
        rcap,
        next: 0,
    };
    rings.check();
    for op in &input.ops {
        rings.apply(op);
        rings.check();
    }
    let Rings { p, c, rp, rc, .. } = rings;
    if input.drop_consumer_first {
        drop(c);
        drop(rc);
        assert!(p.is_abandoned() && rp.is_abandoned());
        drop(p);
        drop(rp);
    } else {
        drop(p);
        drop(rp);
        assert!(c.is_abandoned() && rc.is_abandoned());
        drop(c);
        drop(rc);
    }
    // The ring dropped what it still held, each exactly once.
    assert_eq!(LIVE.with(Cell::get), 0);
});
