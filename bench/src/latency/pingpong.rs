//! Ping-pong round trip: A (core 1) publishes a ping, B's handler (core 0) answers on a
//! second bus or ring, A waits for the answer and records the round trip on the TSC.
//!
//! - dreamnet-bus: the ping bus runs one pinned worker on core 0 with
//!   `WaitStrategy::Spin`; its handler publishes the pong with `try_publish_with` on a
//!   second bus in `RunMode::Poll`, whose shard A polls itself while it waits. Two
//!   threads in all, one per core, as in the disruptor setup.
//! - disruptor 4.4: the ping ring's consumer (BusySpin, pinned to core 0) publishes into
//!   the pong ring, which A reads with an `EventPoller`.
//!
//! Round trips run back to back (the next ping leaves when the pong is in), so each
//! measures an idle pipeline: the floor, not queueing.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use disruptor::{BusySpin, Polling, ProcessorSettings as _, Producer as _};
use dreamnet_bus::{Bus, Draft, EventType, Filter, Outcome, PublishError, WaitStrategy};

use super::oneway::{Peer, CAPACITY};
use super::{consumer_core, on_producer_core, Recorded, Stamp, Tsc};

/// A round trip that takes longer than this is reported as lost (the run stops with an
/// error instead of spinning forever).
const LOST_AFTER: Duration = Duration::from_secs(1);

/// Back-to-back round trips for `warmup`, then `measure` recorded.
pub fn round_trips(
    peer: Peer,
    tsc: &Tsc,
    warmup: Duration,
    measure: Duration,
) -> Result<Recorded, Box<dyn Error>> {
    match peer {
        Peer::Ours => ours(tsc, warmup, measure),
        Peer::Disruptor => disruptor(tsc, warmup, measure),
    }
}

/// A's loop: `trip(seq, measured)` sends ping `seq` and returns once its pong is in
/// (false: lost). The main thread sleeps in `join` meanwhile.
fn pinger(
    tsc: &Tsc,
    warmup: Duration,
    measure: Duration,
    mut trip: impl FnMut(u64, bool) -> bool,
) -> Result<Recorded, String> {
    let mut rec = Recorded::empty();
    let start = tsc.now();
    let from = start + tsc.ticks(warmup.as_nanos() as f64);
    let until = from + tsc.ticks(measure.as_nanos() as f64);
    let mut seq = 0u64;
    loop {
        let t0 = tsc.now();
        if t0 >= until {
            return Ok(rec);
        }
        let measured = t0 >= from;
        if !trip(seq, measured) {
            return Err(format!("ping {seq} got no pong within {LOST_AFTER:?}"));
        }
        let t1 = tsc.now();
        rec.seen += 1;
        if measured {
            rec.hist.saturating_record(tsc.nanos(t0, t1));
        }
        seq += 1;
    }
}

/// Spins on `arrived` until it says yes; false once [`LOST_AFTER`] has passed (the clock
/// is read every 256 spins so the wait loop stays tight).
#[inline]
fn wait_for(tsc: &Tsc, lost_after: u64, mut arrived: impl FnMut() -> bool) -> bool {
    let give_up = tsc.now() + lost_after;
    let mut spins = 0u32;
    while !arrived() {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && tsc.now() > give_up {
            return false;
        }
        std::hint::spin_loop();
    }
    true
}

fn ours(tsc: &Tsc, warmup: Duration, measure: Duration) -> Result<Recorded, Box<dyn Error>> {
    let ping_bus = Bus::builder()
        .pinned(true)
        .wait_strategy(WaitStrategy::Spin)
        .ring_capacity_all(CAPACITY)
        .build()?;
    let (pong_bus, mut shards) = Bus::builder().ring_capacity_all(CAPACITY).build_polled()?;
    let a = ping_bus.register_agent("pinger")?;
    let b = pong_bus.register_agent("ponger")?;
    let mut answer = pong_bus.publisher(b)?;
    let pong = Draft::new(EventType::AGENT_RESPONSE);
    ping_bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |d| {
        let Ok(s) = d.payload::<Stamp>() else {
            return Outcome::fail(1);
        };
        let back = Stamp {
            tsc: s.tsc.to_native(),
            measured: s.measured,
        };
        loop {
            match answer.try_publish_with(pong, &back) {
                Ok(_) => return Outcome::Done,
                Err(PublishError::Full(())) => std::hint::spin_loop(),
                Err(_) => return Outcome::fail(2),
            }
        }
    })?;
    let last = Arc::new(AtomicU64::new(u64::MAX));
    let seen = Arc::clone(&last);
    pong_bus.subscribe(Filter::of_type(EventType::AGENT_RESPONSE), move |d| {
        if let Ok(s) = d.payload::<Stamp>() {
            seen.store(s.tsc.to_native(), Ordering::Relaxed);
        }
        Outcome::Done
    })?;
    let mut ping = ping_bus.publisher(a)?;
    let tsc = tsc.clone();
    let lost_after = tsc.ticks(LOST_AFTER.as_nanos() as f64);
    let a_thread = on_producer_core(
        "pinger",
        || (),
        move |()| {
            let draft = Draft::new(EventType::AGENT_TASK);
            pinger(&tsc, warmup, measure, |seq, measured| {
                loop {
                    match ping.try_publish_with(draft, &Stamp { tsc: seq, measured }) {
                        Ok(_) => break,
                        Err(PublishError::Full(())) => std::hint::spin_loop(),
                        Err(_) => return false,
                    }
                }
                wait_for(&tsc, lost_after, || {
                    for shard in &mut shards {
                        shard.poll(16);
                    }
                    last.load(Ordering::Relaxed) == seq
                })
            })
        },
    )?;
    let rec = a_thread.join().map_err(|_| "the pinger panicked")?;
    ping_bus.close();
    pong_bus.close();
    Ok(rec?)
}

fn disruptor(tsc: &Tsc, warmup: Duration, measure: Duration) -> Result<Recorded, Box<dyn Error>> {
    let tsc = tsc.clone();
    let lost_after = tsc.ticks(LOST_AFTER.as_nanos() as f64);
    let consumer = consumer_core()?;
    let setup = move || {
        let (poller, pong_ring) =
            disruptor::build_single_producer(CAPACITY, Stamp::default, BusySpin).new_event_poller();
        let mut answer = pong_ring.build();
        // B: the ping ring's consumer answers by copying the ping into the pong ring.
        let ping = disruptor::build_single_producer(CAPACITY, Stamp::default, BusySpin)
            .pin_at_core(consumer)
            .handle_events_with(move |s: &Stamp, _seq, _end| answer.publish(|a| *a = *s))
            .build();
        (poller, ping)
    };
    let a_thread = on_producer_core("pinger", setup, move |(mut poller, mut ping)| {
        let mut last = u64::MAX;
        let rec = pinger(&tsc, warmup, measure, |seq, measured| {
            ping.publish(|s| {
                s.tsc = seq;
                s.measured = measured;
            });
            wait_for(&tsc, lost_after, || {
                match poller.poll() {
                    Ok(mut events) => {
                        for e in &mut events {
                            last = e.tsc;
                        }
                    }
                    Err(Polling::NoEvents) => {}
                    Err(Polling::Shutdown) => return true,
                }
                last == seq
            }) && last == seq
        });
        // Joins B, which drops the pong ring's producer.
        drop(ping);
        rec
    })?;
    Ok(a_thread.join().map_err(|_| "the pinger panicked")??)
}
