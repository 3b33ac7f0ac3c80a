//! The ring between a stream's subscription (the producer, on its shard's thread) and the
//! stream's consumer handle: single producer, single consumer, bounded, and able to make
//! room by evicting the oldest entry (`DropOldest`, `Lag`) without ever overwriting the
//! entry the consumer is reading in place.
//!
//! Positions grow without bound; position `p` lives in slot `p % (capacity + 1)`.
//!
//! - `tail`: the next position to write. Only the producer stores it (`Release`, after the
//!   slot is written), so a consumer that reads `tail > p` with `Acquire` sees slot `p`.
//! - `head`: the next position to read, with the `HELD` bit while the consumer reads that
//!   slot in place. The consumer sets `HELD` with a CAS and clears it by storing the next
//!   position; the producer only ever CASes a head *without* `HELD` one step forward (an
//!   eviction). So an entry the consumer holds is never evicted, and its slot is never
//!   written again before the consumer lets go: the next write to slot `h % (cap + 1)` is
//!   position `h + cap + 1`, which the producer writes only when the queue is at most
//!   `cap` long, i.e. when head is past `h`.
//! - The one slot beyond `capacity` lets the producer store one more entry while the
//!   oldest is held (the held entry is as good as consumed). With that slot taken too and
//!   the oldest still held, nothing can be evicted: the new entry is refused
//!   ([`Pushed::RefusedNew`]) and the caller counts it.
//! - The consumer may also let go of a held entry *unconsumed* (`unhold`, to report a lag
//!   first). If the producer stored the extra entry meanwhile, the queue is then
//!   `capacity + 1` long with nothing held, and the next push must evict two entries to
//!   make room: [`Pushed::Evicted`] says how many, so that every step of `head` the
//!   producer takes is counted (the consumer reports `head` steps it did not take as
//!   lag, and the two must agree).
//!
//! Waking: the consumer raises `sleeping` before it blocks, and the producer checks it
//! after each write, so a spinning consumer costs the producer no syscall and no lock.
//! The two sides are a Dekker pair (store, fence, load on each side): `barrier::light` on
//! the producer's hot path, `barrier::heavy` on the consumer's way to sleep.
//!
//! Tests: a model proptest (one thread, holds let go of consumed or not, `head` checked
//! against the entries gone), a two-thread stress test that fails on a producer ignoring
//! `HELD` (checked by breaking it on purpose), a two-thread stress test and a loom model
//! that every step of `head` is a release or a reported eviction (both fail, as does the
//! model, on a producer reporting one eviction where it made two; checked by breaking it
//! on purpose), and a loom model of wake-ups (`loom_*`, `--cfg loom`). Caveat: a
//! deliberately broken producer also passed the loom model of held entries (loom ran a
//! single schedule of it), so the stress test is the one that holds that property today.

use core::cell::UnsafeCell;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crossbeam_utils::CachePadded;

use crate::barrier;
use crate::sync::{AtomicBool, AtomicU64};

/// The bit of `head` that says the consumer is reading that entry in place.
const HELD: u64 = 1 << 63;

/// What became of an entry offered to the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Stored; nothing gave way.
    Stored,
    /// Stored after evicting this many of the oldest entries (only when eviction was
    /// allowed): 1, or 2 right after the consumer let go of a held entry unconsumed while
    /// the extra slot beside it was taken (see the module docs).
    Evicted(u64),
    /// Not stored: the ring is full and eviction was not allowed (`Backpressure`).
    Full,
    /// Not stored: the ring is full, eviction was allowed, but the oldest entry is held
    /// by the consumer, so there was nothing to evict.
    RefusedNew,
}

/// A bounded SPSC ring of `T` with eviction (see the module docs).
pub(crate) struct StreamRing<T> {
    /// `capacity + 1` slots, every one initialised (with `filler` at first).
    slots: Box<[UnsafeCell<T>]>,
    capacity: u64,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    /// Set by a consumer about to block; cleared by whoever wakes it.
    sleeping: CachePadded<AtomicBool>,
    /// Set once the producer is gone (its subscription was removed or its shard stopped).
    closed: AtomicBool,
}

