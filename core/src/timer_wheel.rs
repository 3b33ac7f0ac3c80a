//! A fixed-capacity hierarchical timer wheel, driven by the caller's clock.
//!
//! The design follows tokio's timer wheel (`tokio/src/runtime/time/wheel`):
//! [`LEVELS`] levels of [`SLOTS_PER_LEVEL`] slots each, where one slot of level
//! `L` spans `64^L` ticks. An entry lives in the slot of the level given by the
//! highest bit in which its deadline differs from the wheel's current tick;
//! when time reaches that slot, its entries are taken out and re-placed, each
//! landing in a lower level (or firing), until they reach level 0, whose slots
//! are one tick wide.
//!
//! Time is an abstract `u64` tick. The wheel has no thread and no clock: the
//! owner (a shard's poll loop) converts its clock to ticks and calls
//! [`TimerWheel::advance`], and sleeps until [`TimerWheel::next_wake`] or
//! [`TimerWheel::next_expiration`].
//!
//! # Allocation
//!
//! Only [`TimerWheel::new`] allocates: one arena of `capacity` nodes and one
//! table of list heads, both of a fixed size that never changes afterwards.
//! Entries are linked into intrusive doubly-linked lists by `u32` indices into
//! the arena, and free nodes form a free list, so [`TimerWheel::insert`],
//! [`TimerWheel::cancel`] and [`TimerWheel::advance`] never allocate (nothing
//! is ever pushed onto a `Vec`; no `Box`, no `String`). Dropping the wheel
//! drops the values still pending.
//!
//! # Contract
//!
//! * **Never early.** `fire` is only called for an entry whose deadline is
//!   `<=` the wheel's time after the call, [`TimerWheel::now`], which is the
//!   largest `now` ever passed to `advance` (or to `new`).
//! * **Never late.** An entry fires in the first [`TimerWheel::advance`] call
//!   whose `now` is `>=` its deadline: lateness is 0 ticks at wheel level.
//!   Entries in higher levels cascade down as their slot comes up, within the
//!   same call. ([`TimerWheel::advance_bounded`] may defer entries that are due
//!   to a later call when its budget runs out; that is its purpose.)
//! * **Exactly once.** Every entry fires exactly once, with its value moved
//!   out, unless it is cancelled first; a cancelled entry never fires.
//! * **Exact capacity.** `capacity` entries fit; inserting one more returns
//!   [`InsertError::Full`] with the value handed back.
//! * **Horizon.** A deadline more than `HORIZON_TICKS - 1` ticks after
//!   [`TimerWheel::now`] is *rejected* with [`InsertError::BeyondHorizon`]
//!   (not clamped: clamping would fire it early). A deadline at or before
//!   `now()` is accepted and fires on the next `advance` call.
//! * **Cheap jumps.** Each level keeps a 64-bit occupancy bitfield, so the next
//!   occupied slot is found with one rotate and one `trailing_zeros`; advancing
//!   by any amount costs `O(LEVELS)` plus the work for the slots actually
//!   occupied on the way, never a tick-by-tick scan.
//! * **Firing order.** Within one call, entries that were already due before
//!   the call (inserted with a deadline at or before `now()`, or left over by
//!   `advance_bounded`) fire first, in the order they became due; the rest fire
//!   in ascending deadline order, entries with equal deadlines in insertion
//!   order.
//! * **Panicking `fire`.** The entry is unlinked and its node freed before
//!   `fire` is called, so a panic in `fire` leaves the wheel consistent; the
//!   entries not yet fired stay pending.
//!
//! # Levels
//!
//! ```text
//! level | slot width (ticks)     | level range (ticks)     | range at 1 tick = 1 ms
//! ------+------------------------+-------------------------+-----------------------
//!   0   | 1             = 2^0    | 64             = 2^6    | 64 ms
//!   1   | 64            = 2^6    | 4 096          = 2^12   | ~4.1 s
//!   2   | 4 096         = 2^12   | 262 144        = 2^18   | ~4.4 min
//!   3   | 262 144       = 2^18   | 16 777 216     = 2^24   | ~4.7 h
//!   4   | 16 777 216    = 2^24   | 1 073 741 824  = 2^30   | ~12.4 days
//!   5   | 1 073 741 824 = 2^30   | 68 719 476 736 = 2^36   | ~795 days
//! ```
//!
//! # Keys
//!
//! A [`TimerKey`] is an arena index plus the node's generation, which is bumped
//! every time the node is freed, so a key whose entry fired or was cancelled
//! never touches the entry that reuses the node. (The generation is a `u32`: a
//! stale key could only alias after exactly 2^32 reuses of the same node.)

use std::fmt;

/// Slots per level. A power of two, so a slot index is a shift and a mask,
/// and 64 so that a level's occupancy fits in one `u64`.
pub const SLOTS_PER_LEVEL: usize = 64;

/// Number of levels. Six levels of 64 slots cover `64^6 = 2^36` ticks
/// (~795 days at 1 ms per tick).
pub const LEVELS: usize = 6;

/// The span of the wheel: a deadline must be less than this many ticks after
/// [`TimerWheel::now`]. Equal to `SLOTS_PER_LEVEL ^ LEVELS`.
pub const HORIZON_TICKS: u64 = 1 << 36;

/// The largest capacity [`TimerWheel::new`] honours (larger requests are
/// clamped to it): node indices are `u32` and `u32::MAX` marks "no node".
pub const MAX_CAPACITY: usize = u32::MAX as usize;

/// `log2(SLOTS_PER_LEVEL)`: the bits of a tick consumed per level.
const SLOT_BITS: usize = 6;

