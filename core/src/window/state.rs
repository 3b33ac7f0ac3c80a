//! The window table and its semantics, without the bus: events go in with their key,
//! event time, value and the current bus time; closed windows come out through a
//! callback. Everything is allocated in [`WindowState::try_new`]; `observe` and `close_due`
//! never allocate.
//!
//! The rules (what the model in the tests checks):
//! - time only moves forward: `now` is the largest time seen, and at least the event's
//!   timestamp (an event stamped after the shard read its clock is not in the future);
//! - a window closes once `now >= end + grace`; an event for a window at or past that
//!   point is late for it. Before an event is placed, every window due by `now` is closed,
//!   so closing never depends on when the timer fires;
//! - a fixed (tumbling or hopping) event counts into every window covering its timestamp
//!   that is not late; if all are late, the event is `Late`;
//! - a session event joins (and merges) every open session of its key it is closer than
//!   `gap` to; otherwise it opens a session `[ts, ts + gap)`, late if that one is already
//!   closed;
//! - a key holds a slot while it has an open window; a new key when all slots are held
//!   is `KeyOverflow` (as is an event that finds no free window in its key's slot, which
//!   only happens while emitted results are being refused).

use arrayvec::ArrayVec;

use super::aggregate::{Cell, WindowResult};
use super::histogram::{self, BUCKETS};
use super::key_table::KeyTable;
use super::spec::{Shape, MAX_WINDOWS_PER_KEY};

/// What happened to one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Counted into `windows` windows (for a hopping window, `late_windows` more that
    /// cover it were already closed).
    Counted {
        /// Windows it was counted into.
        windows: u32,
        /// Windows covering it that were past their grace.
        late_windows: u32,
    },
    /// Every window it belongs to was past its grace period.
    Late,
    /// No room: its key is new and the key table is full (or its key had no free window).
    KeyOverflow,
}

/// A window's counts. Conservation:
/// `inputs == counted + late + key_overflow + unaggregatable` and
/// `window_adds == emitted_count + open_count`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Events the window was given (its own results and ticks excluded).
    pub inputs: u64,
    /// Events counted into at least one window.
    pub counted: u64,
    /// Events past the grace period of every window they belong to (dead-lettered).
    pub late: u64,
    /// Events refused for want of a key slot (dead-lettered).
    pub key_overflow: u64,
    /// Events without the key or the value the window reads (dead-lettered).
    pub unaggregatable: u64,
    /// Event-window pairs counted (an event counts once per hopping window covering it).
    pub window_adds: u64,
    /// Event-window pairs refused as late for events that were counted elsewhere.
    pub late_windows: u64,
    /// Windows closed and emitted.
    pub emitted_windows: u64,
    /// Sum of the counts of the emitted windows.
    pub emitted_count: u64,
    /// Sum of the counts of the windows open now.
    pub open_count: u64,
    /// Results the bus refused (ring full); the window stays open and is tried again.
    pub emit_refused: u64,
    /// Ticks (timer events) the window received.
    pub ticks: u64,
    /// Ticks it could not schedule (ring full); the next event schedules again, and a
    /// tick that could not schedule its successor is retried through the retry wheel.
    pub tick_refused: u64,
}

impl WindowStats {
    /// Whether every input is accounted for and every counted pair is either emitted
    /// or still open.
    pub fn conserved(&self) -> bool {
        self.inputs == self.counted + self.late + self.key_overflow + self.unaggregatable
            && self.window_adds == self.emitted_count + self.open_count
    }
}

/// The window table: keys, their open windows and their histograms, all preallocated.
#[derive(Debug)]
pub struct WindowState {
    shape: Shape,
    per_key: usize,
    table: KeyTable,
    slot_keys: Vec<u64>,
    slot_open: Vec<u32>,
    cells: Vec<Cell>,
    hist: Vec<u32>,
    now: u64,
    /// A lower bound of the earliest `close_at` of the open windows (`u64::MAX`: none).
    next_close: u64,
    stats: WindowStats,
}

impl WindowState {
    /// A table for `keys` keys with `per_key` windows each (what [`Shape::new`] says):
    /// `keys x per_key` cells and histograms (~4 KiB each: see
    /// [`WindowState::footprint`]). A failed allocation is an error, not an abort.
    pub fn try_new(
        shape: Shape,
        keys: usize,
        per_key: usize,
    ) -> Result<Self, std::collections::TryReserveError> {
        let per_key = per_key.clamp(1, MAX_WINDOWS_PER_KEY);
        let keys = keys.max(1);
        fn filled<T: Clone>(n: usize, v: T) -> Result<Vec<T>, std::collections::TryReserveError> {
            let mut out = Vec::new();
            out.try_reserve_exact(n)?;
            out.resize(n, v);
            Ok(out)
        }
        Ok(WindowState {
            shape,
            per_key,
            table: KeyTable::new(keys),
            slot_keys: filled(keys, 0)?,
            slot_open: filled(keys, 0)?,
            cells: filled(keys * per_key, Cell::default())?,
            hist: filled(keys * per_key * BUCKETS, 0)?,
            now: 0,
            next_close: u64::MAX,
            stats: WindowStats::default(),
        })
    }

