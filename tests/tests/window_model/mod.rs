//! A naive model of aggregation-window semantics, for the property tests and the
//! `window_state` fuzz target: every window keeps its values in a `Vec`, percentiles come
//! from sorting, and windows live in a `BTreeMap`. The rules it encodes are the ones
//! `dreamnet_bus::window::WindowState` documents.
#![allow(dead_code)]

use std::collections::BTreeMap;

use dreamnet_bus::window::quantize::{quantize, rank};
use dreamnet_bus::window::{Observed, Shape, WindowResult};

#[derive(Clone, Debug)]
struct Win {
    start: u64,
    last: u64,
    end: u64,
    close: u64,
    values: Vec<i64>,
    cause: u64,
}

/// The model: windows by key, emitted results (with causation), and the counts.
#[derive(Debug)]
pub struct Model {
    shape: Shape,
    capacity: usize,
    now: u64,
    windows: BTreeMap<u64, Vec<Win>>,
    /// Results emitted so far, with the causation id.
    pub emitted: Vec<(WindowResult, u64)>,
    pub counted: u64,
    pub late: u64,
    pub key_overflow: u64,
    pub window_adds: u64,
    pub late_windows: u64,
}

impl Model {
    pub fn new(shape: Shape, capacity: usize) -> Self {
        Model {
            shape,
            capacity,
            now: 0,
            windows: BTreeMap::new(),
            emitted: Vec::new(),
            counted: 0,
            late: 0,
            key_overflow: 0,
            window_adds: 0,
            late_windows: 0,
        }
    }

    fn result(key: u64, w: &Win) -> WindowResult {
        let mut v = w.values.clone();
        v.sort_unstable();
        let count = v.len() as u64;
        let (min, max) = (v[0], v[v.len() - 1]);
        let sum: i128 = v.iter().map(|&x| i128::from(x)).sum();
        let q = |pm| quantize(v[rank(count, pm) as usize - 1]).clamp(min, max);
        WindowResult {
            key,
            start_ns: w.start,
            end_ns: w.end,
            count,
            sum,
            min,
            max,
            mean: sum as f64 / count as f64,
            p50: q(500),
            p90: q(900),
            p99: q(990),
        }
    }

    /// Emits every window due by `now`.
    pub fn close_due(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        for (&key, wins) in self.windows.iter_mut() {
            wins.retain(|w| {
                if w.close <= now {
                    self.emitted.push((Self::result(key, w), w.cause));
                    false
                } else {
                    true
                }
            });
        }
        self.windows.retain(|_, w| !w.is_empty());
    }

    fn has_room_for(&self, key: u64) -> bool {
        self.windows.contains_key(&key) || self.windows.len() < self.capacity
    }

    pub fn observe(&mut self, key: u64, ts: u64, value: i64, cause: u64, now: u64) -> Observed {
        self.close_due(now.max(ts));
        let now = self.now;
        let outcome = match self.shape {
            Shape::Fixed {
                size,
                advance,
                grace,
            } => {
                let covering: Vec<u64> = (0..=ts / advance)
                    .map(|k| k * advance)
                    .filter(|&s| s + size > ts)
                    .collect();
                let open: Vec<u64> = covering
                    .iter()
                    .copied()
                    .filter(|&s| s + size + grace > now)
                    .collect();
                if open.is_empty() {
                    Observed::Late
                } else if !self.has_room_for(key) {
                    Observed::KeyOverflow
                } else {
                    let wins = self.windows.entry(key).or_default();
                    for &s in &open {
                        let w = match wins.iter_mut().position(|w| w.start == s) {
                            Some(i) => &mut wins[i],
                            None => {
                                wins.push(Win {
                                    start: s,
                                    last: s,
                                    end: s + size,
                                    close: s + size + grace,
                                    values: Vec::new(),
                                    cause: 0,
                                });
                                wins.last_mut().unwrap()
                            }
                        };
                        w.values.push(value);
                        w.cause = cause;
                    }
                    Observed::Counted {
                        windows: open.len() as u32,
                        late_windows: (covering.len() - open.len()) as u32,
                    }
                }
            }
            Shape::Session { gap, grace } => {
                let joins = |w: &Win| ts + gap > w.start && ts < w.last + gap;
                let wins = self.windows.get(&key).cloned().unwrap_or_default();
                let (joined, rest): (Vec<Win>, Vec<Win>) = wins.into_iter().partition(joins);
                if joined.is_empty() {
                    let close = ts + gap + grace;
                    if close <= now {
                        Observed::Late
                    } else if !self.has_room_for(key) {
                        Observed::KeyOverflow
                    } else {
                        self.windows.entry(key).or_default().push(Win {
                            start: ts,
                            last: ts,
                            end: ts + gap,
                            close,
                            values: vec![value],
                            cause,
                        });
                        Observed::Counted {
                            windows: 1,
                            late_windows: 0,
                        }
                    }
                } else {
                    let mut merged = Win {
                        start: ts,
                        last: ts,
                        end: 0,
                        close: 0,
                        values: vec![value],
                        cause,
                    };
                    for w in &joined {
                        merged.start = merged.start.min(w.start);
                        merged.last = merged.last.max(w.last);
                        merged.values.extend_from_slice(&w.values);
                    }
                    merged.end = merged.last + gap;
                    merged.close = merged.end + grace;
                    let mut wins = rest;
                    wins.push(merged);
                    self.windows.insert(key, wins);
                    Observed::Counted {
                        windows: 1,
                        late_windows: 0,
                    }
                }
            }
        };
        match outcome {
            Observed::Counted {
                windows,
                late_windows,
            } => {
                self.counted += 1;
                self.window_adds += u64::from(windows);
                self.late_windows += u64::from(late_windows);
            }
            Observed::Late => self.late += 1,
            Observed::KeyOverflow => self.key_overflow += 1,
        }
        outcome
    }

    /// Values counted in windows still open.
    pub fn open_count(&self) -> u64 {
        self.windows
            .values()
            .flatten()
            .map(|w| w.values.len() as u64)
            .sum()
    }
}

/// Sorts results into a canonical order for comparison (emission order within one close
/// is the table's, not part of the contract).
pub fn canonical(mut v: Vec<(WindowResult, u64)>) -> Vec<(WindowResult, u64)> {
    v.sort_by(|a, b| {
        (a.0.key, a.0.start_ns, a.0.end_ns, a.1).cmp(&(b.0.key, b.0.start_ns, b.0.end_ns, b.1))
    });
    v
}
