//! End to end, publish -> route -> handler: one producer (the bench thread), one consumer
//! thread, a 256-byte event, [`SUBSCRIBED_TYPES`] subscriptions (one per type, events are
//! all type 0, so exactly one handler runs per event), and the same handler work for every
//! implementation (read the payload's `seq`, add it to a checksum, count).
//!
//! - `dreamnet-bus/publish`: `Publisher::publish` (blocking) of an `Event` built with
//!   `with_payload` (rkyv archive of a 64-byte payload) on one shard in worker mode,
//!   `WaitStrategy::Yield` (64 spins, then `yield_now`; never parks); the handler reads the archived payload (`Delivery::payload`).
//! - `dreamnet-bus/publish_with`: `try_publish_with` (the payload archived straight into the
//!   ring slot), retried in a spin loop while the ring is full.
//! - `crossbeam-channel-bus`, `flume-bus`: bounded channel (4096) of `Box<Slot>`, and a
//!   `HashMap<type, Vec<Box<dyn FnMut(&Slot)>>>` dispatch on the consumer thread; `try_send`
//!   / `try_recv` in spin-then-yield loops (`common::relax`, the same discipline). `crossbeam-channel-bus/blocking` uses `send` / `recv`.
//! - `tokio-broadcast`: `tokio::sync::broadcast` (4096) of `Slot`, the consumer in a
//!   `try_recv` spin loop with the same dispatch; the producer keeps at most 4096 events in
//!   flight (broadcast overwrites instead of waiting), by the consumer's count.
//! - `bus-crate`: the `bus` crate's broadcast (4096) of `Slot`, `try_broadcast` / `try_recv`.
//! - `disruptor`: single producer, slot written in place in the publish closure, the same
//!   `HashMap` dispatch inside its event handler; `busy-spin` with its `BusySpin` consumer
//!   and blocking `publish`, `spin-yield` with a consumer wait strategy and a `try_publish`
//!   loop that spin and yield like everyone else (`common::SpinYield`).
//!
//! The `pinned` group pins the consumer to core 0 and the producer to core 1 (dreamnet-bus
//! with `RunMode::Workers { pin: true }`), the bench thread only while its bench runs.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{
    done, relax, timed, Dispatch, Probe, Slot, SpinYield, Task, CAPACITY, SUBSCRIBED_TYPES,
};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use disruptor::{BusySpin, ProcessorSettings as _, Producer as _};
use dreamnet_bus::{
    Bus, Draft, Event, EventType, Filter, Outcome, PublishError, RunMode, WaitStrategy,
};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Runs one bench; `pinned`: with the bench thread (the producer) pinned to core 1.
fn bench(
    g: &mut Group<'_>,
    name: &str,
    pinned: bool,
    mut run: impl FnMut(u64, &mut u64) -> Duration,
) {
    let mut next = 0u64;
    let mut go = move || {
        g.bench_function(name, |b| b.iter_custom(|iters| run(iters, &mut next)));
    };
    if pinned {
        common::with_pinned(1, go);
    } else {
        go();
    }
}

/// A consumer thread for the channel baselines; joined when the sending side is gone.
struct Joined(Option<JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.join().expect("consumer thread panicked");
        }
    }
}

fn spawn_consumer(pin: Option<usize>, body: impl FnOnce() + Send + 'static) -> Joined {
    Joined(Some(std::thread::spawn(move || {
        if let Some(core) = pin {
            common::pin_current(core);
        }
        body()
    })))
}

