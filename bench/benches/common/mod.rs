//! Shared pieces of the criterion benches: the 256-byte slot the peers carry, the
//! "channel bus" dispatch table a user would write, the per-event work every handler does
//! (the same for dreamnet-bus and every peer), and the timing loop.
//!
//! Timing: every end-to-end bench is an `iter_custom` over a pipeline that lives for the
//! whole bench function (threads started once, not per sample). One iteration is one event:
//! the clock runs from the first publish until the consumer has handled the last event of
//! the sample, so criterion's "time per iteration" is the cost of one event at saturation
//! and its throughput line is events per second.
//!
//! Waiting: nobody sleeps on the hot path. Peers with a non-blocking API are driven with
//! `try_*` in a loop that spins and yields every 64th step ([`relax`]), dreamnet-bus is
//! built with `WaitStrategy::Yield` (spin 64 steps, then yield), disruptor uses `BusySpin`
//! as its docs recommend for latency. Yielding matters on a shared 2-core machine: a pure
//! spinner that waits for a descheduled peer burns the slice the peer needs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use crossbeam_utils::CachePadded;

/// Slots in every ring and channel (the bus's default normal-priority ring is 4096 too).
pub const CAPACITY: usize = 4096;

/// Event types each consumer has a subscription for; events are published as type 0, so
/// exactly one handler runs per event everywhere.
pub const SUBSCRIBED_TYPES: u16 = 4;

/// Criterion settings for the whole suite: short, so every bench file runs in a couple of
/// minutes on a 2-core machine.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .noise_threshold(0.05)
        .without_plots()
}

/// A 256-byte, cache-line-aligned event: what the peers carry. The same size and alignment
/// as `dreamnet_bus::Event` (256 B, align 64).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Event type (the dispatch key).
    pub ty: u16,
    pub header: [u8; 6],
    /// The payload field every handler reads.
    pub seq: u64,
    pub body: [u8; 240],
}

const _: () = assert!(core::mem::size_of::<Slot>() == 256);
const _: () = assert!(core::mem::size_of::<Slot>() == core::mem::size_of::<dreamnet_bus::Event>());

impl Slot {
    /// A slot with every byte written.
    #[inline]
    pub fn new(ty: u16, seq: u64) -> Self {
        Slot {
            ty,
            header: [0; 6],
            seq,
            body: [seq as u8; 240],
        }
    }

    /// Writes every byte of an existing slot (the in-place variants).
    #[inline]
    pub fn fill(&mut self, ty: u16, seq: u64) {
        self.ty = ty;
        self.header = [0; 6];
        self.seq = seq;
        self.body = [seq as u8; 240];
    }
}

/// The dreamnet-bus payload: the field handlers read, and filler so the archive is 64 bytes.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct Task {
    pub seq: u64,
    pub body: [u8; 56],
}

impl Task {
    pub fn new(seq: u64) -> Self {
        Task {
            seq,
            body: [seq as u8; 56],
        }
    }
}

/// How far the consumer got: written by the consumer after each event, read by the timing
/// loop. On its own cache line.
pub type Done = Arc<CachePadded<AtomicU64>>;

pub fn done() -> Done {
    Arc::new(CachePadded::new(AtomicU64::new(0)))
}

/// The handler work, identical for every implementation: read the payload field, add it to
/// a checksum, count, and publish the count for the timing loop.
pub struct Probe {
    done: Done,
    count: u64,
    sum: u64,
}

impl Probe {
    pub fn new(done: &Done) -> Self {
        Probe {
            done: Arc::clone(done),
            count: done.load(Ordering::Relaxed),
            sum: 0,
        }
    }

    #[inline]
    pub fn observe(&mut self, seq: u64) {
        self.sum = self.sum.wrapping_add(seq);
        self.count += 1;
        self.done.store(self.count, Ordering::Release);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        std::hint::black_box(self.sum);
    }
}

/// The per-event handler type of the channel-bus baselines.
pub type Handler = Box<dyn FnMut(&Slot) + Send>;

/// The dispatch a user would write: `HashMap<type, Vec<handler>>`, looked up per event.
pub struct Dispatch {
    map: HashMap<u16, Vec<Handler>>,
}

impl Dispatch {
    /// [`SUBSCRIBED_TYPES`] subscriptions, one per type; type 0's handler feeds `done`.
    pub fn new(done: &Done) -> Self {
        let mut map: HashMap<u16, Vec<Handler>> = HashMap::new();
        let mut probe = Probe::new(done);
        map.entry(0)
            .or_default()
            .push(Box::new(move |ev: &Slot| probe.observe(ev.seq)));
        for ty in 1..SUBSCRIBED_TYPES {
            let mut other = 0u64;
            map.entry(ty).or_default().push(Box::new(move |ev: &Slot| {
                other = std::hint::black_box(other.wrapping_add(ev.seq));
            }));
        }
        Dispatch { map }
    }