    /// The bytes a table for `keys` keys with `per_key` windows each allocates (saturated
    /// at `usize::MAX`): what `Bus::window` checks against the bus's memory budget.
    pub fn footprint(keys: usize, per_key: usize) -> usize {
        let windows = keys.saturating_mul(per_key);
        let per_window = core::mem::size_of::<Cell>() + BUCKETS * core::mem::size_of::<u32>();
        let per_key_bytes = 2 * (8 + 4) + 8 + 4 + 4; // key table (2x, key + slot), key, count, free list
        windows
            .saturating_mul(per_window)
            .saturating_add(keys.saturating_mul(per_key_bytes))
    }

    /// The counts so far.
    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut WindowStats {
        &mut self.stats
    }

    /// The bus time the table has seen.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// When the next window is due to close, if any is open (possibly early: a session
    /// that grew since closes later; a tick then closes nothing and asks again).
    pub fn next_close(&self) -> Option<u64> {
        (self.next_close != u64::MAX).then_some(self.next_close)
    }

    /// Keys with open windows.
    pub fn keys(&self) -> usize {
        self.table.len()
    }

    /// Counts an input that had no key or value (dead-lettered by the caller).
    pub fn note_unaggregatable(&mut self) {
        self.stats.inputs += 1;
        self.stats.unaggregatable += 1;
    }

