//! Ring level: one producer thread (the bench thread) and one consumer thread, a 256-byte
//! slot, capacity 4096, the consumer reading one field of every slot. rtrb (the ring the
//! bus uses for its publisher -> shard lanes) against crossbeam's `ArrayQueue`, disruptor
//! (single producer, `BusySpin`), crossbeam-channel and flume (bounded).
//!
//! - `copy`: the producer builds the slot on its stack and moves it in; queues that hand
//!   the value out move it out again.
//! - `in-place`: the producer writes all 256 bytes straight into the ring's slot
//!   (rtrb `write_chunk_uninit`, disruptor's publish closure) and the consumer reads it
//!   where it lies (rtrb `read_chunk`, disruptor's handler).
//! - `single` publishes one slot at a time; `batch64` reserves and commits 64 at a time
//!   (rtrb chunks, disruptor `batch_publish`). Consumers take whatever is available.
//!
//! Every side that finds the ring full or empty spins and yields every 64th step
//! (`common::relax`); disruptor's consumer busy-spins (`BusySpin`, its producer spins in
//! `publish`) except in the `spin-yield` row, which waits like everyone else. Nothing parks.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{done, relax, timed, timed_batches, Done, Probe, Slot, SpinYield, CAPACITY};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use disruptor::{BusySpin, Producer as _};

const BATCH: usize = 64;

/// A consumer thread that stops when `stop` is set and the queue reads empty.
struct Consumer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Consumer {
    fn spawn(body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        Consumer {
            stop,
            handle: Some(std::thread::spawn(move || body(flag))),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.join().expect("consumer thread panicked");
        }
    }
}

fn bench(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut run: impl FnMut(u64, &mut u64) -> Duration,
) {
    let mut next = 0u64;
    g.bench_function(name, |b| b.iter_custom(|iters| run(iters, &mut next)));
}

fn rtrb_copy(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let d = done();
    let (mut tx, mut rx) = rtrb::RingBuffer::<Slot>::new(CAPACITY);
    let probe_done = Arc::clone(&d);
    let _consumer = Consumer::spawn(move |stop| {
        let mut probe = Probe::new(&probe_done);
        loop {
            match rx.pop() {
                Ok(slot) => probe.observe(slot.seq),
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(_) => relax(),
            }
        }
    });
    bench(g, "rtrb/copy/single", |n, next| {
        timed(n, next, &d, |seq| {
            let mut slot = std::hint::black_box(Slot::new(0, seq));
            while let Err(rtrb::PushError::Full(back)) = tx.push(slot) {
                slot = back;
                relax();
            }
        })
    });
}

/// Spins until the rtrb consumer sees slots, reads them in place, commits.
fn rtrb_chunk_consumer(mut rx: rtrb::Consumer<Slot>, d: Done) -> impl FnOnce(Arc<AtomicBool>) {
    move |stop| {
        let mut probe = Probe::new(&d);
        loop {
            let n = rx.slots();
            if n == 0 {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                relax();
                continue;
            }
            let Ok(chunk) = rx.read_chunk(n) else {
                continue;
            };
            let (a, b) = chunk.as_slices();
            for slot in a.iter().chain(b) {
                probe.observe(slot.seq);
            }
            chunk.commit_all();
        }
    }
}

fn rtrb_in_place(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>, batch: usize) {
    let d = done();
    let (mut tx, rx) = rtrb::RingBuffer::<Slot>::new(CAPACITY);
    let _consumer = Consumer::spawn(rtrb_chunk_consumer(rx, Arc::clone(&d)));
    let name = if batch == 1 {
        "rtrb/in-place/single".to_string()
    } else {
        format!("rtrb/in-place/batch{batch}")
    };
    bench(g, &name, |n, next| {
        let mut seq = *next;
        timed_batches(n, next, &d, batch, |k| {
            let mut chunk = loop {
                match tx.write_chunk_uninit(k) {
                    Ok(c) => break c,
                    Err(_) => relax(),
                }
            };
            let (a, b) = chunk.as_mut_slices();
            for slot in a.iter_mut().chain(b) {
                slot.write(Slot::new(0, seq));
                seq += 1;
            }
            // SAFETY: every slot of the chunk was written just above.
            unsafe { chunk.commit_all() };
        })
    });
}

fn rtrb_copy_batch(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let d = done();
    let (mut tx, rx) = rtrb::RingBuffer::<Slot>::new(CAPACITY);
    let _consumer = Consumer::spawn(rtrb_chunk_consumer(rx, Arc::clone(&d)));
    let mut staged = vec![Slot::new(0, 0); BATCH];
    bench(g, "rtrb/copy/batch64", |n, next| {
        let mut seq = *next;
        timed_batches(n, next, &d, BATCH, |k| {
            for s in &mut staged[..k] {
                *s = Slot::new(0, seq);
                seq += 1;
            }
            std::hint::black_box(&mut staged);
            let mut rest = &staged[..k];
            while !rest.is_empty() {
                let (_, left) = tx.push_partial_slice(rest);
                rest = left;
                if !rest.is_empty() {
                    relax();
                }
            }
        })
    });
}