/// Mask of one level's digit of a tick, once shifted down.
const SLOT_MASK: u64 = SLOTS_PER_LEVEL as u64 - 1;

/// "No node": the end of a list.
const NIL: u32 = u32::MAX;

/// Index, among the lists, of the due list: entries whose deadline is at or
/// before the wheel's time and that have not fired yet. Lists `0..DUE` are
/// the slots, `level * SLOTS_PER_LEVEL + slot`.
const DUE: usize = LEVELS * SLOTS_PER_LEVEL;

/// Number of lists: every slot plus the due list.
const LISTS: usize = DUE + 1;

/// `Node::list` of a node on the free list.
const FREE: u16 = u16::MAX;

// The arithmetic below depends on these relations.
const _: () = assert!(SLOTS_PER_LEVEL.is_power_of_two());
const _: () = assert!(1 << SLOT_BITS == SLOTS_PER_LEVEL);
const _: () = assert!(SLOTS_PER_LEVEL == u64::BITS as usize);
const _: () = assert!(HORIZON_TICKS == 1 << (SLOT_BITS * LEVELS));
const _: () = assert!(LISTS < FREE as usize);

/// Identifies one pending entry of a [`TimerWheel`]: an arena index plus the
/// generation of that node when the entry was inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    /// Index of the entry's node in the arena.
    index: u32,
    /// The node's generation at insertion; the key is stale once they differ.
    generation: u32,
}

/// Why [`TimerWheel::insert`] refused an entry. The value is handed back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertError<T> {
    /// The wheel already holds `capacity` pending entries.
    Full(T),
    /// The deadline is `HORIZON_TICKS` or more ticks after `now()`.
    BeyondHorizon(T),
}

impl<T> InsertError<T> {
    /// Returns the value that was not inserted.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(value) | Self::BeyondHorizon(value) => value,
        }
    }
}

impl<T> fmt::Display for InsertError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("timer wheel is full"),
            Self::BeyondHorizon(_) => f.write_str("timer deadline is beyond the wheel's horizon"),
        }
    }
}

impl<T: fmt::Debug> std::error::Error for InsertError<T> {}

/// One arena node: a pending entry, or a free node.
struct Node<T> {
    /// `Some` exactly while the node holds a pending entry (it is in a slot
    /// list or the due list); `None` while it is on the free list.
    value: Option<T>,
    /// The pending entry's deadline; stale while the node is free.
    deadline: u64,
    /// Previous node of the same list, `NIL` at the head. Unused when free.
    prev: u32,
    /// Next node of the same list (or of the free list), `NIL` at the tail.
    next: u32,
    /// Bumped (wrapping) each time the node is freed.
    generation: u32,
    /// The list holding the node: a slot `0..DUE`, `DUE`, or `FREE`.
    list: u16,
}

/// Head and tail of one intrusive list. Both are `NIL` or both are not.
#[derive(Clone, Copy)]
struct List {
    /// First node, `NIL` when empty.
    head: u32,
    /// Last node, `NIL` when empty.
    tail: u32,
}

/// A list with no nodes.
const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

/// A hierarchical timer wheel holding up to `capacity` entries of type `T`.
/// See the [module documentation](self) for the contract.
pub struct TimerWheel<T> {
    /// The arena; its length is the capacity and never changes.
    nodes: Vec<Node<T>>,
    /// Every slot list, then the due list; length `LISTS`, never changes.
    /// Every entry in a slot has a deadline `> elapsed`; every entry in the
    /// due list has a deadline `<= elapsed`. An entry in slot `s` of level
    /// `L` has its deadline in `[start, start + 64^L)`, where `start` is the
    /// first tick after `elapsed` that is a multiple of `64^L` whose level-`L`
    /// digit is `s` (see [`TimerWheel::slot_start`]).
    lists: Vec<List>,
    /// Bit `s` of `occupied[L]` is set iff slot `s` of level `L` is non-empty.
    occupied: [u64; LEVELS],
    /// Head of the free list (linked through `Node::next`), `NIL` when full.
    free_head: u32,
    /// Number of pending entries (in slots or the due list).
    len: usize,
    /// The wheel's time: never decreases.
    elapsed: u64,
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now", &self.elapsed)
            .field("len", &self.len)
            .field("capacity", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// The level an entry due at `deadline` goes to when the wheel is at
/// `elapsed` (`deadline > elapsed`).
///
/// The highest bit in which the two differ says how far apart they are in
/// wheel terms: differing only in bits `0..6` means the same level-1 slot, so
/// level 0; the highest differing bit in `6L..6L+6` means level `L`. OR-ing
/// in `SLOT_MASK` makes the highest set bit at least 5, so level 0 needs no
/// special case. Deadlines differing at bit 36 or above (possible when the
/// deadline is within the horizon but across a `2^36` boundary) go to the top
/// level, whose slots are treated cyclically, as in tokio.
fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | SLOT_MASK;
    let highest_bit = (u64::BITS - 1 - masked.leading_zeros()) as usize;
    (highest_bit / SLOT_BITS).min(LEVELS - 1)
}

/// The slot of `level` for `deadline`: its level-`level` digit, bits
/// `6L..6L+6`.
fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (level * SLOT_BITS)) & SLOT_MASK) as usize
}

