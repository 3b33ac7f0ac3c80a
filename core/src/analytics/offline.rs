//! Analytics over a journal (feature `journal`): rates over time, the mix of types, the
//! top sources, and latency by type. Used by `dreamnet journal stats` and
//! `dreamnet report`.
//!
//! **What "latency" means offline.** A journal record holds the event as published: its
//! publish timestamp, but no time of delivery or of handling. What it does hold is the
//! causal link ([`crate::Event::caused_by`]): an event published by a handler names the
//! event it reacted to. So the latency here is the **reaction latency**: the publish
//! timestamp of an event minus that of its cause, when the cause is in the analysed
//! records — the time the cause waited in the ring, its handling, and the handler's work
//! until it published the reaction. It is attributed to the type of the reaction. Events
//! with no cause, or whose cause is not among the last [`DEFAULT_CAUSE_WINDOW`] records
//! analysed (or not selected at all), have none and are counted as `causes_unmatched`
//! when they name one. The live publish -> dispatch latency is in
//! [`crate::Bus::analytics`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use hdrhistogram::Histogram;

use crate::event::Event;
use crate::journal::{JournalError, JournalReader, Selection};
use crate::names::{AgentId, EventType};

/// How many recent event ids the analyzer remembers to find causes (about 40 MiB at
/// most): a cause further back is not matched.
pub const DEFAULT_CAUSE_WINDOW: usize = 1 << 20;

/// The longest reaction latency told apart offline (one day); longer ones saturate.
const OFFLINE_LATENCY_MAX_NS: u64 = 86_400_000_000_000;

/// The most empty buckets filled in between the first and the last (beyond that the
/// bucket list stays sparse rather than take unbounded memory).
const MAX_DENSE_BUCKETS: u64 = 1_000_000;

/// One time bucket of a journal's analysis.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Bucket {
    /// The bucket's start, ns on the bus clock (a multiple of the bucket width).
    pub start_ns: u64,
    /// Records whose publish timestamp falls in the bucket.
    pub count: u64,
    /// Records per second over the bucket.
    pub rate_per_s: f64,
    /// Records in the bucket with a matched cause (a reaction latency).
    pub reactions: u64,
    /// Their mean reaction latency, ns (`None` without reactions).
    pub latency_mean_ns: Option<f64>,
    /// Their largest reaction latency, ns (`None` without reactions).
    pub latency_max_ns: Option<u64>,
}

/// The reaction latency of one event type (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TypeLatency {
    /// The type of the reactions.
    pub event_type: EventType,
    /// How many reactions of this type had a matched cause.
    pub count: u64,
    /// Mean, ns.
    pub mean_ns: f64,
    /// Median, ns (2 significant digits).
    pub p50_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// Largest, ns (exact).
    pub max_ns: u64,
}

/// What [`JournalAnalyzer::finish`] found.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JournalAnalysis {
    /// Records analysed.
    pub records: u64,
    /// Earliest and latest publish timestamp, ns (`None` without records).
    pub first_ts: Option<u64>,
    /// See `first_ts`.
    pub last_ts: Option<u64>,
    /// Records per second from the first to the last timestamp (`None` if they are equal).
    pub rate_per_s: Option<f64>,
    /// The bucket width, ns.
    pub bucket_ns: u64,
    /// Buckets in time order, from the first record's to the last's; empty ones are
    /// filled in (count 0) unless there would be more than a million.
    pub buckets: Vec<Bucket>,
    /// The type mix: records per type, most frequent first (ties by id).
    pub by_type: Vec<(EventType, u64)>,
    /// Records per source agent, most frequent first (ties by id): the top sources.
    pub by_source: Vec<(AgentId, u64)>,
    /// Reaction latency per type, by type id.
    pub latency_by_type: Vec<TypeLatency>,
    /// Records that name a cause (causation id) not found among the remembered records.
    pub causes_unmatched: u64,
}

#[derive(Clone, Debug, Default)]
struct BucketAcc {
    count: u64,
    reactions: u64,
    latency_sum: u128,
    latency_max: u64,
}

