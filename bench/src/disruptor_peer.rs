//! The disruptor (crate `disruptor` 4.4) as loadgen's peer, written the way a disruptor
//! user writes it: one producer thread publishing in place into a pre-allocated ring, one
//! consumer thread (`BusySpin`) whose handler is a plain closure over the slot. No routing,
//! no `HashMap`, no boxed `dyn` call: this is the floor dreamnet-bus is measured against
//! (issue 9), not a like-for-like workload.
//!
//! Two variants (both in `--compare`):
//! - [`Variant::Word`]: the slot is one `u64`; the producer writes it.
//! - [`Variant::Slot256`]: the slot is 256 bytes, cache-line aligned (the size of a
//!   dreamnet-bus event); the producer writes all of it.
//!
//! Closed loop publishes back to back for the window; open loop paces on the bus clock
//! and writes each event's due time into the slot, and the handler records `now - due`
//! (coordinated omission corrected the same way as the workload's producers) for one
//! event in [`SAMPLE_EVERY`]: at the disruptor's rates a clock read per event would cost
//! as much as the event.

use std::error::Error;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use disruptor::{BusySpin, ProcessorSettings as _, Producer as _};
use dreamnet_bus::Clock;
use hdrhistogram::Histogram;

use crate::workload::{self, Mode, Options, Window};

/// Slots in the ring (the bus's default normal-priority ring is 4096 too).
pub const CAPACITY: usize = 4096;

/// What the producer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One `u64` per slot.
    Word,
    /// A whole 256-byte slot.
    Slot256,
}

impl Variant {
    /// Name for reports.
    pub fn label(self) -> &'static str {
        match self {
            Variant::Word => "disruptor (u64 slot)",
            Variant::Slot256 => "disruptor (256 B slot)",
        }
    }
}

/// The 256-byte slot: the due time (open loop) or sequence number, and filler the
/// producer writes in full.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy)]
pub struct Slot256 {
    /// Open loop: when the event was due, bus clock ns; closed loop: its sequence number.
    pub stamp: u64,
    /// Filler (every byte written by the producer).
    pub body: [u8; 248],
}

const _: () = assert!(std::mem::size_of::<Slot256>() == 256);

impl Default for Slot256 {
    fn default() -> Self {
        Slot256 {
            stamp: 0,
            body: [0; 248],
        }
    }
}

/// One run of the peer.
#[derive(Debug)]
pub struct PeerRun {
    /// Which variant.
    pub label: &'static str,
    /// Events handled per second in the window (published = handled: one handler).
    pub per_s: f64,
    /// Events published in the window.
    pub events: u64,
    /// Open loop: the rate asked for, events/s.
    pub rate: Option<f64>,
    /// Open loop: latency from due time to handler, nanoseconds (window only).
    pub latency: Option<Histogram<u64>>,
}

/// Open loop: the handler times one event in this many (every event is still read).
pub const SAMPLE_EVERY: u64 = 8;

/// What the consumer's handler owns: counts and (open loop) the latency histogram,
/// preallocated; handed back when the disruptor drops the handler at shutdown.
struct Sampler {
    clock: Clock,
    window: Arc<Window>,
    open: bool,
    hist: Histogram<u64>,
    seen: u64,
    checksum: u64,
    out: mpsc::Sender<(Histogram<u64>, u64)>,
}

impl Sampler {
    #[inline]
    fn observe(&mut self, stamp: u64, last_byte: u8) {
        self.seen += 1;
        self.checksum = self.checksum.wrapping_add(stamp ^ u64::from(last_byte));
        // A clock read costs about what a whole event costs here: time one event in
        // SAMPLE_EVERY, so measuring does not halve the throughput it measures.
        if self.open && self.seen.is_multiple_of(SAMPLE_EVERY) && self.window.contains(stamp) {
            let now = self.clock.now_ns();
            self.hist.saturating_record(now.saturating_sub(stamp));
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        std::hint::black_box(self.checksum);
        let hist = std::mem::replace(
            &mut self.hist,
            Histogram::new(1).expect("1 significant digit is valid"),
        );
        // The run may have given up waiting; nobody to tell then.
        let _ = self.out.send((hist, self.seen));
    }
}

/// Runs the peer for `opts.warmup` + `opts.duration` in `opts.mode` (pinned: consumer on
/// the first core, producer on the second). The main thread sleeps in `join` meanwhile.
pub fn run(opts: &Options, variant: Variant) -> Result<PeerRun, Box<dyn Error>> {
    let clock = Clock::default();
    let window = Arc::new(Window::default());
    let (tx, rx) = mpsc::channel();
    let sampler = Sampler {
        clock: clock.clone(),
        window: Arc::clone(&window),
        open: matches!(opts.mode, Mode::Open { .. }),
        hist: workload::new_histogram(),
        seen: 0,
        checksum: 0,
        out: tx,
    };
    let cores = workload::cores(opts.pin);
    let consumer = cores.first().map(|c| c.id);
    let producer_core = cores.get(1 % cores.len().max(1)).copied();
    let plan = Plan::new(opts, &clock);
    window.open(plan.from);
    window.close(plan.until);
    let handle = std::thread::Builder::new()
        .name(format!("{}-producer", variant.label()))
        .spawn(move || match variant {
            Variant::Word => word(sampler, consumer, producer_core, plan, &clock),
            Variant::Slot256 => slot256(sampler, consumer, producer_core, plan, &clock),
        })?;
    let Driven {
        sent,
        in_window,
        window_ns,
    } = handle
        .join()
        .map_err(|_| "the disruptor producer panicked")?;
    let (hist, seen) = rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| format!("{}: the consumer never reported", variant.label()))?;
    if seen != sent {
        return Err(format!(
            "{}: the handler saw {seen} events of {sent} published",
            variant.label()
        )
        .into());
    }
    let secs = window_ns.max(1) as f64 / 1e9;
    Ok(PeerRun {
        label: variant.label(),
        per_s: in_window as f64 / secs,
        events: in_window,
        rate: match opts.mode {
            Mode::Open { rate } => Some(rate),
            Mode::Closed => None,
        },
        latency: matches!(opts.mode, Mode::Open { .. }).then_some(hist),
    })
}