    #[inline]
    pub fn dispatch(&mut self, ev: &Slot) {
        if let Some(handlers) = self.map.get_mut(&ev.ty) {
            for h in handlers {
                h(ev);
            }
        }
    }
}

/// Waits (spinning) until `done` reaches `target`.
#[inline]
pub fn wait_for(done: &AtomicU64, target: u64) {
    while done.load(Ordering::Acquire) < target {
        relax();
    }
}

/// One step of waiting for the other side: a spin-loop hint, and every 64th call a
/// `yield_now`, so a waiting thread gives its core away when the machine is oversubscribed
/// (2 cores shared with other work) instead of burning its time slice. Never sleeps. The
/// same discipline as dreamnet-bus's `WaitStrategy::Yield` (64 spins, then yields).
#[inline]
pub fn relax() {
    thread_local! {
        static STEPS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }
    let step = STEPS.with(|s| {
        let n = s.get().wrapping_add(1);
        s.set(n);
        n
    });
    if step & 63 == 0 {
        std::thread::yield_now();
    } else {
        core::hint::spin_loop();
    }
}

/// The timing loop of every pipeline: publishes `n` events with `publish(seq)` (seq counts
/// on from the previous sample), then waits until the consumer has handled all of them.
pub fn timed(n: u64, next: &mut u64, done: &AtomicU64, mut publish: impl FnMut(u64)) -> Duration {
    let first = *next;
    let start = Instant::now();
    for seq in first..first + n {
        publish(seq);
    }
    wait_for(done, first + n);
    let elapsed = start.elapsed();
    *next = first + n;
    elapsed
}

/// Like [`timed`], for producers that publish `batch` events at a time: `publish(k)`
/// publishes the next `k` (keeping its own sequence numbers, which continue from `*next`).
pub fn timed_batches(
    n: u64,
    next: &mut u64,
    done: &AtomicU64,
    batch: usize,
    mut publish: impl FnMut(usize),
) -> Duration {
    let first = *next;
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(batch as u64);
        publish(k as usize);
        left -= k;
    }
    wait_for(done, first + n);
    let elapsed = start.elapsed();
    *next = first + n;
    elapsed
}

/// disruptor's consumer wait with the same spin-then-yield discipline as everyone else
/// ([`relax`]); the benches also run disruptor with its own `BusySpin`.
#[derive(Clone, Copy)]
pub struct SpinYield;

impl disruptor::wait_strategies::WaitStrategy for SpinYield {
    #[inline]
    fn wait_for(&self, _sequence: disruptor::Sequence) {
        relax();
    }
}

/// Runs `f` with the calling thread pinned to core `core`, then restores the thread's
/// previous affinity mask (so later set-up, which asks for the cores it may use, still sees
/// all of them).
pub fn with_pinned<R>(core: usize, f: impl FnOnce() -> R) -> R {
    // SAFETY: `cpu_set_t` is plain data; the calls get/set the calling thread's mask
    // (pid 0) with the correct size.
    let mut saved: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    let size = core::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: as above.
    let have_mask = unsafe { libc::sched_getaffinity(0, size, &mut saved) } == 0;
    pin_current(core);
    let r = f();
    if have_mask {
        // SAFETY: as above.
        unsafe { libc::sched_setaffinity(0, size, &saved) };
    }
    r
}

/// Pins the calling thread to core `i` (modulo the core count); false if it could not.
pub fn pin_current(i: usize) -> bool {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if cores.is_empty() {
        return false;
    }
    core_affinity::set_for_current(cores[i % cores.len()])
}

/// dreamnet-bus as the hot-path benches run it: one shard on a worker pinned to core 0,
/// spinning when idle (`WaitStrategy::Spin`, as the disruptor's `BusySpin`), rings of
/// [`CAPACITY`].
pub fn spinning_bus() -> dreamnet_bus::Bus {
    spinning_builder().build().expect("bus")
}

/// The builder of [`spinning_bus`], for a variant (e.g. with analytics on).
pub fn spinning_builder() -> dreamnet_bus::BusBuilder {
    dreamnet_bus::Bus::builder()
        .pinned(true)
        .wait_strategy(dreamnet_bus::WaitStrategy::Spin)
        .ring_capacity_all(CAPACITY)
}