/// Folds journal records, one at a time, into a [`JournalAnalysis`]. Feed it in sequence
/// order (a cause is matched only if it was added before its reaction).
///
/// ```
/// use dreamnet_bus::analytics::JournalAnalyzer;
/// use dreamnet_bus::{Event, EventType};
/// let mut analyzer = JournalAnalyzer::new(1_000_000_000);
/// let event: Event = Event::new(EventType::AGENT_TASK);
/// analyzer.add(&event);
/// let analysis = analyzer.finish();
/// assert_eq!(analysis.records, 1);
/// assert_eq!(analysis.by_type, vec![(EventType::AGENT_TASK, 1)]);
/// ```
#[derive(Debug)]
pub struct JournalAnalyzer {
    bucket_ns: u64,
    window: usize,
    records: u64,
    first_ts: Option<u64>,
    last_ts: Option<u64>,
    by_type: BTreeMap<u16, u64>,
    by_source: BTreeMap<u32, u64>,
    buckets: BTreeMap<u64, BucketAcc>,
    latency: BTreeMap<u16, Histogram<u64>>,
    /// The exact largest reaction latency per type (the histogram's is rounded up).
    latency_max: BTreeMap<u16, u64>,
    /// Recent event ids -> publish timestamp, for matching causes.
    recent: HashMap<u64, u64>,
    /// The same ids in the order added (the oldest leaves first).
    order: VecDeque<u64>,
    causes_unmatched: u64,
}

impl JournalAnalyzer {
    /// An analyzer with buckets `bucket_ns` wide (at least 1 ns) and the default cause
    /// window.
    pub fn new(bucket_ns: u64) -> Self {
        JournalAnalyzer {
            bucket_ns: bucket_ns.max(1),
            window: DEFAULT_CAUSE_WINDOW,
            records: 0,
            first_ts: None,
            last_ts: None,
            by_type: BTreeMap::new(),
            by_source: BTreeMap::new(),
            buckets: BTreeMap::new(),
            latency: BTreeMap::new(),
            latency_max: BTreeMap::new(),
            recent: HashMap::new(),
            order: VecDeque::new(),
            causes_unmatched: 0,
        }
    }

    /// Remembers the last `n` event ids to match causes (0: no reaction latency at all).
    pub fn cause_window(mut self, n: usize) -> Self {
        self.window = n;
        self
    }

    /// Adds one record's event.
    pub fn add<const SLOT: usize>(&mut self, event: &Event<SLOT>) {
        let h = event.header();
        let ts = h.timestamp_ns();
        self.records += 1;
        self.first_ts = Some(self.first_ts.map_or(ts, |m| m.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |m| m.max(ts)));
        *self.by_type.entry(h.event_type().raw()).or_default() += 1;
        *self.by_source.entry(h.source().raw()).or_default() += 1;
        let bucket = self.buckets.entry(ts / self.bucket_ns).or_default();
        bucket.count += 1;
        let cause = h.causation_id();
        if cause != 0 {
            match self.recent.get(&cause) {
                Some(&cause_ts) => {
                    let latency = ts.saturating_sub(cause_ts);
                    bucket.reactions += 1;
                    bucket.latency_sum += u128::from(latency);
                    bucket.latency_max = bucket.latency_max.max(latency);
                    self.latency
                        .entry(h.event_type().raw())
                        .or_insert_with(offline_histogram)
                        .saturating_record(latency.max(1));
                    let max = self.latency_max.entry(h.event_type().raw()).or_default();
                    *max = (*max).max(latency);
                }
                None => self.causes_unmatched += 1,
            }
        }
        if self.window > 0 && h.id() != 0 {
            if self.order.len() == self.window {
                if let Some(old) = self.order.pop_front() {
                    self.recent.remove(&old);
                }
            }
            self.recent.insert(h.id(), ts);
            self.order.push_back(h.id());
        }
    }

