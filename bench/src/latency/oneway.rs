//! One-way latency: producer (core 1) -> consumer (core 0), a TSC stamp in the event.
//!
//! - dreamnet-bus: one shard, `RunMode::Workers { pin: true }` (shard 0 on core 0),
//!   `WaitStrategy::Spin`, one subscription; the producer publishes with
//!   `try_publish_with` (the [`Stamp`] archived with rkyv straight into the ring slot),
//!   spinning while the ring is full; the handler reads the archived stamp.
//! - disruptor 4.4: single producer, `BusySpin`, the consumer pinned to core 0; the
//!   producer writes the stamp into the slot in its publish closure; the handler reads it.
//!
//! [`saturation`] runs the same pipeline closed loop first, so the paced run's rate is a
//! share of what this machine sustains now, not a constant from another day.

use std::error::Error;
use std::sync::mpsc;
use std::time::Duration;

use disruptor::{BusySpin, ProcessorSettings as _, Producer as _};
use dreamnet_bus::{Bus, Draft, EventType, Filter, Outcome, PublishError, WaitStrategy};

use super::{consumer_core, on_producer_core, produce, Produced, Recorded, Recorder, Stamp, Tsc};

/// Which implementation a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// dreamnet-bus, `try_publish_with`.
    Ours,
    /// disruptor 4.4, BusySpin.
    Disruptor,
}

impl Peer {
    /// Name for the table.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Ours => "dreamnet-bus try_publish_with",
            Peer::Disruptor => "disruptor BusySpin",
        }
    }
}

/// Slots in the ring of either implementation.
pub const CAPACITY: usize = 4096;

/// Closed loop for `run`: events per second the pipeline sustains.
pub fn saturation(peer: Peer, tsc: &Tsc, run: Duration) -> Result<f64, Box<dyn Error>> {
    let (produced, _) = one_way(peer, tsc, Duration::from_millis(100), run, None)?;
    Ok(produced.rate())
}

/// One paced run (`rate: None`: back to back): what the producer did and the consumer's
/// latencies for the measured window.
pub fn one_way(
    peer: Peer,
    tsc: &Tsc,
    warmup: Duration,
    measure: Duration,
    rate: Option<f64>,
) -> Result<(Produced, Recorded), Box<dyn Error>> {
    let (tx, rx) = mpsc::channel();
    let recorder = Recorder::new(tsc.clone(), tx);
    let produced = match peer {
        Peer::Ours => ours(tsc, recorder, warmup, measure, rate)?,
        Peer::Disruptor => disruptor(tsc, recorder, warmup, measure, rate)?,
    };
    let rec = rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| format!("{}: the consumer never reported", peer.name()))?;
    if rec.seen != produced.sent {
        return Err(format!(
            "{}: the consumer saw {} events of {} sent",
            peer.name(),
            rec.seen,
            produced.sent
        )
        .into());
    }
    Ok((produced, rec))
}

fn ours(
    tsc: &Tsc,
    mut recorder: Recorder,
    warmup: Duration,
    measure: Duration,
    rate: Option<f64>,
) -> Result<Produced, Box<dyn Error>> {
    let bus = Bus::builder()
        .pinned(true)
        .wait_strategy(WaitStrategy::Spin)
        .ring_capacity_all(CAPACITY)
        .build()?;
    let agent = bus.register_agent("latency-producer")?;
    bus.subscribe(
        Filter::of_type(EventType::AGENT_TASK),
        move |d| match d.payload::<Stamp>() {
            Ok(s) => {
                recorder.record(s.tsc.to_native(), s.measured);
                Outcome::Done
            }
            Err(_) => Outcome::fail(1),
        },
    )?;
    let mut publisher = bus.publisher(agent)?;
    let tsc = tsc.clone();
    let producer = on_producer_core(
        "latency-producer",
        || (),
        move |()| {
            let draft = Draft::new(EventType::AGENT_TASK);
            produce(&tsc, warmup, measure, rate, |stamp, measured| loop {
                match publisher.try_publish_with(
                    draft,
                    &Stamp {
                        tsc: stamp,
                        measured,
                    },
                ) {
                    Ok(_) => break,
                    Err(PublishError::Full(())) => std::hint::spin_loop(),
                    Err(e) => panic!("publish refused: {e}"),
                }
            })
        },
    )?;
    // The main thread sleeps in `join` for the whole run.
    let produced = producer.join().map_err(|_| "the producer panicked")?;
    // Drains, stops the worker, drops the handler: the recorder reports.
    bus.close();
    Ok(produced)
}

fn disruptor(
    tsc: &Tsc,
    mut recorder: Recorder,
    warmup: Duration,
    measure: Duration,
    rate: Option<f64>,
) -> Result<Produced, Box<dyn Error>> {
    let tsc = tsc.clone();
    let consumer = consumer_core()?;
    let setup = move || {
        // What a disruptor user writes: the stamp in the slot, read in the handler.
        disruptor::build_single_producer(CAPACITY, Stamp::default, BusySpin)
            .pin_at_core(consumer)
            .handle_events_with(move |s: &Stamp, _seq, _end| recorder.record(s.tsc, s.measured))
            .build()
    };
    let producer = on_producer_core("latency-producer", setup, move |mut producer| {
        let produced = produce(&tsc, warmup, measure, rate, |stamp, measured| {
            producer.publish(|s| {
                s.tsc = stamp;
                s.measured = measured;
            });
        });
        // Dropping the producer drains and joins the consumer (and drops the recorder).
        drop(producer);
        produced
    })?;
    Ok(producer.join().map_err(|_| "the producer panicked")?)
}