/// dreamnet-bus, one shard in worker mode, `WaitStrategy::Yield` (spin 64, then yield).
fn dreamnet(g: &mut Group<'_>, pin: bool, in_place: bool) {
    let d = done();
    let bus = Bus::builder()
        .mode(RunMode::Workers { pin })
        .wait_strategy(WaitStrategy::Yield)
        .ring_capacity_all(CAPACITY)
        .build()
        .expect("bus");
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut probe = Probe::new(&d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        let seq = dl.payload::<Task>().map_or(u64::MAX, |t| t.seq.to_native());
        probe.observe(seq);
        Outcome::Done
    })
    .expect("subscribe");
    for ty in 1..SUBSCRIBED_TYPES {
        let mut other = 0u64;
        let ty = [
            EventType::AGENT_RESPONSE,
            EventType::AGENT_CAPABILITY,
            EventType::AGENT_STATUS,
        ][usize::from(ty) - 1];
        bus.subscribe(Filter::of_type(ty), move |dl| {
            let seq = dl.payload::<Task>().map_or(0, |t| t.seq.to_native());
            other = std::hint::black_box(other.wrapping_add(seq));
            Outcome::Done
        })
        .expect("subscribe");
    }
    let mut publisher = bus.publisher(agent).expect("publisher");
    let name = match (in_place, pin) {
        (false, false) => "dreamnet-bus/publish",
        (true, false) => "dreamnet-bus/publish_with",
        (false, true) => "dreamnet-bus/publish/pinned",
        (true, true) => "dreamnet-bus/publish_with/pinned",
    };
    let draft = Draft::new(EventType::AGENT_TASK);
    bench(g, name, pin, |n, next| {
        if in_place {
            timed(n, next, &d, |seq| {
                let task = Task::new(seq);
                loop {
                    match publisher.try_publish_with(draft, &task) {
                        Ok(_) => break,
                        Err(PublishError::Full(())) => relax(),
                        Err(e) => panic!("publish: {e}"),
                    }
                }
            })
        } else {
            timed(n, next, &d, |seq| {
                let event = Event::new(EventType::AGENT_TASK)
                    .with_payload(&Task::new(seq))
                    .expect("payload fits");
                publisher.publish(event).expect("publish");
            })
        }
    });
    drop(publisher);
    bus.close();
    assert_eq!(bus.stats().unroutable, 0);
}

