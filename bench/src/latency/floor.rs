//! The floor under the one-way numbers, measured in the same run: the stamp handed from
//! the producer's core to the consumer's through one cache line (a one-slot mailbox: an
//! atomic the producer fills when it is empty and the consumer empties), with the same
//! pacing, stamps and recorder as the buses. No ring, no routing, no handler call: what
//! the two cores and the scheduler give anything at this moment, so a bus's figure can be
//! read against it (on a busy machine the floor moves too).
//!
//! Read its median, not its tail: the one slot holds the producer back while the
//! consumer is descheduled, and the producer stamps at send, so a consumer stall delays
//! one stamp instead of a queue of them. A ring keeps accepting during the stall and every
//! queued event carries it; that is why, on a busy machine, the buses' p90 and above sit
//! in milliseconds while the floor's stay near 100 ns.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::{consumer_core, on_producer_core, produce, Produced, Recorded, Recorder, Tsc};

/// The mailbox is empty.
const EMPTY: u64 = 0;
/// The producer is done: the consumer stops.
const STOP: u64 = u64::MAX;

/// Name for the table.
pub const NAME: &str = "cache-line handoff (floor)";

/// One paced run through the one-slot mailbox; as [`super::oneway::one_way`].
pub fn one_way(
    tsc: &Tsc,
    warmup: Duration,
    measure: Duration,
    rate: Option<f64>,
) -> Result<(Produced, Recorded), Box<dyn Error>> {
    let slot = Arc::new(CachePadded::new(AtomicU64::new(EMPTY)));
    let (tx, rx) = mpsc::channel();
    let mut recorder = Recorder::new(tsc.clone(), tx);
    let consumer_at = core_affinity::CoreId {
        id: consumer_core()?,
    };
    let inbox = Arc::clone(&slot);
    let consumer = std::thread::Builder::new()
        .name("floor-consumer".into())
        .spawn(move || {
            core_affinity::set_for_current(consumer_at);
            loop {
                let v = inbox.load(Ordering::Acquire);
                if v == STOP {
                    break;
                }
                if v != EMPTY {
                    // The low bit carries `measured`; the stamp loses one tick.
                    recorder.record(v & !1, v & 1 == 1);
                    inbox.store(EMPTY, Ordering::Release);
                }
                std::hint::spin_loop();
            }
        })?;
    let tsc = tsc.clone();
    let outbox = Arc::clone(&slot);
    let producer = on_producer_core(
        "floor-producer",
        || (),
        move |()| {
            let put = |v: u64| {
                while outbox.load(Ordering::Acquire) != EMPTY {
                    std::hint::spin_loop();
                }
                outbox.store(v, Ordering::Release);
            };
            let produced = produce(&tsc, warmup, measure, rate, |stamp, measured| {
                // Never EMPTY or STOP: a raw TSC is neither 0 nor all ones.
                put((stamp & !1) | u64::from(measured));
            });
            put(STOP);
            produced
        },
    )?;
    let produced = producer.join().map_err(|_| "the floor producer panicked")?;
    consumer.join().map_err(|_| "the floor consumer panicked")?;
    let rec = rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| "the floor consumer never reported")?;
    if rec.seen != produced.sent {
        return Err(format!(
            "floor: the consumer saw {} stamps of {} sent",
            rec.seen, produced.sent
        )
        .into());
    }
    Ok((produced, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stamp_crosses_once_and_the_window_is_recorded() {
        if super::super::cores().is_err() {
            eprintln!("skipped: needs two cores to pin to");
            return;
        }
        let tsc = Tsc::new();
        let (p, rec) = one_way(
            &tsc,
            Duration::from_millis(10),
            Duration::from_millis(30),
            Some(10_000.0),
        )
        .expect("floor run");
        assert_eq!(rec.seen, p.sent);
        assert_eq!(rec.hist.len(), p.measured);
        assert!((299..=301).contains(&p.measured), "{p:?}");
        assert!(rec.hist.min() > 0 || rec.skewed > 0, "latency is positive");
    }
}