// SAFETY: the ring moves `T` values between two threads (so `T: Send`), and the slots are
// accessed under the protocol in the module docs: a slot is written only by the producer
// and only when no reader can be at it, and read only by the consumer after the `Acquire`
// of a `tail` past it. Only one producer and one consumer exist (`StreamRing` hands out no
// `&T` except to the holder of the consumer side, see `Stream`), so `&StreamRing` may be
// shared.
unsafe impl<T: Send> Sync for StreamRing<T> {}
// SAFETY: owning the ring owns its `T`s; sending them is sound when `T: Send`.
unsafe impl<T: Send> Send for StreamRing<T> {}

impl<T: Clone> StreamRing<T> {
    /// A ring for `capacity` entries (at least 1), its slots filled with `filler`. This
    /// allocates (`capacity + 1` slots); a refused allocation is `Err`, not an abort.
    pub(crate) fn try_new(
        capacity: usize,
        filler: &T,
    ) -> Result<Self, std::collections::TryReserveError> {
        let capacity = capacity.max(1);
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity + 1)?;
        slots.extend((0..=capacity).map(|_| UnsafeCell::new(filler.clone())));
        Ok(StreamRing {
            slots: slots.into_boxed_slice(),
            capacity: capacity as u64,
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            sleeping: CachePadded::new(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
        })
    }

    fn slot(&self, position: u64) -> &UnsafeCell<T> {
        &self.slots[(position % (self.capacity + 1)) as usize]
    }

    /// The capacity asked for.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Entries waiting now (an instant's view from either side).
    pub(crate) fn len(&self) -> u64 {
        let head = self.head.load(Acquire) & !HELD;
        self.tail.load(Acquire).saturating_sub(head)
    }

    /// Producer side: offers `value`; with `evict`, makes room by evicting the oldest
    /// entry. Must only be called by the one producer.
    pub(crate) fn push(&self, value: &T, evict: bool) -> Pushed {
        let tail = self.tail.load(Relaxed);
        // Each successful CAS below is one entry gone: count them all (there can be two).
        let mut evicted = 0u64;
        loop {
            let raw = self.head.load(Acquire);
            let head = raw & !HELD;
            let len = tail - head;
            // The held entry is as good as consumed: one more fits beside it.
            let room = if raw & HELD != 0 {
                self.capacity + 1
            } else {
                self.capacity
            };
            if len < room {
                break;
            }
            if !evict {
                return Pushed::Full;
            }
            if raw & HELD != 0 {
                return Pushed::RefusedNew;
            }
            // Evict the oldest: fails if the consumer took or released it meanwhile
            // (then look again). `Acquire` on success: the consumer's last read of the
            // slot we may overwrite happened before its release of it.
            if self
                .head
                .compare_exchange(raw, head + 1, AcqRel, Acquire)
                .is_ok()
            {
                evicted += 1;
            }
        }
        // SAFETY: only the producer writes slots, and slot `tail` is free: the queue is
        // shorter than `room` (checked above, and it only shrinks meanwhile), so no
        // unconsumed entry lives in it, and the consumer is not reading it in place (an
        // entry it holds is at `head`, and `tail - head < capacity + 1` keeps `tail` and
        // `head` in different slots). The consumer reads the slot only after our
        // `Release` store of `tail` below.
        unsafe { *self.slot(tail).get() = value.clone() };
        self.tail.store(tail + 1, Release);
        if evicted > 0 {
            Pushed::Evicted(evicted)
        } else {
            Pushed::Stored
        }
    }

    /// Producer side, after a push that stored: whether the consumer is asleep and must be
    /// woken (it is then no longer marked asleep). Costs a compiler fence and a load when
    /// the consumer is awake.
    pub(crate) fn take_sleeper(&self) -> bool {
        barrier::light();
        self.sleeping.load(Relaxed) && self.sleeping.swap(false, AcqRel)
    }

    /// Producer side: the producer is gone; nothing more will be pushed. Returns whether a
    /// sleeping consumer must be woken.
    pub(crate) fn close(&self) -> bool {
        self.closed.store(true, Release);
        self.take_sleeper()
    }