fn arrayqueue_copy(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let d = done();
    let q = Arc::new(crossbeam_queue::ArrayQueue::<Slot>::new(CAPACITY));
    let rq = Arc::clone(&q);
    let probe_done = Arc::clone(&d);
    let _consumer = Consumer::spawn(move |stop| {
        let mut probe = Probe::new(&probe_done);
        loop {
            match rq.pop() {
                Some(slot) => probe.observe(slot.seq),
                None if stop.load(Ordering::Acquire) => return,
                None => relax(),
            }
        }
    });
    bench(g, "crossbeam-ArrayQueue/copy/single", |n, next| {
        timed(n, next, &d, |seq| {
            let mut slot = std::hint::black_box(Slot::new(0, seq));
            while let Err(back) = q.push(slot) {
                slot = back;
                relax();
            }
        })
    });
}

fn disruptor_variant<W: disruptor::wait_strategies::WaitStrategy + 'static>(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mode: DisruptorMode,
    wait: W,
) {
    let d = done();
    let mut probe = Probe::new(&d);
    let mut producer = disruptor::build_single_producer(CAPACITY, || Slot::new(0, 0), wait)
        .handle_events_with(move |slot: &Slot, _seq, _end| probe.observe(slot.seq))
        .build();
    bench(g, name, |n, next| match mode {
        DisruptorMode::InPlace => timed(n, next, &d, |seq| {
            producer.publish(|slot| slot.fill(0, seq));
        }),
        DisruptorMode::InPlaceYield => timed(n, next, &d, |seq| {
            while producer.try_publish(|slot| slot.fill(0, seq)).is_err() {
                relax();
            }
        }),
        DisruptorMode::Copy => timed(n, next, &d, |seq| {
            let staged = std::hint::black_box(Slot::new(0, seq));
            producer.publish(|slot| *slot = staged);
        }),
        DisruptorMode::Batch => {
            let mut seq = *next;
            timed_batches(n, next, &d, BATCH, |k| {
                producer.batch_publish(k, |iter| {
                    for slot in iter {
                        slot.fill(0, seq);
                        seq += 1;
                    }
                });
            })
        }
    });
    drop(producer);
}

#[derive(Clone, Copy)]
enum DisruptorMode {
    InPlace,
    InPlaceYield,
    Copy,
    Batch,
}

fn crossbeam_channel_copy(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let d = done();
    let (tx, rx) = crossbeam_channel::bounded::<Slot>(CAPACITY);
    let probe_done = Arc::clone(&d);
    let _consumer = Consumer::spawn(move |stop| {
        let mut probe = Probe::new(&probe_done);
        loop {
            match rx.try_recv() {
                Ok(slot) => probe.observe(slot.seq),
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(_) => relax(),
            }
        }
    });
    bench(g, "crossbeam-channel/copy/single", |n, next| {
        timed(n, next, &d, |seq| {
            let mut slot = std::hint::black_box(Slot::new(0, seq));
            while let Err(crossbeam_channel::TrySendError::Full(back)) = tx.try_send(slot) {
                slot = back;
                relax();
            }
        })
    });
}

fn flume_copy(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let d = done();
    let (tx, rx) = flume::bounded::<Slot>(CAPACITY);
    let probe_done = Arc::clone(&d);
    let _consumer = Consumer::spawn(move |stop| {
        let mut probe = Probe::new(&probe_done);
        loop {
            match rx.try_recv() {
                Ok(slot) => probe.observe(slot.seq),
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(_) => relax(),
            }
        }
    });
    bench(g, "flume/copy/single", |n, next| {
        timed(n, next, &d, |seq| {
            let mut slot = std::hint::black_box(Slot::new(0, seq));
            while let Err(flume::TrySendError::Full(back)) = tx.try_send(slot) {
                slot = back;
                relax();
            }
        })
    });
}

fn ring(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_256B_spsc");
    g.throughput(Throughput::Elements(1));
    rtrb_copy(&mut g);
    rtrb_copy_batch(&mut g);
    rtrb_in_place(&mut g, 1);
    rtrb_in_place(&mut g, BATCH);
    arrayqueue_copy(&mut g);
    disruptor_variant(
        &mut g,
        "disruptor/copy/single",
        DisruptorMode::Copy,
        BusySpin,
    );
    disruptor_variant(
        &mut g,
        "disruptor/in-place/single",
        DisruptorMode::InPlace,
        BusySpin,
    );
    disruptor_variant(
        &mut g,
        "disruptor/in-place/batch64",
        DisruptorMode::Batch,
        BusySpin,
    );
    disruptor_variant(
        &mut g,
        "disruptor/in-place/single/spin-yield",
        DisruptorMode::InPlaceYield,
        SpinYield,
    );
    crossbeam_channel_copy(&mut g);
    flume_copy(&mut g);
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = ring
}
criterion_main!(benches);