    /// Places one event: `key`, event time `ts`, `value`, `cause` (its id, carried to the
    /// result as causation), at bus time `now`. Windows due by then are closed first
    /// through `emit` (which returns false when it could not publish: that window stays
    /// open and is offered again later).
    pub fn observe(
        &mut self,
        key: u64,
        ts: u64,
        value: i64,
        cause: u64,
        now: u64,
        emit: &mut impl FnMut(&WindowResult, u64) -> bool,
    ) -> Observed {
        self.now = self.now.max(now).max(ts);
        if self.now >= self.next_close {
            self.close_due(self.now, emit);
        }
        self.stats.inputs += 1;
        let outcome = match self.shape {
            Shape::Fixed {
                size,
                advance,
                grace,
            } => self.observe_fixed(key, ts, value, cause, size, advance, grace),
            Shape::Session { gap, grace } => {
                self.observe_session(key, ts, value, cause, gap, grace)
            }
        };
        match outcome {
            Observed::Counted {
                windows,
                late_windows,
            } => {
                self.stats.counted += 1;
                self.stats.window_adds += u64::from(windows);
                self.stats.open_count += u64::from(windows);
                self.stats.late_windows += u64::from(late_windows);
            }
            Observed::Late => self.stats.late += 1,
            Observed::KeyOverflow => self.stats.key_overflow += 1,
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn observe_fixed(
        &mut self,
        key: u64,
        ts: u64,
        value: i64,
        cause: u64,
        size: u64,
        advance: u64,
        grace: u64,
    ) -> Observed {
        let hi = ts / advance * advance;
        let lo = if ts >= size {
            (ts - size) / advance * advance + advance
        } else {
            0
        };
        let mut starts: ArrayVec<u64, MAX_WINDOWS_PER_KEY> = ArrayVec::new();
        let mut late = 0u32;
        let mut s = lo;
        while s <= hi {
            if s + size + grace <= self.now {
                late += 1;
            } else if starts.try_push(s).is_err() {
                break;
            }
            s += advance;
        }
        if starts.is_empty() {
            return Observed::Late;
        }
        let Some((slot, inserted)) = self.table.get_or_insert(key) else {
            return Observed::KeyOverflow;
        };
        let base = slot * self.per_key;
        let cells = &self.cells[base..base + self.per_key];
        let missing = starts
            .iter()
            .filter(|&&s| !cells.iter().any(|c| c.used && c.start == s))
            .count();
        let free = cells.iter().filter(|c| !c.used).count();
        if missing > free {
            if inserted {
                self.table.remove(key);
            }
            return Observed::KeyOverflow;
        }
        self.slot_keys[slot] = key;
        for &s in &starts {
            let i = match (base..base + self.per_key).find(|&i| {
                let c = &self.cells[i];
                c.used && c.start == s
            }) {
                Some(i) => i,
                None => {
                    let i = (base..base + self.per_key)
                        .find(|&i| !self.cells[i].used)
                        .unwrap_or(base);
                    let close = s + size + grace;
                    self.cells[i] = Cell::open(s, s + size, close);
                    self.slot_open[slot] += 1;
                    self.next_close = self.next_close.min(close);
                    i
                }
            };
            self.cells[i].add(value, cause);
            histogram::record(&mut self.hist[i * BUCKETS..(i + 1) * BUCKETS], value);
        }
        Observed::Counted {
            windows: starts.len() as u32,
            late_windows: late,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn observe_session(
        &mut self,
        key: u64,
        ts: u64,
        value: i64,
        cause: u64,
        gap: u64,
        grace: u64,
    ) -> Observed {
        let joins = |c: &Cell| c.used && ts + gap > c.start && ts < c.last + gap;
        let existing = self.table.get(key);
        let first = existing.and_then(|slot| {
            let base = slot * self.per_key;
            (base..base + self.per_key).find(|&i| joins(&self.cells[i]))
        });
        let i = match (existing, first) {
            (Some(slot), Some(first)) => {
                // Merge every other session this event bridges into the first.
                let base = slot * self.per_key;
                for j in first + 1..base + self.per_key {
                    if joins(&self.cells[j]) {
                        let other = self.cells[j];
                        let c = &mut self.cells[first];
                        c.absorb(&other);
                        c.start = c.start.min(other.start);
                        c.last = c.last.max(other.last);
                        let (a, b) = self.hist.split_at_mut(j * BUCKETS);
                        histogram::merge(
                            &mut a[first * BUCKETS..(first + 1) * BUCKETS],
                            &b[..BUCKETS],
                        );
                        b[..BUCKETS].fill(0);
                        self.cells[j].used = false;
                        self.slot_open[slot] -= 1;
                    }
                }
                let c = &mut self.cells[first];
                c.start = c.start.min(ts);
                c.last = c.last.max(ts);
                c.end = c.last + gap;
                c.close_at = c.end + grace;
                first
            }
            _ => {
                let close = ts + gap + grace;
                if close <= self.now {
                    return Observed::Late;
                }
                let Some((slot, inserted)) = self.table.get_or_insert(key) else {
                    return Observed::KeyOverflow;
                };
                let base = slot * self.per_key;
                let Some(i) = (base..base + self.per_key).find(|&i| !self.cells[i].used) else {
                    if inserted {
                        self.table.remove(key);
                    }
                    return Observed::KeyOverflow;
                };
                self.slot_keys[slot] = key;
                self.cells[i] = Cell::open(ts, ts + gap, close);
                self.slot_open[slot] += 1;
                self.next_close = self.next_close.min(close);
                i
            }
        };
        self.cells[i].add(value, cause);
        histogram::record(&mut self.hist[i * BUCKETS..(i + 1) * BUCKETS], value);
        Observed::Counted {
            windows: 1,
            late_windows: 0,
        }
    }

    /// Closes every window due by `now` (`end + grace <= now`), handing each result and
    /// its causation id to `emit`; stops offering at the first refusal (those windows
    /// stay open). Returns how many closed.
    pub fn close_due(
        &mut self,
        now: u64,
        emit: &mut impl FnMut(&WindowResult, u64) -> bool,
    ) -> u32 {
        self.now = self.now.max(now);
        if self.now < self.next_close {
            return 0;
        }
        let mut next = u64::MAX;
        let mut closed = 0;
        let mut blocked = false;
        for slot in 0..self.slot_open.len() {
            if self.slot_open[slot] == 0 {
                continue;
            }
            let key = self.slot_keys[slot];
            for i in slot * self.per_key..(slot + 1) * self.per_key {
                let cell = self.cells[i];
                if !cell.used {
                    continue;
                }
                if !blocked && cell.close_at <= self.now {
                    let hist = &mut self.hist[i * BUCKETS..(i + 1) * BUCKETS];
                    if emit(&cell.result(key, hist), cell.cause) {
                        hist.fill(0);
                        self.cells[i].used = false;
                        self.slot_open[slot] -= 1;
                        self.stats.emitted_windows += 1;
                        self.stats.emitted_count += cell.count;
                        self.stats.open_count -= cell.count;
                        closed += 1;
                        continue;
                    }
                    blocked = true;
                    self.stats.emit_refused += 1;
                }
                next = next.min(cell.close_at);
            }
            if self.slot_open[slot] == 0 {
                self.table.remove(key);
            }
        }
        self.next_close = next;
        closed
    }
}