    /// Whether the producer is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Consumer side: takes the oldest entry for reading in place. Returns its position
    /// (pass it to `release`) and the entry; `None` when empty. While held, the entry is
    /// neither evicted nor overwritten. Must only be called by the one consumer, holding
    /// at most one entry.
    pub(crate) fn hold(&self) -> Option<(u64, &T)> {
        loop {
            let head = self.head.load(Acquire);
            debug_assert!(head & HELD == 0, "the consumer holds at most one entry");
            if self.tail.load(Acquire) == head {
                return None;
            }
            // Fails when the producer evicted `head` meanwhile: look again.
            if self
                .head
                .compare_exchange(head, head | HELD, Acquire, Relaxed)
                .is_ok()
            {
                // SAFETY: `tail > head` was read with `Acquire`, so the producer's write
                // of slot `head` is visible; with `HELD` set the producer neither evicts
                // nor (see `push`) writes this slot until `release`, so a shared
                // reference to it is valid until then. The caller ties the reference's
                // life to its hold (see `Stream::hold`).
                let value = unsafe { &*self.slot(head).get() };
                return Some((head, value));
            }
        }
    }

    /// Consumer side: lets go of the entry held at `position`; the slot may be reused.
    pub(crate) fn release(&self, position: u64) {
        // Only the consumer changes a held head, so a plain store is enough. `Release`:
        // our reads of the slot happen before the producer's next write to it.
        self.head.store(position + 1, Release);
    }

    /// Consumer side: lets go of the entry held at `position` without consuming it (it
    /// stays the oldest entry).
    pub(crate) fn unhold(&self, position: u64) {
        self.head.store(position, Release);
    }

    /// Consumer side: the position the next `hold` will read (to tell how many entries
    /// were evicted since the consumer last released one).
    pub(crate) fn head(&self) -> u64 {
        self.head.load(Acquire) & !HELD
    }

