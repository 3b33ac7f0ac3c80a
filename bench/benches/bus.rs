//! The hot path end to end, publish -> route -> handler, against what each peer's own users
//! would write for the same job. One producer (the bench thread, pinned to core 1), one
//! consumer (pinned to core 0), 256-byte slots, and a handler that reads a `u64` from the
//! event (the payload's `seq`), adds it to a checksum and counts ([`common::Probe`]).
//!
//! Groups (criterion's throughput line is events per second; ratios are read across one
//! group of one run, since the machine is shared and noisy):
//! - `single`: one event per publish call.
//!   - `dreamnet-bus/try_publish_with`: the payload (a 64-byte rkyv archive) is written in
//!     place in the ring slot; `dreamnet-bus/try_publish`: an `Event` built on the stack
//!     with `with_payload`, then copied into the slot. One shard in worker mode
//!     (`WaitStrategy::Spin`, pinned), [`SUBSCRIBED_TYPES`] subscriptions, one per type:
//!     exactly one handler runs per event. A full ring is retried in a spin loop.
//!   - `disruptor/u64`: disruptor 4.4, `BusySpin`, single producer; the producer writes one
//!     `u64` into the preallocated slot (the minimal disruptor). `disruptor/slot`: the
//!     producer writes the whole 256-byte slot (the same bytes we move). The handler is a
//!     plain closure reading the field: no lookup, no dynamic call (what its users write).
//!   - `crossbeam-channel/boxed`, `flume/boxed`: a bounded channel of `Box<Slot>` with
//!     blocking `send` / `recv`, the plainest channel bus a Rust user writes.
//! - `batch64`: 64 events per publish call. `dreamnet-bus/try_publish_batch_with` (64
//!   payloads written in place, one claim and one commit per ring),
//!   `dreamnet-bus/try_publish_batch` (64 built events copied in), against
//!   `disruptor/u64/batch_publish` (the minimal disruptor's own batch API).

mod common;

use std::thread::JoinHandle;
use std::time::Duration;

use common::{done, timed, timed_batches, Done, Probe, Slot, Task, CAPACITY, SUBSCRIBED_TYPES};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use disruptor::{BusySpin, ProcessorSettings as _, Producer as _};
use dreamnet_bus::{Bus, Draft, Event, EventType, Filter, Outcome, PublishError, Publisher};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Events per batch in the `batch64` group.
const BATCH: usize = 64;
/// The consumer's core and the producer's (the bench thread's).
const CONSUMER_CORE: usize = 0;
const PRODUCER_CORE: usize = 1;

/// Runs one bench with the bench thread (the producer) pinned.
fn bench(g: &mut Group<'_>, name: &str, mut run: impl FnMut(u64, &mut u64) -> Duration) {
    let mut next = 0u64;
    common::with_pinned(PRODUCER_CORE, || {
        g.bench_function(name, |b| b.iter_custom(|iters| run(iters, &mut next)));
    });
}

/// A consumer thread; joined when dropped (after the sending side is gone).
struct Joined(Option<JoinHandle<()>>);

impl Drop for Joined {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.join().expect("consumer thread panicked");
        }
    }
}

fn spawn_pinned_consumer(body: impl FnOnce() + Send + 'static) -> Joined {
    Joined(Some(std::thread::spawn(move || {
        common::pin_current(CONSUMER_CORE);
        body()
    })))
}

/// A bus with one pinned, spinning shard and one subscription per type; type
/// `AGENT_TASK`'s handler feeds `d`.
fn dreamnet_bus(d: &Done) -> (Bus, Publisher) {
    let bus = common::spinning_bus();
    let agent = bus.register_agent("bench-producer").expect("agent");
    let mut probe = Probe::new(d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        let seq = dl.payload::<Task>().map_or(u64::MAX, |t| t.seq.to_native());
        probe.observe(seq);
        Outcome::Done
    })
    .expect("subscribe");
    let others = [
        EventType::AGENT_RESPONSE,
        EventType::AGENT_CAPABILITY,
        EventType::AGENT_STATUS,
    ];
    for ty in others.into_iter().take(usize::from(SUBSCRIBED_TYPES) - 1) {
        let mut other = 0u64;
        bus.subscribe(Filter::of_type(ty), move |dl| {
            let seq = dl.payload::<Task>().map_or(0, |t| t.seq.to_native());
            other = std::hint::black_box(other.wrapping_add(seq));
            Outcome::Done
        })
        .expect("subscribe");
    }
    let publisher = bus.publisher(agent).expect("publisher");
    (bus, publisher)
}

fn finish(bus: Bus, publisher: Publisher) {
    drop(publisher);
    bus.close();
    assert_eq!(bus.stats().unroutable, 0);
}

fn dreamnet_single(g: &mut Group<'_>, in_place: bool) {
    let d = done();
    let (bus, mut publisher) = dreamnet_bus(&d);
    let draft = Draft::new(EventType::AGENT_TASK);
    let name = if in_place {
        "dreamnet-bus/try_publish_with"
    } else {
        "dreamnet-bus/try_publish"
    };
    bench(g, name, |n, next| {
        timed(n, next, &d, |seq| {
            let task = Task::new(seq);
            if in_place {
                loop {
                    match publisher.try_publish_with(draft, &task) {
                        Ok(_) => break,
                        Err(PublishError::Full(())) => core::hint::spin_loop(),
                        Err(e) => panic!("publish: {e}"),
                    }
                }
            } else {
                let mut event = Event::new(EventType::AGENT_TASK)
                    .with_payload(&task)
                    .expect("payload fits");
                loop {
                    match publisher.try_publish(event) {
                        Ok(_) => break,
                        Err(PublishError::Full(back)) => {
                            event = back;
                            core::hint::spin_loop();
                        }
                        Err(e) => panic!("publish: {e}"),
                    }
                }
            }
        })
    });
    finish(bus, publisher);
}