/// The u64 variant, on the producer thread: builds the disruptor (consumer pinned to
/// `consumer`) before pinning this thread, because the disruptor checks the consumer's
/// core against the calling thread's affinity mask; publishes; then drops the producer,
/// which drains and joins the consumer (the sampler reports then).
fn word(
    mut s: Sampler,
    consumer: Option<usize>,
    producer_core: Option<core_affinity::CoreId>,
    plan: Plan,
    clock: &Clock,
) -> Driven {
    let b = disruptor::build_single_producer(CAPACITY, || 0u64, BusySpin);
    let b = match consumer {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let mut p = b
        .handle_events_with(move |v: &u64, _seq, _end| s.observe(*v, 0))
        .build();
    pin(producer_core);
    plan.drive(clock, |stamp| p.publish(|v| *v = stamp))
}

/// The 256-byte variant: as [`word`], the producer writing every byte of the slot and
/// the handler reading both ends.
fn slot256(
    mut s: Sampler,
    consumer: Option<usize>,
    producer_core: Option<core_affinity::CoreId>,
    plan: Plan,
    clock: &Clock,
) -> Driven {
    let b = disruptor::build_single_producer(CAPACITY, Slot256::default, BusySpin);
    let b = match consumer {
        Some(c) => b.pin_at_core(c),
        None => b,
    };
    let mut p = b
        .handle_events_with(move |e: &Slot256, _seq, _end| s.observe(e.stamp, e.body[247]))
        .build();
    pin(producer_core);
    plan.drive(clock, |stamp| {
        p.publish(|e| {
            e.stamp = stamp;
            e.body = [stamp as u8; 248];
        })
    })
}

fn pin(core: Option<core_affinity::CoreId>) {
    if let Some(c) = core {
        core_affinity::set_for_current(c);
    }
}

/// When the producer publishes: from the start through the warm-up, then the window
/// `[from, until)` on the bus clock; open loop every `interval_ns`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: u64,
    from: u64,
    until: u64,
    interval_ns: Option<f64>,
}

impl Plan {
    fn new(opts: &Options, clock: &Clock) -> Self {
        // A little slack for the thread and the consumer to start.
        let start = clock.now_ns() + 2_000_000;
        let from = start + opts.warmup.as_nanos() as u64;
        Plan {
            start,
            from,
            until: from + opts.duration.as_nanos() as u64,
            interval_ns: match opts.mode {
                Mode::Open { rate } => Some(1e9 / rate),
                Mode::Closed => None,
            },
        }
    }

    /// The producer loop: `publish(stamp)` (stamp = due time in open loop, sequence
    /// number in closed loop).
    ///
    /// Closed loop reads the clock once per 256 events (a clock read costs about as much
    /// as a whole event here) and counts the events between the first and the last of
    /// those reads inside the window, over the time between them: a producer stalled
    /// across a window edge (a full ring behind a descheduled consumer) neither inflates
    /// nor zeroes the rate.
    fn drive(&self, clock: &Clock, mut publish: impl FnMut(u64)) -> Driven {
        workload::wait_until(clock, self.start);
        let mut sent = 0u64;
        match self.interval_ns {
            // One clock read, then every event due by then: at tens of millions of events
            // a second a clock read per event would be the producer's whole budget, and a
            // pacer that cannot keep its pace shows up as latency that is not the ring's.
            Some(interval) => {
                let mut in_window = 0;
                loop {
                    let mut due = self.start + (sent as f64 * interval) as u64;
                    if due >= self.until {
                        break;
                    }
                    workload::wait_until(clock, due);
                    let now = clock.now_ns();
                    while due <= now && due < self.until {
                        publish(due);
                        sent += 1;
                        in_window += u64::from(due >= self.from);
                        due = self.start + (sent as f64 * interval) as u64;
                    }
                }
                Driven {
                    sent,
                    in_window,
                    window_ns: self.until - self.from,
                }
            }
            None => {
                // (clock, events sent) at the first and the last read inside the window.
                let mut first: Option<(u64, u64)> = None;
                let mut last = (0, 0);
                loop {
                    let now = clock.now_ns();
                    if now >= self.until {
                        break;
                    }
                    if now >= self.from {
                        first.get_or_insert((now, sent));
                        last = (now, sent);
                    }
                    for _ in 0..256 {
                        publish(sent);
                        sent += 1;
                    }
                }
                let (t0, n0) = first.unwrap_or(last);
                Driven {
                    sent,
                    in_window: last.1 - n0,
                    window_ns: last.0 - t0,
                }
            }
        }
    }
}

/// What the producer loop did.
#[derive(Debug, Clone, Copy)]
struct Driven {
    /// Events published in all.
    sent: u64,
    /// Events counted for the throughput.
    in_window: u64,
    /// The time they were counted over, nanoseconds.
    window_ns: u64,
}