    /// The analysis of everything added.
    pub fn finish(self) -> JournalAnalysis {
        let bucket_ns = self.bucket_ns;
        let secs = bucket_ns as f64 / 1e9;
        let to_bucket = |index: u64, acc: &BucketAcc| Bucket {
            start_ns: index.saturating_mul(bucket_ns),
            count: acc.count,
            rate_per_s: acc.count as f64 / secs,
            reactions: acc.reactions,
            latency_mean_ns: (acc.reactions > 0)
                .then(|| acc.latency_sum as f64 / acc.reactions as f64),
            latency_max_ns: (acc.reactions > 0).then_some(acc.latency_max),
        };
        let span = self
            .buckets
            .first_key_value()
            .zip(self.buckets.last_key_value())
            .map(|((a, _), (b, _))| (*a, *b));
        let buckets = match span {
            Some((first, last)) if last - first < MAX_DENSE_BUCKETS => {
                let empty = BucketAcc::default();
                (first..=last)
                    .map(|i| to_bucket(i, self.buckets.get(&i).unwrap_or(&empty)))
                    .collect()
            }
            _ => self
                .buckets
                .iter()
                .map(|(i, acc)| to_bucket(*i, acc))
                .collect(),
        };
        let rate_per_s = match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) if b > a => Some(self.records as f64 / ((b - a) as f64 / 1e9)),
            _ => None,
        };
        JournalAnalysis {
            records: self.records,
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            rate_per_s,
            bucket_ns,
            buckets,
            by_type: sorted_desc(&self.by_type, EventType),
            by_source: sorted_desc(&self.by_source, AgentId),
            latency_by_type: self
                .latency
                .iter()
                .map(|(t, h)| TypeLatency {
                    event_type: EventType(*t),
                    count: h.len(),
                    mean_ns: h.mean(),
                    p50_ns: h.value_at_quantile(0.5),
                    p99_ns: h.value_at_quantile(0.99),
                    max_ns: self.latency_max.get(t).copied().unwrap_or_else(|| h.max()),
                })
                .collect(),
            causes_unmatched: self.causes_unmatched,
        }
    }
}

impl JournalAnalysis {
    /// Analyses the records of `reader` that `selection` selects, with `bucket_ns`
    /// buckets. Returns the analysis and the tombstones stepped over; a damaged record is
    /// the reader's typed error, never skipped.
    pub fn of<const SLOT: usize>(
        reader: &JournalReader<SLOT>,
        selection: &Selection,
        bucket_ns: u64,
    ) -> Result<(JournalAnalysis, u64), JournalError> {
        let mut analyzer = JournalAnalyzer::new(bucket_ns);
        let mut records = reader.records(selection);
        for r in &mut records {
            analyzer.add(r?.event());
        }
        let tombstones = records.tombstones();
        Ok((analyzer.finish(), tombstones))
    }

    /// The reaction latency of one type, if it had any.
    pub fn latency_of(&self, ty: EventType) -> Option<&TypeLatency> {
        self.latency_by_type.iter().find(|l| l.event_type == ty)
    }
}

fn offline_histogram() -> Histogram<u64> {
    // Constant bounds hdrhistogram accepts (low >= 1, high >= 2 * low, digits <= 5).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, OFFLINE_LATENCY_MAX_NS, 2).expect("constant, valid bounds")
}

