//! Helpers shared by the integration test binaries (each binary uses a subset).
#![allow(dead_code)]

use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use dreamnet_bus::{AgentId, Bus, Delivery, EventType, Outcome, Priority, Shard, DEFAULT_SLOT};

/// A task payload: archived into the slot with rkyv, read back zero copy.
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Which publisher (test-side index) sent it.
    pub publisher: u32,
    /// Per-publisher sequence number.
    pub seq: u64,
    /// Some bytes, so the payload is not trivially small.
    pub tag: [u8; 16],
}

/// What a recording handler saw of one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Test-side label of the subscription that got it.
    pub sub: usize,
    pub correlation: u64,
    pub priority: Priority,
    pub source: AgentId,
    pub destination: Option<AgentId>,
    pub event_type: EventType,
}

/// A delivery log shared by recording handlers (in dispatch order per shard).
pub type Log = Arc<Mutex<Vec<Hit>>>;

pub fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

/// A handler that appends every delivery, labelled `sub`, to `log`.
pub fn record(
    log: &Log,
    sub: usize,
) -> impl FnMut(&Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send + 'static {
    let log = Arc::clone(log);
    move |d| {
        let h = d.header();
        log.lock().expect("log lock poisoned").push(Hit {
            sub,
            correlation: h.correlation_id(),
            priority: h.priority(),
            source: h.source(),
            destination: h.destination(),
            event_type: h.event_type(),
        });
        Outcome::Done
    }
}

/// A copy of the log's current content.
pub fn hits(log: &Log) -> Vec<Hit> {
    log.lock().expect("log lock poisoned").clone()
}

/// `(sub, correlation)` pairs of the log, sorted: the delivery set.
pub fn delivery_set(log: &Log) -> Vec<(usize, u64)> {
    let mut v: Vec<(usize, u64)> = hits(log).iter().map(|h| (h.sub, h.correlation)).collect();
    v.sort_unstable();
    v
}

/// Clears the log.
pub fn clear(log: &Log) {
    log.lock().expect("log lock poisoned").clear();
}

/// A poll-mode bus with `shards` shards, and the shards (the caller's loop polls them).
pub fn poll_bus(shards: usize) -> (Bus, Vec<Shard>) {
    Bus::builder()
        .shards(shards)
        .build_polled()
        .expect("a poll-mode bus builds")
}

/// Polls every shard until all are idle at once (so events one shard hands another,
/// such as redrives or derived events, are taken too); returns how many were taken.
/// Allocates nothing: the zero-allocation tests use it inside their counting window.
pub fn drain_all(shards: &mut [Shard]) -> usize {
    let mut total = 0;
    loop {
        let n: usize = shards.iter_mut().map(|s| s.poll(1024)).sum();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// Polls `cond` until it holds; fails loudly after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The panic message tests use for handlers that panic on purpose.
pub const DELIBERATE_PANIC: &str = "deliberate handler panic (test)";

/// Silences the panic message of handlers that panic on purpose; every other panic still
/// reaches the previous hook.
pub fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|s| *s == DELIBERATE_PANIC);
            if !ours {
                previous(info);
            }
        }));
    });
}