impl<T> TimerWheel<T> {
    /// Creates a wheel with room for `capacity` pending entries (clamped to
    /// [`MAX_CAPACITY`]), whose time starts at tick `now`.
    ///
    /// This is the only allocation the wheel ever makes. Like `Vec`, it aborts the
    /// process if the allocator fails; [`TimerWheel::try_new`] reports that instead.
    pub fn new(capacity: usize, now: u64) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        Self::fill(Vec::with_capacity(capacity), capacity, now)
    }

    /// Like [`TimerWheel::new`], but a failed allocation of the arena is an error
    /// instead of an abort.
    pub fn try_new(capacity: usize, now: u64) -> Result<Self, std::collections::TryReserveError> {
        let capacity = capacity.min(MAX_CAPACITY);
        let mut nodes = Vec::new();
        nodes.try_reserve_exact(capacity)?;
        Ok(Self::fill(nodes, capacity, now))
    }

    /// Builds the wheel in `nodes`, which has room for `capacity` nodes already.
    fn fill(mut nodes: Vec<Node<T>>, capacity: usize, now: u64) -> Self {
        nodes.extend((0..capacity).map(|i| Node {
            value: None,
            deadline: 0,
            prev: NIL,
            // Each free node points at the next; the last one at NIL.
            // `i + 1 < capacity <= MAX_CAPACITY` fits in a u32.
            next: if i + 1 < capacity {
                u32::try_from(i + 1).unwrap_or(NIL)
            } else {
                NIL
            },
            generation: 0,
            list: FREE,
        }));
        Self {
            nodes,
            lists: vec![EMPTY_LIST; LISTS],
            occupied: [0; LEVELS],
            free_head: if capacity == 0 { NIL } else { 0 },
            len: 0,
            elapsed: now,
        }
    }

    /// The bytes [`TimerWheel::new`] allocates for `capacity` entries (the arena and the
    /// table of list heads), saturating at `usize::MAX`. The bus's memory budget uses it
    /// to refuse a configuration before anything is allocated.
    pub fn bytes_for(capacity: usize) -> usize {
        capacity
            .min(MAX_CAPACITY)
            .saturating_mul(core::mem::size_of::<Node<T>>())
            .saturating_add(LISTS * core::mem::size_of::<List>())
    }

    /// The maximum number of pending entries.
    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    /// The number of pending entries (not yet fired nor cancelled).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `capacity` entries are pending, so the next insert is `Full`.
    pub fn is_full(&self) -> bool {
        self.free_head == NIL
    }

    /// The tick the wheel has been advanced to: the largest `now` passed to
    /// `new` or `advance`, except that [`advance_bounded`](Self::advance_bounded)
    /// stops short when its budget runs out before the due slots are
    /// processed.
    pub fn now(&self) -> u64 {
        self.elapsed
    }

    /// Schedules `value` to fire at tick `deadline`.
    ///
    /// A deadline at or before [`now()`](Self::now) is accepted and fires on
    /// the next `advance` call. A deadline more than `HORIZON_TICKS - 1` ticks
    /// after `now()` is rejected with [`InsertError::BeyondHorizon`] rather
    /// than clamped; a caller wanting a longer timer can insert a
    /// re-arming entry at the horizon. When `capacity` entries are pending the
    /// value comes back in [`InsertError::Full`]. O(1), no allocation.
    pub fn insert(&mut self, deadline: u64, value: T) -> Result<TimerKey, InsertError<T>> {
        if deadline > self.elapsed && deadline - self.elapsed >= HORIZON_TICKS {
            return Err(InsertError::BeyondHorizon(value));
        }
        let index = self.free_head;
        let Some(node) = self.nodes.get_mut(index as usize) else {
            return Err(InsertError::Full(value));
        };
        self.free_head = node.next;
        node.value = Some(value);
        node.deadline = deadline;
        let key = TimerKey {
            index,
            generation: node.generation,
        };
        self.place(index);
        self.len += 1;
        Ok(key)
    }

    /// Removes a pending entry and returns its value; `None` if it already
    /// fired, was cancelled, or the key is stale. O(1), no allocation.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let index = self.live(key)?;
        self.unlink(index);
        self.release(index).map(|(_, _, value)| value)
    }

    /// The deadline of a pending entry; `None` if it is not pending.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.live(key)
            .map(|index| self.nodes[index as usize].deadline)
    }

    /// The exact earliest deadline among the pending entries, `None` if there
    /// are none. It is at or before `now()` when an entry is already due.
    ///
    /// Exact, at the cost of reading every entry of one list: the due list if
    /// it is non-empty, otherwise the first occupied slot of the lowest
    /// occupied level (all other entries lie in later slots). A poll loop that
    /// wants `O(LEVELS)` can use [`next_wake`](Self::next_wake) instead.
    pub fn next_expiration(&self) -> Option<u64> {
        let list = if self.lists[DUE].head != NIL {
            DUE
        } else {
            let (level, slot, _) = self.next_slot()?;
            level * SLOTS_PER_LEVEL + slot
        };
        let mut earliest = None::<u64>;
        let mut index = self.lists[list].head;
        while let Some(node) = self.nodes.get(index as usize) {
            earliest = Some(earliest.map_or(node.deadline, |e| e.min(node.deadline)));
            index = node.next;
        }
        earliest
    }

    /// The earliest tick at which [`advance`](Self::advance) has work to do,
    /// in `O(LEVELS)`: `now()` if an entry is already due, else the start of
    /// the next occupied slot, which is at or before the next deadline (equal
    /// to it when that slot is in level 0). Advancing to this tick may only
    /// cascade entries down without firing any; sleeping until it and
    /// advancing in a loop never makes an entry late.
    pub fn next_wake(&self) -> Option<u64> {
        if self.lists[DUE].head != NIL {
            return Some(self.elapsed);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Moves time to `now` and calls `fire(key, deadline, value)` once for
    /// every entry whose deadline is `<= now`, each value moved out. Returns
    /// how many fired.
    ///
    /// Time never goes backwards: a `now` before [`now()`](Self::now) is
    /// treated as `now()` (it moves nothing, but entries already due still
    /// fire). No allocation.
    pub fn advance(&mut self, now: u64, fire: impl FnMut(TimerKey, u64, T)) -> usize {
        self.advance_bounded(now, usize::MAX, fire)
    }

    /// Like [`advance`](Self::advance), but fires at most `max` entries; the
    /// rest stay due and fire on the next call (before anything else). For
    /// bounding the work of one iteration of a latency-sensitive poll loop.
    ///
    /// When the budget runs out before every slot up to `now` has been
    /// processed, the wheel's time stops at the last slot processed, so
    /// [`now()`](Self::now) may be less than `now` afterwards; the next call
    /// carries on. Returns how many fired.
    pub fn advance_bounded(
        &mut self,
        now: u64,
        max: usize,
        mut fire: impl FnMut(TimerKey, u64, T),
    ) -> usize {
        let target = now.max(self.elapsed);
        let mut fired = 0;
        loop {
            while fired < max {
                let index = self.lists[DUE].head;
                if index == NIL {
                    break;
                }
                self.unlink(index);
                if let Some((key, deadline, value)) = self.release(index) {
                    fire(key, deadline, value);
                    fired += 1;
                }
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= target => {
                    if fired == max {
                        // Out of budget with a slot still to process: stop
                        // here, time stays before that slot.
                        return fired;
                    }
                    // `start > elapsed` (every slot starts after `elapsed`),
                    // so time only moves forward.
                    self.elapsed = start;
                    self.cascade(level, slot);
                }
                _ => {
                    // Every slotted entry is due after `target`, so moving
                    // time there keeps each slot's start unchanged.
                    self.elapsed = target;
                    return fired;
                }
            }
        }
    }

    /// The arena index of `key`'s entry if it is still pending.
    fn live(&self, key: TimerKey) -> Option<u32> {
        let node = self.nodes.get(key.index as usize)?;
        (node.generation == key.generation && node.list != FREE).then_some(key.index)
    }

    /// Links an unlinked node holding an entry into the list its deadline
    /// calls for, relative to `elapsed`: the due list if the deadline is not
    /// after `elapsed`, else the slot of its level.
    fn place(&mut self, index: u32) {
        let deadline = self.nodes[index as usize].deadline;
        let list = if deadline <= self.elapsed {
            DUE
        } else {
            let level = level_for(self.elapsed, deadline);
            level * SLOTS_PER_LEVEL + slot_for(deadline, level)
        };
        self.push_back(list, index);
    }

    /// Appends an unlinked node to `list`, setting the slot's occupied bit.
    fn push_back(&mut self, list: usize, index: u32) {
        let tail = self.lists[list].tail;
        {
            let node = &mut self.nodes[index as usize];
            node.prev = tail;
            node.next = NIL;
            // `list < LISTS < FREE`, checked at compile time.
            node.list = list as u16;
        }
        match self.nodes.get_mut(tail as usize) {
            Some(tail_node) => tail_node.next = index,
            None => self.lists[list].head = index,
        }
        self.lists[list].tail = index;
        if list < DUE {
            self.occupied[list / SLOTS_PER_LEVEL] |= 1 << (list % SLOTS_PER_LEVEL);
        }
    }

    /// Unlinks a node from the list holding it, clearing the slot's occupied
    /// bit if the list becomes empty.
    fn unlink(&mut self, index: u32) {
        let (prev, next, list) = {
            let node = &self.nodes[index as usize];
            (node.prev, node.next, node.list as usize)
        };
        match self.nodes.get_mut(prev as usize) {
            Some(prev_node) => prev_node.next = next,
            None => self.lists[list].head = next,
        }
        match self.nodes.get_mut(next as usize) {
            Some(next_node) => next_node.prev = prev,
            None => self.lists[list].tail = prev,
        }
        if list < DUE && self.lists[list].head == NIL {
            self.occupied[list / SLOTS_PER_LEVEL] &= !(1 << (list % SLOTS_PER_LEVEL));
        }
    }

    /// Frees an unlinked node: takes its value, bumps its generation, pushes
    /// it on the free list. Returns the entry's key, deadline and value
    /// (always `Some` for a node that was linked: see `Node::value`).
    fn release(&mut self, index: u32) -> Option<(TimerKey, u64, T)> {
        let free_head = self.free_head;
        let node = &mut self.nodes[index as usize];
        let key = TimerKey {
            index,
            generation: node.generation,
        };
        let value = node.value.take();
        node.generation = node.generation.wrapping_add(1);
        node.list = FREE;
        node.prev = NIL;
        node.next = free_head;
        let deadline = node.deadline;
        self.free_head = index;
        self.len -= 1;
        value.map(|value| (key, deadline, value))
    }

    /// The first occupied slot of the lowest occupied level, as
    /// `(level, slot, start)`. Slots of level `L` all start before any slot
    /// of level `L + 1` (they lie within `elapsed`'s current level-`L + 1`
    /// slot), so this is the earliest slot of the wheel.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS).find_map(|level| {
            let (slot, start) = self.slot_after(level)?;
            Some((level, slot, start))
        })
    }

    /// The first occupied slot of `level` after `elapsed`'s own slot, going
    /// round, and the tick it starts at.
    ///
    /// `current` is `elapsed`'s digit at this level. Rotating the occupancy
    /// right by `current + 1` moves the bit of the slot `d` slots ahead of
    /// `current` to bit `d - 1`, so `trailing_zeros + 1` is the distance `d`
    /// (1..=64) to the next occupied slot; 64 means `current`'s own slot one
    /// full turn later (only the top level wraps like that).
    fn slot_after(&self, level: usize) -> Option<(usize, u64)> {
        let occupied = self.occupied[level];
        if occupied == 0 {
            return None;
        }
        let shift = level * SLOT_BITS;
        let current = (self.elapsed >> shift) & SLOT_MASK;
        let distance = u64::from(
            occupied
                .rotate_right((current as u32 + 1) % 64)
                .trailing_zeros(),
        ) + 1;
        let slot = ((current + distance) & SLOT_MASK) as usize;
        Some((slot, Self::slot_start(self.elapsed, level, distance)))
    }

    /// The first tick of the slot `distance` slots (1..=64) after
    /// `elapsed`'s slot at `level`: `elapsed` rounded down to a multiple of
    /// `64^level`, plus `distance * 64^level`. An occupied slot starts at or
    /// before its entries' deadlines, so this cannot exceed `u64::MAX`; it
    /// saturates rather than overflow regardless.
    fn slot_start(elapsed: u64, level: usize, distance: u64) -> u64 {
        let shift = level * SLOT_BITS;
        ((elapsed >> shift) << shift).saturating_add(distance << shift)
    }

    /// Empties slot `slot` of `level` (whose start is now `elapsed`) and
    /// re-places each entry relative to the new `elapsed`: a deadline equal
    /// to it goes to the due list, any other lands in a strictly lower level
    /// (it now shares every digit from `level` up with `elapsed`). The list is
    /// detached first and walked once, so the loop ends.
    fn cascade(&mut self, level: usize, slot: usize) {
        let list = level * SLOTS_PER_LEVEL + slot;
        let mut index = self.lists[list].head;
        self.lists[list] = EMPTY_LIST;
        self.occupied[level] &= !(1 << slot);
        while index != NIL {
            let next = self.nodes[index as usize].next;
            self.place(index);
            index = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    /// Advances and collects `(key, deadline, value)` of everything fired.
    fn advance_collect<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<(TimerKey, u64, T)> {
        let mut fired = Vec::new();
        let n = wheel.advance(now, |k, d, v| fired.push((k, d, v)));
        assert_eq!(n, fired.len());
        fired
    }

    fn deadlines<T>(fired: &[(TimerKey, u64, T)]) -> Vec<u64> {
        fired.iter().map(|f| f.1).collect()
    }

    /// The deltas around every level boundary, up to the horizon.
    fn boundary_deltas() -> Vec<u64> {
        let mut deltas = vec![1];
        for level in 1..=LEVELS {
            let edge = 1u64 << (level * SLOT_BITS);
            deltas.extend([edge - 1, edge, edge + 1]);
        }
        deltas.retain(|&d| d < HORIZON_TICKS);
        deltas
    }

    #[test]
    fn starting_at_tick_zero_an_entry_due_at_zero_fires_on_advance_to_zero() {
        let mut wheel = TimerWheel::new(4, 0);
        let key = wheel.insert(0, "a").unwrap();
        assert_eq!(wheel.next_expiration(), Some(0));
        let fired = advance_collect(&mut wheel, 0);
        assert_eq!(fired, vec![(key, 0, "a")]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn deadline_equal_to_now_fires_on_the_next_advance_even_without_moving() {
        let mut wheel = TimerWheel::new(4, 1000);
        wheel.insert(1000, 1).unwrap();
        assert_eq!(deadlines(&advance_collect(&mut wheel, 1000)), vec![1000]);
    }

    #[test]
    fn deadline_in_the_past_fires_on_the_next_advance_with_its_own_deadline() {
        let mut wheel = TimerWheel::new(4, 1000);
        let key = wheel.insert(3, 'x').unwrap();
        assert_eq!(wheel.deadline(key), Some(3));
        assert_eq!(wheel.next_expiration(), Some(3));
        assert_eq!(wheel.next_wake(), Some(1000));
        assert_eq!(advance_collect(&mut wheel, 1001), vec![(key, 3, 'x')]);
    }

    #[test]
    fn advancing_backwards_moves_nothing_and_fires_nothing_not_due() {
        let mut wheel = TimerWheel::new(4, 500);
        wheel.insert(501, ()).unwrap();
        assert_eq!(wheel.advance(10, |_, _, _| {}), 0);
        assert_eq!(wheel.now(), 500);
        assert_eq!(wheel.advance(501, |_, _, _| {}), 1);
    }

    #[test]
    fn every_level_boundary_fires_exactly_at_its_deadline_never_a_tick_early() {
        let starts = [
            0,
            1,
            63,
            64,
            4095,
            12_345_678,
            HORIZON_TICKS - 1,
            HORIZON_TICKS,
            3 << 40,
        ];
        for &start in &starts {
            for &delta in &boundary_deltas() {
                let deadline = start + delta;
                let mut wheel = TimerWheel::new(1, start);
                let key = wheel.insert(deadline, delta).unwrap();
                assert_eq!(wheel.next_expiration(), Some(deadline));
                let wake = wheel.next_wake().unwrap();
                assert!(
                    wake > start && wake <= deadline,
                    "start {start} delta {delta}"
                );
                assert!(advance_collect(&mut wheel, deadline - 1).is_empty());
                assert_eq!(wheel.deadline(key), Some(deadline));
                assert_eq!(wheel.next_expiration(), Some(deadline));
                assert_eq!(
                    advance_collect(&mut wheel, deadline),
                    vec![(key, deadline, delta)]
                );
            }
        }
    }

    #[test]
    fn every_level_boundary_fires_on_time_when_advanced_by_next_wake_hops() {
        for &start in &[0, 77, HORIZON_TICKS - 5] {
            for &delta in &boundary_deltas() {
                let deadline = start + delta;
                let mut wheel = TimerWheel::new(1, start);
                wheel.insert(deadline, ()).unwrap();
                let mut hops = 0;
                let mut fired_at = None;
                while let Some(wake) = wheel.next_wake() {
                    hops += 1;
                    assert!(wake <= deadline);
                    if wheel.advance(wake, |_, d, ()| assert_eq!(d, deadline)) == 1 {
                        fired_at = Some(wake);
                    }
                }
                assert_eq!(fired_at, Some(deadline));
                assert!(hops <= LEVELS + 1, "{hops} hops for delta {delta}");
            }
        }
    }

    #[test]
    fn horizon_minus_one_is_accepted_and_horizon_exactly_is_rejected() {
        for &start in &[0, 5, HORIZON_TICKS - 1, (1 << 50) + 12_345] {
            let mut wheel = TimerWheel::new(2, start);
            let last = start + HORIZON_TICKS - 1;
            let key = wheel.insert(last, 1).unwrap();
            assert_eq!(
                wheel.insert(start + HORIZON_TICKS, 2),
                Err(InsertError::BeyondHorizon(2))
            );
            assert_eq!(wheel.len(), 1);
            assert!(advance_collect(&mut wheel, last - 1).is_empty());
            assert_eq!(advance_collect(&mut wheel, last), vec![(key, last, 1)]);
        }
    }

    #[test]
    fn ticks_near_u64_max_neither_overflow_nor_panic() {
        let start = u64::MAX - 100;
        let mut wheel = TimerWheel::new(4, start);
        wheel.insert(u64::MAX, 1).unwrap();
        wheel.insert(u64::MAX - 64, 2).unwrap();
        wheel.insert(0, 3).unwrap();
        assert_eq!(
            deadlines(&advance_collect(&mut wheel, u64::MAX - 65)),
            vec![0]
        );
        assert_eq!(
            deadlines(&advance_collect(&mut wheel, u64::MAX)),
            vec![u64::MAX - 64, u64::MAX]
        );
        assert_eq!(wheel.now(), u64::MAX);
        wheel.insert(u64::MAX, 4).unwrap();
        assert_eq!(advance_collect(&mut wheel, u64::MAX).len(), 1);
    }

    #[test]
    fn cancel_before_the_cascade_removes_the_entry() {
        let mut wheel = TimerWheel::new(4, 0);
        let key = wheel.insert(10_000, 'a').unwrap();
        assert_eq!(wheel.cancel(key), Some('a'));
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_expiration(), None);
        assert_eq!(wheel.next_wake(), None);
        assert!(advance_collect(&mut wheel, 20_000).is_empty());
    }

    #[test]
    fn cancel_after_a_cascade_removes_the_entry_from_its_lower_slot() {
        let mut wheel = TimerWheel::new(4, 0);
        let key = wheel.insert(10_000, 'a').unwrap();
        let other = wheel.insert(10_001, 'b').unwrap();
        // 8192 is the start of 10_000's level-2 slot: the entry moves down.
        assert!(advance_collect(&mut wheel, 9_999).is_empty());
        assert_eq!(wheel.deadline(key), Some(10_000));
        assert_eq!(wheel.cancel(key), Some('a'));
        assert_eq!(wheel.cancel(key), None);
        assert_eq!(wheel.next_expiration(), Some(10_001));
        assert_eq!(
            advance_collect(&mut wheel, 20_000),
            vec![(other, 10_001, 'b')]
        );
        assert_eq!(wheel.occupied, [0; LEVELS]);
    }

    #[test]
    fn a_stale_key_never_cancels_the_entry_that_reuses_its_node() {
        let mut wheel = TimerWheel::new(1, 0);
        let old = wheel.insert(5, 1).unwrap();
        assert_eq!(advance_collect(&mut wheel, 5).len(), 1);
        let new = wheel.insert(9, 2).unwrap();
        assert_ne!(old, new);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.deadline(old), None);
        assert_eq!(wheel.deadline(new), Some(9));
        assert_eq!(wheel.cancel(new), Some(2));
        let newer = wheel.insert(9, 3).unwrap();
        assert_eq!(wheel.cancel(new), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(newer), Some(3));
    }

    #[test]
    fn a_key_from_another_wheel_out_of_range_is_just_not_pending() {
        let mut big = TimerWheel::new(10, 0);
        let mut keys = Vec::new();
        for i in 0..10 {
            keys.push(big.insert(i, i).unwrap());
        }
        let mut small = TimerWheel::<u64>::new(2, 0);
        assert_eq!(small.cancel(keys[9]), None);
        assert_eq!(small.deadline(keys[9]), None);
    }

    #[test]
    fn capacity_is_exact_and_full_hands_the_value_back() {
        let mut wheel = TimerWheel::new(3, 0);
        let keys: Vec<_> = (0..3).map(|i| wheel.insert(100 + i, i).unwrap()).collect();
        assert!(wheel.is_full());
        let err = wheel.insert(7, 99).unwrap_err();
        assert_eq!(err, InsertError::Full(99));
        assert_eq!(err.to_string(), "timer wheel is full");
        assert_eq!(err.into_inner(), 99);
        assert_eq!(wheel.cancel(keys[1]), Some(1));
        assert!(!wheel.is_full());
        wheel.insert(50, 3).unwrap();
        assert!(wheel.is_full());
        assert_eq!(
            deadlines(&advance_collect(&mut wheel, 1000)),
            vec![50, 100, 102]
        );
        assert!(wheel.is_empty());
        assert_eq!(wheel.capacity(), 3);
    }

    #[test]
    fn a_zero_capacity_wheel_is_always_full() {
        let mut wheel = TimerWheel::new(0, 0);
        assert!(wheel.is_full() && wheel.is_empty());
        assert_eq!(wheel.insert(1, ()), Err(InsertError::Full(())));
        assert_eq!(wheel.advance(u64::MAX, |_, _, _| {}), 0);
    }

    #[test]
    fn every_entry_fires_exactly_once_in_ascending_deadline_order() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut wheel = TimerWheel::new(2000, 0);
        let mut expected = Vec::new();
        for i in 0..2000u64 {
            let deadline = match i % 4 {
                0 => rng.u64(0..100),
                1 => rng.u64(0..10_000),
                2 => rng.u64(0..1 << 24),
                _ => rng.u64(0..HORIZON_TICKS),
            };
            wheel.insert(deadline, i).unwrap();
            expected.push((deadline, i));
        }
        expected.sort();
        let mut seen = HashSet::new();
        let mut fired = Vec::new();
        let mut now = 0;
        while now < HORIZON_TICKS {
            now = now.saturating_add(rng.u64(0..1 << 30)).min(HORIZON_TICKS);
            wheel.advance(now, |_, d, v| {
                assert!(d <= now);
                assert!(seen.insert(v), "{v} fired twice");
                fired.push((d, v));
            });
        }
        // Equal deadlines fire in insertion order, so this is the sorted order.
        assert_eq!(fired, expected);
        assert!(wheel.is_empty());
    }

    #[test]
    fn a_huge_jump_fires_everything_due_in_order_and_leaves_the_rest() {
        let mut wheel = TimerWheel::new(8, 0);
        for &d in &[(1u64 << 35) + 1, 1 << 35, 1 << 34, 4096, 63, 0] {
            wheel.insert(d, d).unwrap();
        }
        let fired = advance_collect(&mut wheel, 1 << 35);
        assert_eq!(deadlines(&fired), vec![0, 63, 4096, 1 << 34, 1 << 35]);
        assert_eq!(wheel.next_expiration(), Some((1 << 35) + 1));
        // Jumping an empty-ish wheel by 2^35 at a time is O(LEVELS) per call.
        let mut empty = TimerWheel::<()>::new(1, 0);
        for i in 1..=1_000_000u64 {
            empty.advance(i << 35, |_, _, _| {});
        }
        assert_eq!(empty.now(), 1_000_000u64 << 35);
    }

    #[test]
    fn advance_bounded_fires_at_most_max_and_the_rest_on_the_next_call() {
        let mut wheel = TimerWheel::new(10, 0);
        for d in [5, 1, 70, 3, 5000] {
            wheel.insert(d, d).unwrap();
        }
        let mut fired = Vec::new();
        assert_eq!(wheel.advance_bounded(10_000, 2, |_, d, _| fired.push(d)), 2);
        assert_eq!(fired, vec![1, 3]);
        assert!(wheel.now() < 10_000);
        assert_eq!(wheel.next_expiration(), Some(5));
        assert_eq!(wheel.advance_bounded(10_000, 0, |_, d, _| fired.push(d)), 0);
        assert_eq!(wheel.advance_bounded(10_000, 2, |_, d, _| fired.push(d)), 2);
        assert_eq!(wheel.advance_bounded(10_000, 5, |_, d, _| fired.push(d)), 1);
        assert_eq!(fired, vec![1, 3, 5, 70, 5000]);
        assert_eq!(wheel.now(), 10_000);
    }

    #[test]
    fn a_panicking_fire_leaves_the_wheel_consistent() {
        let mut wheel = TimerWheel::new(4, 0);
        for d in 1..=3 {
            wheel.insert(d, d).unwrap();
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wheel.advance(10, |_, d, _| assert_ne!(d, 2));
        }));
        assert!(result.is_err());
        assert_eq!(wheel.len(), 1);
        assert_eq!(deadlines(&advance_collect(&mut wheel, 10)), vec![3]);
    }

    #[test]
    fn insert_error_displays_and_returns_its_value() {
        let err: InsertError<u8> = InsertError::BeyondHorizon(4);
        assert_eq!(
            err.to_string(),
            "timer deadline is beyond the wheel's horizon"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
        assert!(!boxed.to_string().is_empty());
        assert_eq!(err.into_inner(), 4);
    }

    #[test]
    fn level_for_maps_each_bit_range_to_its_level() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(0, 4095), 1);
        assert_eq!(level_for(0, 4096), 2);
        assert_eq!(level_for(0, (1 << 36) - 1), 5);
        assert_eq!(level_for((1 << 36) - 1, 1 << 36), 5);
        assert_eq!(level_for(0, u64::MAX), 5);
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Insert at `now() + offset` (negative: in the past, saturating).
        Insert(i64),
        /// Cancel the n-th key ever handed out (live, fired, or cancelled).
        Cancel(usize),
        /// Advance by this many ticks.
        Advance(u64),
        /// Advance by this many ticks with this budget.
        AdvanceBounded(u64, usize),
    }

    fn offset() -> impl Strategy<Value = i64> {
        let horizon = HORIZON_TICKS as i64;
        prop_oneof![
            3 => -70i64..130,
            2 => -5000i64..20_000,
            2 => 0i64..(1 << 26),
            1 => (0usize..=LEVELS).prop_flat_map(|l| {
                let edge = 1i64 << (l * SLOT_BITS);
                (edge - 2)..=(edge + 1)
            }),
            1 => (horizon - 3)..=(horizon + 2),
            1 => 0i64..horizon,
            1 => -(1i64 << 40)..0,
        ]
    }

    fn amount() -> impl Strategy<Value = u64> {
        prop_oneof![
            2 => Just(0u64),
            3 => 0u64..130,
            2 => 0u64..20_000,
            1 => 0u64..(1 << 26),
            1 => 0u64..(1 << 37),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => offset().prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Cancel),
            3 => amount().prop_map(Op::Advance),
            1 => (amount(), 0usize..4).prop_map(|(a, m)| Op::AdvanceBounded(a, m)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_a_btreemap_model_over_random_operations(
            capacity in 0usize..24,
            start in prop_oneof![Just(0u64), 0u64..1 << 40, Just(HORIZON_TICKS - 3)],
            ops in proptest::collection::vec(op(), 1..120),
        ) {
            let mut wheel = TimerWheel::new(capacity, start);
            // (deadline, seq) -> seq: the pending entries.
            let mut model = BTreeMap::<(u64, u64), u64>::new();
            // Every key ever handed out, with its (deadline, seq).
            let mut keys = Vec::<(TimerKey, u64, u64)>::new();
            let mut gone = HashSet::<u64>::new();
            let mut seq = 0u64;
            for op in ops {
                let now = wheel.now();
                match op {
                    Op::Insert(offset) => {
                        let deadline = if offset < 0 {
                            now.saturating_sub(offset.unsigned_abs())
                        } else {
                            now.saturating_add(offset as u64)
                        };
                        seq += 1;
                        match wheel.insert(deadline, seq) {
                            Ok(key) => {
                                prop_assert!(deadline <= now || deadline - now < HORIZON_TICKS);
                                prop_assert!(model.len() < capacity);
                                model.insert((deadline, seq), seq);
                                keys.push((key, deadline, seq));
                            }
                            Err(InsertError::BeyondHorizon(v)) => {
                                prop_assert_eq!(v, seq);
                                prop_assert!(deadline > now && deadline - now >= HORIZON_TICKS);
                            }
                            Err(InsertError::Full(v)) => {
                                prop_assert_eq!(v, seq);
                                prop_assert_eq!(model.len(), capacity);
                            }
                        }
                    }
                    Op::Cancel(n) => {
                        if !keys.is_empty() {
                            let (key, deadline, s) = keys[n % keys.len()];
                            let expected = model.remove(&(deadline, s));
                            prop_assert_eq!(wheel.cancel(key), expected);
                            gone.insert(s);
                        }
                    }
                    Op::Advance(by) | Op::AdvanceBounded(by, _) => {
                        let max = match op {
                            Op::AdvanceBounded(_, max) => max,
                            _ => usize::MAX,
                        };
                        let target = now.saturating_add(by);
                        let due_before = model.range(..=(target, u64::MAX)).count();
                        let mut fired = Vec::new();
                        let n = wheel.advance_bounded(target, max, |k, d, v| fired.push((k, d, v)));
                        prop_assert_eq!(n, fired.len());
                        prop_assert_eq!(n, due_before.min(max));
                        for &(key, deadline, value) in &fired {
                            prop_assert!(deadline <= target, "early: {} > {}", deadline, target);
                            prop_assert!(!gone.contains(&value), "{} fired twice or after cancel", value);
                            prop_assert_eq!(model.remove(&(deadline, value)), Some(value));
                            prop_assert!(keys.iter().any(|&(k, _, s)| k == key && s == value));
                            gone.insert(value);
                        }
                        // Entries already due at the call fire first, then
                        // the rest in ascending deadline order.
                        let split = fired.iter().position(|f| f.1 > now).unwrap_or(fired.len());
                        prop_assert!(fired[split..].iter().all(|f| f.1 > now));
                        prop_assert!(fired[split..].windows(2).all(|w| w[0].1 <= w[1].1));
                        if n < max {
                            prop_assert_eq!(wheel.now(), target);
                            prop_assert!(model.range(..=(target, u64::MAX)).next().is_none());
                        }
                    }
                }
                prop_assert_eq!(wheel.len(), model.len());
                prop_assert_eq!(wheel.is_empty(), model.is_empty());
                prop_assert_eq!(wheel.is_full(), model.len() == capacity);
                let earliest = model.keys().next().map(|&(d, _)| d);
                prop_assert_eq!(wheel.next_expiration(), earliest);
                if let (Some(wake), Some(earliest)) = (wheel.next_wake(), earliest) {
                    prop_assert!(wake <= earliest.max(wheel.now()));
                }
                prop_assert_eq!(wheel.next_wake().is_some(), earliest.is_some());
                for &(key, deadline, s) in &keys {
                    let pending = model.contains_key(&(deadline, s));
                    prop_assert_eq!(wheel.deadline(key), pending.then_some(deadline));
                }
            }
            // Draining reaches everything left.
            let left = model.len();
            prop_assert_eq!(wheel.advance(wheel.now().saturating_add(HORIZON_TICKS), |_, _, _| {}), left);
            prop_assert!(wheel.is_empty());
        }
    }
}