fn dreamnet_batch(g: &mut Group<'_>, in_place: bool) {
    let d = done();
    let (bus, mut publisher) = dreamnet_bus(&d);
    let draft = Draft::new(EventType::AGENT_TASK);
    let name = if in_place {
        "dreamnet-bus/try_publish_batch_with"
    } else {
        "dreamnet-bus/try_publish_batch"
    };
    let mut tasks: Vec<Task> = (0..BATCH as u64).map(Task::new).collect();
    let mut events: Vec<Event> = (0..BATCH)
        .map(|_| Event::new(EventType::AGENT_TASK))
        .collect();
    let mut seq = 0u64;
    bench(g, name, |n, next| {
        timed_batches(n, next, &d, BATCH, |k| {
            for i in 0..k {
                let task = Task::new(seq + i as u64);
                if in_place {
                    tasks[i] = task;
                } else {
                    events[i].set_payload(&task).expect("payload fits");
                }
            }
            let mut sent = 0;
            while sent < k {
                let result = if in_place {
                    publisher.try_publish_batch_with(draft, &tasks[sent..k])
                } else {
                    publisher.try_publish_batch(&events[sent..k])
                };
                match result {
                    Ok(receipt) => sent += receipt.count,
                    Err(PublishError::Full(())) => core::hint::spin_loop(),
                    Err(e) => panic!("publish: {e}"),
                }
            }
            seq += k as u64;
        })
    });
    finish(bus, publisher);
}

/// The minimal disruptor, or (`whole_slot`) one whose producer writes the whole slot.
fn disruptor_single(g: &mut Group<'_>, whole_slot: bool) {
    let d = done();
    let mut probe = Probe::new(&d);
    let handler = move |ev: &Slot, _seq: i64, _end: bool| probe.observe(ev.seq);
    let mut producer = disruptor::build_single_producer(CAPACITY, || Slot::new(0, 0), BusySpin)
        .pin_at_core(CONSUMER_CORE)
        .handle_events_with(handler)
        .build();
    let name = if whole_slot {
        "disruptor/slot"
    } else {
        "disruptor/u64"
    };
    bench(g, name, |n, next| {
        timed(n, next, &d, |seq| {
            if whole_slot {
                producer.publish(|ev| ev.fill(0, seq));
            } else {
                producer.publish(|ev| ev.seq = seq);
            }
        })
    });
}

fn disruptor_batch(g: &mut Group<'_>) {
    let d = done();
    let mut probe = Probe::new(&d);
    let handler = move |ev: &Slot, _seq: i64, _end: bool| probe.observe(ev.seq);
    let mut producer = disruptor::build_single_producer(CAPACITY, || Slot::new(0, 0), BusySpin)
        .pin_at_core(CONSUMER_CORE)
        .handle_events_with(handler)
        .build();
    let mut seq = 0u64;
    bench(g, "disruptor/u64/batch_publish", |n, next| {
        timed_batches(n, next, &d, BATCH, |k| {
            producer.batch_publish(k, |iter| {
                for ev in iter {
                    ev.seq = seq;
                    seq += 1;
                }
            });
        })
    });
}

fn crossbeam_boxed(g: &mut Group<'_>) {
    let d = done();
    let (tx, rx) = crossbeam_channel::bounded::<Box<Slot>>(CAPACITY);
    let mut probe = Probe::new(&d);
    let _consumer = spawn_pinned_consumer(move || {
        while let Ok(ev) = rx.recv() {
            probe.observe(ev.seq);
        }
    });
    bench(g, "crossbeam-channel/boxed", |n, next| {
        timed(n, next, &d, |seq| {
            tx.send(Box::new(Slot::new(0, seq))).expect("send");
        })
    });
    drop(tx);
}

fn flume_boxed(g: &mut Group<'_>) {
    let d = done();
    let (tx, rx) = flume::bounded::<Box<Slot>>(CAPACITY);
    let mut probe = Probe::new(&d);
    let _consumer = spawn_pinned_consumer(move || {
        while let Ok(ev) = rx.recv() {
            probe.observe(ev.seq);
        }
    });
    bench(g, "flume/boxed", |n, next| {
        timed(n, next, &d, |seq| {
            tx.send(Box::new(Slot::new(0, seq))).expect("send");
        })
    });
    drop(tx);
}

fn single(c: &mut Criterion) {
    let mut g = c.benchmark_group("single");
    g.throughput(Throughput::Elements(1));
    dreamnet_single(&mut g, true);
    dreamnet_single(&mut g, false);
    disruptor_single(&mut g, false);
    disruptor_single(&mut g, true);
    crossbeam_boxed(&mut g);
    flume_boxed(&mut g);
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch64");
    g.throughput(Throughput::Elements(1));
    dreamnet_batch(&mut g, true);
    dreamnet_batch(&mut g, false);
    disruptor_batch(&mut g);
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = single, batch
}
criterion_main!(benches);