fn sorted_desc<K: Copy + Ord, T>(m: &BTreeMap<K, u64>, wrap: impl Fn(K) -> T) -> Vec<(T, u64)> {
    let mut v: Vec<(K, u64)> = m.iter().map(|(k, c)| (*k, *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.into_iter().map(|(k, c)| (wrap(k), c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64, ty: EventType, source: u32, ts: u64, cause: u64) -> Event {
        let mut e = Event::new(ty).with_causation_id(cause);
        e.stamp(id, AgentId(source), ts);
        e
    }

    /// A small model: counts per type/source/bucket and reaction latencies computed by
    /// brute force over the whole list, against the analyzer.
    #[test]
    fn matches_a_brute_force_model() {
        let mut events = Vec::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for id in 1..=500u64 {
            let ty = EventType(rng.u16(0..5));
            let source = rng.u32(0..4);
            let ts = id * 10_000_000 + rng.u64(0..5_000_000);
            let cause = if id > 1 && rng.bool() {
                rng.u64(1..id)
            } else {
                0
            };
            events.push(event(id, ty, source, ts, cause));
        }
        let mut analyzer = JournalAnalyzer::new(1_000_000_000);
        for e in &events {
            analyzer.add(e);
        }
        let a = analyzer.finish();
        assert_eq!(a.records, 500);
        for t in 0..5u16 {
            let n = events
                .iter()
                .filter(|e| e.header().event_type().raw() == t)
                .count() as u64;
            let got = a
                .by_type
                .iter()
                .find(|(ty, _)| ty.raw() == t)
                .map_or(0, |x| x.1);
            assert_eq!(got, n, "type {t}");
            let lat: Vec<u64> = events
                .iter()
                .filter(|e| e.header().event_type().raw() == t && e.header().causation_id() != 0)
                .map(|e| {
                    let c = &events[e.header().causation_id() as usize - 1];
                    e.header().timestamp_ns() - c.header().timestamp_ns()
                })
                .collect();
            match a.latency_of(EventType(t)) {
                None => assert!(lat.is_empty()),
                Some(l) => {
                    assert_eq!(l.count, lat.len() as u64);
                    let max = *lat.iter().max().unwrap();
                    assert_eq!(l.max_ns, max);
                }
            }
        }
        assert!(
            a.by_type.windows(2).all(|w| w[0].1 >= w[1].1),
            "most frequent first"
        );
        let total: u64 = a.buckets.iter().map(|b| b.count).sum();
        assert_eq!(total, 500);
        // Dense: consecutive bucket starts, from the first timestamp's to the last's.
        assert!(a
            .buckets
            .windows(2)
            .all(|w| w[1].start_ns - w[0].start_ns == 1_000_000_000));
        for b in &a.buckets {
            let n = events
                .iter()
                .filter(|e| e.header().timestamp_ns() / 1_000_000_000 * 1_000_000_000 == b.start_ns)
                .count() as u64;
            assert_eq!(b.count, n);
        }
        assert_eq!(a.causes_unmatched, 0);
    }

    #[test]
    fn a_cause_outside_the_window_is_counted_unmatched() {
        let mut analyzer = JournalAnalyzer::new(1_000).cause_window(2);
        analyzer.add(&event(1, EventType::AGENT_TASK, 0, 10, 0));
        analyzer.add(&event(2, EventType::AGENT_TASK, 0, 20, 0));
        analyzer.add(&event(3, EventType::AGENT_TASK, 0, 30, 0));
        analyzer.add(&event(4, EventType::AGENT_RESPONSE, 0, 40, 1)); // 1 was forgotten
        analyzer.add(&event(5, EventType::AGENT_RESPONSE, 0, 45, 3));
        let a = analyzer.finish();
        assert_eq!(a.causes_unmatched, 1);
        let l = a.latency_of(EventType::AGENT_RESPONSE).unwrap();
        assert_eq!((l.count, l.max_ns), (1, 15));
    }

    #[test]
    fn nothing_added_is_an_empty_analysis() {
        let a = JournalAnalyzer::new(0).finish();
        assert_eq!(a.records, 0);
        assert!(a.buckets.is_empty() && a.by_type.is_empty() && a.rate_per_s.is_none());
        assert_eq!(a.bucket_ns, 1);
    }
}

#[cfg(test)]
mod journal_tests {
    use super::*;
    use crate::journal::{Journal, JournalConfig};

    /// `JournalAnalysis::of` over a real journal on disk equals the analyzer fed the same
    /// events by hand, and a selection narrows it.
    #[test]
    fn analysis_of_a_journal_on_disk() {
        let dir = std::env::temp_dir().join(format!("dreamnet-offline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut events = Vec::new();
        for id in 1..=40u64 {
            let ty = if id % 4 == 0 {
                EventType::AGENT_RESPONSE
            } else {
                EventType::AGENT_TASK
            };
            let cause = if id % 4 == 0 { id - 1 } else { 0 };
            let mut e = Event::new(ty).with_causation_id(cause);
            e.stamp(id, AgentId((id % 3) as u32), id * 1_000_000);
            events.push(e);
        }
        let mut journal: Journal =
            Journal::open(JournalConfig::new(&dir).segment_records(16)).expect("journal");
        for e in &events {
            journal.append(e).expect("append");
        }
        journal.close().expect("close");
        let reader: JournalReader = JournalReader::open(&dir).expect("reader");
        let (got, tombstones) =
            JournalAnalysis::of(&reader, &Selection::all(), 10_000_000).expect("analysis");
        let mut by_hand = JournalAnalyzer::new(10_000_000);
        events.iter().for_each(|e| by_hand.add(e));
        assert_eq!(got, by_hand.finish());
        assert_eq!(tombstones, 0);
        assert_eq!(got.buckets.len(), 5);
        let response = got
            .latency_of(EventType::AGENT_RESPONSE)
            .expect("reactions");
        assert_eq!((response.count, response.max_ns), (10, 1_000_000));
        let (tasks, _) = JournalAnalysis::of(
            &reader,
            &Selection::all().of_type(EventType::AGENT_TASK),
            10_000_000,
        )
        .expect("analysis");
        assert_eq!(tasks.records, 30);
        assert!(tasks.latency_by_type.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