    /// Consumer side, before blocking: marks the consumer asleep, then looks once more.
    /// True: the ring is still empty and open, block (the producer will see the mark and
    /// wake us). False: something arrived or the ring closed, do not block (the mark is
    /// cleared).
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Relaxed);
        barrier::heavy();
        let empty = self.tail.load(Acquire) == self.head.load(Acquire) & !HELD;
        if empty && !self.is_closed() {
            return true;
        }
        self.sleeping.store(false, Relaxed);
        false
    }

    /// Consumer side, after waking (or timing out): no longer asleep.
    pub(crate) fn wake_up(&self) {
        self.sleeping.store(false, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[test]
    fn a_held_entry_is_never_evicted_and_one_more_fits_beside_it() {
        let ring = StreamRing::try_new(2, &0u64).unwrap();
        assert_eq!(ring.push(&1, true), Pushed::Stored);
        assert_eq!(ring.push(&2, true), Pushed::Stored);
        let (pos, v) = ring.hold().unwrap();
        assert_eq!((pos, *v), (0, 1));
        assert_eq!(
            ring.push(&3, true),
            Pushed::Stored,
            "the held one is as good as gone"
        );
        assert_eq!(ring.push(&4, true), Pushed::RefusedNew);
        assert_eq!(ring.push(&4, false), Pushed::Full);
        ring.release(pos);
        assert_eq!(ring.push(&4, true), Pushed::Evicted(1), "2 gives way");
        let got: Vec<u64> = core::iter::from_fn(|| {
            let (p, v) = ring.hold()?;
            let v = *v;
            ring.release(p);
            Some(v)
        })
        .collect();
        assert_eq!(got, [3, 4]);
        assert_eq!(ring.head(), 4);
    }

    /// Two real threads, the producer evicting as fast as it can while the consumer holds
    /// each entry for a while: a held entry never changes under the reader, and what
    /// comes out is strictly increasing (FIFO, with gaps for evictions and refusals).
    #[test]
    fn a_held_entry_survives_a_producer_evicting_at_full_speed() {
        use std::sync::atomic::AtomicU64 as StdU64;
        const HOLDS: u64 = 5_000;
        let ring = std::sync::Arc::new(StreamRing::try_new(2, &0u64).unwrap());
        let holds = std::sync::Arc::new(StdU64::new(0));
        let producer = {
            let (ring, holds) = (std::sync::Arc::clone(&ring), std::sync::Arc::clone(&holds));
            std::thread::spawn(move || {
                // Keeps pushing until the consumer has held enough entries.
                let (mut v, mut last_stored) = (0, 0);
                while holds.load(Relaxed) < HOLDS {
                    v += 1;
                    // The last push may be refused (`RefusedNew`, the oldest held): only
                    // a stored value can come out.
                    if matches!(ring.push(&v, true), Pushed::Stored | Pushed::Evicted(_)) {
                        last_stored = v;
                    }
                }
                let _ = ring.close();
                last_stored
            })
        };
        let mut last = 0u64;
        loop {
            let closed = ring.is_closed();
            let Some((pos, v)) = ring.hold() else {
                if closed {
                    break;
                }
                std::hint::spin_loop();
                continue;
            };
            // SAFETY: `v` is valid while held; volatile so each read really reads.
            let first = unsafe { core::ptr::read_volatile(v) };
            for _ in 0..200 {
                std::hint::spin_loop();
            }
            // SAFETY: as above.
            let again = unsafe { core::ptr::read_volatile(v) };
            assert_eq!(first, again, "held entry {pos} changed under the reader");
            assert!(first > last, "FIFO: {first} after {last}");
            last = first;
            holds.fetch_add(1, Relaxed);
            ring.release(pos);
        }
        let last_stored = producer.join().unwrap();
        assert_eq!(
            last, last_stored,
            "the last value stored is never evicted: nothing came after it"
        );
    }

    /// A held entry let go of unconsumed while the extra slot beside it was taken leaves
    /// `capacity + 1` entries and nothing held: the next push evicts two, and says so
    /// (it once said `Evicted` for both, and the stream counted one drop where the
    /// consumer, seeing `head` two steps on, reported two).
    #[test]
    fn a_push_after_an_unhold_over_capacity_evicts_two_and_counts_both() {
        let ring = StreamRing::try_new(2, &0u64).unwrap();
        assert_eq!(ring.push(&1, true), Pushed::Stored);
        assert_eq!(ring.push(&2, true), Pushed::Stored);
        let (pos, _) = ring.hold().unwrap();
        assert_eq!(ring.push(&3, true), Pushed::Stored, "beside the held one");
        ring.unhold(pos);
        assert_eq!(ring.len(), 3, "one over capacity, nothing held");
        assert_eq!(ring.push(&4, true), Pushed::Evicted(2));
        assert_eq!(
            ring.head(),
            2,
            "head moved exactly as many steps as reported"
        );
        let (pos, v) = ring.hold().unwrap();
        assert_eq!(*v, 3);
        ring.release(pos);
    }

    /// Two real threads: the producer evicts at full speed and adds up the evictions it
    /// reports; the consumer holds each entry a moment, then half the time releases it
    /// and half the time lets go of it unconsumed (as `try_next_ref` does to report a
    /// lag). At the end, every step `head` took is a release or a reported eviction.
    #[test]
    fn every_step_of_head_is_a_release_or_a_reported_eviction() {
        use std::sync::atomic::AtomicU64 as StdU64;
        const ROUNDS: u64 = 20_000;
        for capacity in [1, 2, 3] {
            let ring = std::sync::Arc::new(StreamRing::try_new(capacity, &0u64).unwrap());
            let rounds = std::sync::Arc::new(StdU64::new(0));
            let producer = {
                let (ring, rounds) = (std::sync::Arc::clone(&ring), std::sync::Arc::clone(&rounds));
                std::thread::spawn(move || {
                    // Pushes until the consumer has held enough entries, so the two
                    // overlap however the threads are scheduled.
                    let (mut stored, mut evicted, mut v) = (0u64, 0u64, 0u64);
                    while rounds.load(Relaxed) < ROUNDS {
                        v += 1;
                        match ring.push(&v, true) {
                            Pushed::Stored => stored += 1,
                            Pushed::Evicted(n) => {
                                stored += 1;
                                evicted += n;
                            }
                            Pushed::RefusedNew => {}
                            Pushed::Full => panic!("evicting pushes are never Full"),
                        }
                    }
                    let _ = ring.close();
                    (stored, evicted)
                })
            };
            let (mut released, mut round) = (0u64, 0u64);
            loop {
                let closed = ring.is_closed();
                let Some((pos, _)) = ring.hold() else {
                    if closed {
                        break;
                    }
                    continue;
                };
                round += 1;
                rounds.store(round, Relaxed);
                for _ in 0..(round % 7) * 10 {
                    std::hint::spin_loop();
                }
                if round % 2 == 0 {
                    ring.unhold(pos);
                    for _ in 0..(round % 5) * 10 {
                        std::hint::spin_loop();
                    }
                } else {
                    ring.release(pos);
                    released += 1;
                }
            }
            let (stored, evicted) = producer.join().unwrap();
            assert_eq!(ring.len(), 0);
            assert_eq!(
                ring.head(),
                released + evicted,
                "capacity {capacity}: head moved {} steps, {released} released, {evicted} evictions reported",
                ring.head()
            );
            assert_eq!(ring.head(), stored, "capacity {capacity}");
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(bool),
        Pop,
        Hold,
        Release,
        Unhold,
    }

    proptest! {
        /// Against a model (a `VecDeque` plus "is the front held"): same results, same
        /// contents, whatever the sequence of pushes (evicting or not), pops and holds.
        #[test]
        fn ring_matches_a_deque_model(
            cap in 1usize..5,
            ops in proptest::collection::vec(prop_oneof![
                any::<bool>().prop_map(Op::Push), Just(Op::Pop), Just(Op::Hold), Just(Op::Release),
                Just(Op::Unhold)
            ], 0..200),
        ) {
            let ring = StreamRing::try_new(cap, &0u64).unwrap();
            let mut model: VecDeque<u64> = VecDeque::new();
            let mut held: Option<u64> = None;
            let mut next = 1u64;
            // Entries gone from the front (consumed or evicted): where `head` must be.
            let mut gone = 0u64;
            for op in ops {
                match op {
                    Op::Push(evict) => {
                        let room = if held.is_some() { cap + 1 } else { cap };
                        let expect = if model.len() < room {
                            Pushed::Stored
                        } else if !evict {
                            Pushed::Full
                        } else if held.is_some() {
                            Pushed::RefusedNew
                        } else {
                            // Down to `cap - 1`, so the new one fits: two after an unhold
                            // left `cap + 1`.
                            Pushed::Evicted((model.len() + 1 - cap) as u64)
                        };
                        prop_assert_eq!(ring.push(&next, evict), expect);
                        if let Pushed::Evicted(n) = expect {
                            for _ in 0..n { model.pop_front(); }
                            gone += n;
                        }
                        if matches!(expect, Pushed::Stored | Pushed::Evicted(_)) { model.push_back(next); }
                        next += 1;
                    }
                    Op::Pop if held.is_none() => {
                        let got = ring.hold().map(|(p, v)| { let v = *v; ring.release(p); v });
                        prop_assert_eq!(got, model.pop_front());
                        gone += u64::from(got.is_some());
                    }
                    Op::Hold if held.is_none() => {
                        let got = ring.hold().map(|(p, v)| { held = Some(p); *v });
                        prop_assert_eq!(got, model.front().copied());
                    }
                    Op::Release => {
                        if let Some(p) = held.take() {
                            ring.release(p);
                            model.pop_front();
                            gone += 1;
                        }
                    }
                    Op::Unhold => {
                        // Let go of unconsumed: it stays the oldest.
                        if let Some(p) = held.take() {
                            ring.unhold(p);
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(ring.len(), model.len() as u64);
                prop_assert_eq!(ring.head(), gone);
            }
        }
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The producer evicts while the consumer holds and releases: every value the consumer
    /// reads in place is the one written for that position, and stays so until it lets go
    /// (a write into a held slot would change it between the two reads).
    #[test]
    fn loom_held_entries_are_never_overwritten() {
        loom::model(|| {
            let ring = Arc::new(StreamRing::try_new(1, &0u64).unwrap());
            let producer = {
                let ring = Arc::clone(&ring);
                loom::thread::spawn(move || {
                    for v in 1..=3u64 {
                        ring.push(&v, true);
                    }
                })
            };
            let mut last = 0;
            for _ in 0..2 {
                if let Some((pos, v)) = ring.hold() {
                    // Volatile: through a `&u64` the compiler may assume the value never
                    // changes and skip the second read.
                    // SAFETY: `v` is a valid reference for the whole block.
                    let first = unsafe { core::ptr::read_volatile(v) };
                    loom::thread::yield_now();
                    // SAFETY: as above.
                    let again = unsafe { core::ptr::read_volatile(v) };
                    assert_eq!(again, first, "a held slot was overwritten");
                    assert_eq!(first, pos + 1, "position {pos} holds its own value");
                    assert!(first > last, "FIFO");
                    last = first;
                    ring.release(pos);
                }
            }
            producer.join().unwrap();
        });
    }

    /// Every step `head` takes is a release by the consumer or an eviction the producer
    /// reports, including when the consumer lets go of a held entry unconsumed (as
    /// `try_next_ref` does to report a lag) after the producer stored one beside it: the
    /// next push then evicts two, and must say two. The `held` handshake (yields, not
    /// preemptions) brings the producer to the consumer's hold within loom's preemption
    /// bound; the pushes after it race the `unhold` freely.
    #[test]
    fn loom_every_step_of_head_is_a_release_or_a_reported_eviction() {
        loom::model(|| {
            let ring = Arc::new(StreamRing::try_new(1, &0u64).unwrap());
            let held = Arc::new(AtomicBool::new(false));
            let producer = {
                let (ring, held) = (Arc::clone(&ring), Arc::clone(&held));
                loom::thread::spawn(move || {
                    let mut evicted = 0;
                    let mut count = |pushed| {
                        if let Pushed::Evicted(n) = pushed {
                            evicted += n;
                        }
                    };
                    count(ring.push(&1, true));
                    while !held.load(Acquire) {
                        loom::thread::yield_now();
                    }
                    count(ring.push(&2, true));
                    loom::thread::yield_now();
                    count(ring.push(&3, true));
                    evicted
                })
            };
            let pos = loop {
                if let Some((pos, _)) = ring.hold() {
                    break pos;
                }
                loom::thread::yield_now();
            };
            held.store(true, Release);
            loom::thread::yield_now();
            ring.unhold(pos);
            let mut released = 0;
            if let Some((pos, _)) = ring.hold() {
                ring.release(pos);
                released += 1;
            }
            let evicted = producer.join().unwrap();
            while let Some((pos, _)) = ring.hold() {
                ring.release(pos);
                released += 1;
            }
            assert_eq!(ring.head(), released + evicted);
        });
    }

    /// No lost wake-up: if the consumer decides to block, the producer's next push sees
    /// it asleep and wakes it.
    #[test]
    fn loom_a_sleeping_consumer_is_always_woken() {
        loom::model(|| {
            let ring = Arc::new(StreamRing::try_new(2, &0u64).unwrap());
            let woken = Arc::new(AtomicBool::new(false));
            let producer = {
                let (ring, woken) = (Arc::clone(&ring), Arc::clone(&woken));
                loom::thread::spawn(move || {
                    ring.push(&7, false);
                    if ring.take_sleeper() {
                        woken.store(true, Release);
                    }
                })
            };
            if ring.prepare_sleep() {
                // Blocked: only the producer's wake gets us out.
                while !woken.load(Acquire) {
                    loom::thread::yield_now();
                }
                ring.wake_up();
            }
            producer.join().unwrap();
            let (pos, v) = ring
                .hold()
                .expect("the value is there once woken or not asleep");
            assert_eq!(*v, 7);
            ring.release(pos);
        });
    }
}