fn crossbeam_bus(g: &mut Group<'_>, pin: bool, blocking: bool) {
    let d = done();
    let (tx, rx) = crossbeam_channel::bounded::<Box<Slot>>(CAPACITY);
    let mut dispatch = Dispatch::new(&d);
    let _consumer = spawn_consumer(pin.then_some(0), move || {
        if blocking {
            while let Ok(ev) = rx.recv() {
                dispatch.dispatch(&ev);
            }
            return;
        }
        loop {
            match rx.try_recv() {
                Ok(ev) => dispatch.dispatch(&ev),
                Err(crossbeam_channel::TryRecvError::Empty) => relax(),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            }
        }
    });
    let name = match (blocking, pin) {
        (false, false) => "crossbeam-channel-bus",
        (true, false) => "crossbeam-channel-bus/blocking",
        (false, true) => "crossbeam-channel-bus/pinned",
        (true, true) => "crossbeam-channel-bus/blocking/pinned",
    };
    bench(g, name, pin, |n, next| {
        timed(n, next, &d, |seq| {
            let mut ev = Box::new(Slot::new(0, seq));
            if blocking {
                tx.send(ev).expect("send");
                return;
            }
            loop {
                match tx.try_send(ev) {
                    Ok(()) => break,
                    Err(crossbeam_channel::TrySendError::Full(back)) => {
                        ev = back;
                        relax();
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        })
    });
    drop(tx);
}

fn flume_bus(g: &mut Group<'_>) {
    let d = done();
    let (tx, rx) = flume::bounded::<Box<Slot>>(CAPACITY);
    let mut dispatch = Dispatch::new(&d);
    let _consumer = spawn_consumer(None, move || loop {
        match rx.try_recv() {
            Ok(ev) => dispatch.dispatch(&ev),
            Err(flume::TryRecvError::Empty) => relax(),
            Err(flume::TryRecvError::Disconnected) => return,
        }
    });
    bench(g, "flume-bus", false, |n, next| {
        timed(n, next, &d, |seq| {
            let mut ev = Box::new(Slot::new(0, seq));
            loop {
                match tx.try_send(ev) {
                    Ok(()) => break,
                    Err(flume::TrySendError::Full(back)) => {
                        ev = back;
                        relax();
                    }
                    Err(e) => panic!("send: {e}"),
                }
            }
        })
    });
    drop(tx);
}

fn tokio_broadcast(g: &mut Group<'_>) {
    let d = done();
    let (tx, mut rx) = tokio::sync::broadcast::channel::<Slot>(CAPACITY);
    let mut dispatch = Dispatch::new(&d);
    let _consumer = spawn_consumer(None, move || {
        use tokio::sync::broadcast::error::TryRecvError;
        loop {
            match rx.try_recv() {
                Ok(ev) => dispatch.dispatch(&ev),
                Err(TryRecvError::Empty) => relax(),
                Err(TryRecvError::Closed) => return,
                Err(TryRecvError::Lagged(n)) => panic!("lagged by {n}: flow control broken"),
            }
        }
    });
    let credit = Arc::clone(&d);
    bench(g, "tokio-broadcast", false, |n, next| {
        timed(n, next, &d, |seq| {
            // Broadcast never waits (it overwrites the oldest); keep within capacity.
            while seq >= credit.load(Ordering::Acquire) + CAPACITY as u64 {
                relax();
            }
            tx.send(Slot::new(0, seq)).expect("send");
        })
    });
    drop(tx);
}

fn bus_crate(g: &mut Group<'_>) {
    let d = done();
    let mut tx = bus_crate::Bus::<Slot>::new(CAPACITY);
    let mut rx = tx.add_rx();
    let mut dispatch = Dispatch::new(&d);
    let _consumer = spawn_consumer(None, move || loop {
        match rx.try_recv() {
            Ok(ev) => dispatch.dispatch(&ev),
            Err(std::sync::mpsc::TryRecvError::Empty) => relax(),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
        }
    });
    bench(g, "bus-crate", false, |n, next| {
        timed(n, next, &d, |seq| {
            let mut ev = Slot::new(0, seq);
            while let Err(back) = tx.try_broadcast(ev) {
                ev = back;
                relax();
            }
        })
    });
    drop(tx);
}

fn disruptor_bus<W: disruptor::wait_strategies::WaitStrategy + 'static>(
    g: &mut Group<'_>,
    pin: bool,
    wait: W,
    name: &str,
) {
    let d = done();
    let mut dispatch = Dispatch::new(&d);
    let builder = disruptor::build_single_producer(CAPACITY, || Slot::new(0, 0), wait);
    let handler = move |ev: &Slot, _seq: i64, _end: bool| dispatch.dispatch(ev);
    let mut producer = if pin {
        builder.pin_at_core(0).handle_events_with(handler).build()
    } else {
        builder.handle_events_with(handler).build()
    };
    let yielding = name.contains("yield");
    bench(g, name, pin, |n, next| {
        timed(n, next, &d, |seq| {
            if yielding {
                // The same full-ring discipline as the others: try, spin, yield.
                while producer.try_publish(|ev| ev.fill(0, seq)).is_err() {
                    relax();
                }
            } else {
                producer.publish(|ev| ev.fill(0, seq));
            }
        })
    });
    drop(producer);
}

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("bus_end_to_end_256B");
    g.throughput(Throughput::Elements(1));
    dreamnet(&mut g, false, false);
    dreamnet(&mut g, false, true);
    crossbeam_bus(&mut g, false, false);
    crossbeam_bus(&mut g, false, true);
    flume_bus(&mut g);
    tokio_broadcast(&mut g);
    bus_crate(&mut g);
    disruptor_bus(&mut g, false, BusySpin, "disruptor/busy-spin");
    disruptor_bus(&mut g, false, SpinYield, "disruptor/spin-yield");
    g.finish();

    // Pinned: consumer on core 0, the bench thread (producer) on core 1.
    let mut g = c.benchmark_group("bus_end_to_end_256B_pinned");
    g.throughput(Throughput::Elements(1));
    dreamnet(&mut g, true, false);
    dreamnet(&mut g, true, true);
    crossbeam_bus(&mut g, true, false);
    disruptor_bus(&mut g, true, BusySpin, "disruptor/busy-spin/pinned");
    disruptor_bus(&mut g, true, SpinYield, "disruptor/spin-yield/pinned");
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = end_to_end
}
criterion_main!(benches);
