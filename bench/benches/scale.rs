//! Scale: dreamnet-bus throughput against
//!
//! - `subscriptions`: 10, 100, 1,000 and 10,000 subscriptions of which exactly one matches.
//!   `broadcast`: the others are on other event types (99 custom types) and for other
//!   agents; `direct`: events go to one agent, and the others are subscriptions of the same
//!   type for 9,999 other agents. Poll mode on the bench thread (publish 256 in place, then
//!   `Shard::poll`), so what changes is routing cost only.
//! - `producers`: 1 to 4 producer threads, each with its own `Publisher` (its own SPSC
//!   lanes to the shard), one shard worker, `WaitStrategy::Yield`; beside it the
//!   crossbeam-channel bus with the same producers sharing its MPMC channel.
//! - `payload`: 16 to 200 archived payload bytes (256-byte slots up to 144 bytes, 512-byte
//!   slots above; 128 bytes on both to show the slot's own cost). Poll mode.
//! - `priority`: all normal, the loadgen mix (critical 1%, high 9%, normal 80%, low 10%),
//!   and an even mix. Poll mode.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{done, relax, Dispatch, Probe, Slot, Task};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use dreamnet_bus::{
    Bus, Draft, EventType, Filter, Outcome, Priority, PublishError, Publisher, Shard, Subscription,
    WaitStrategy, WritePayload,
};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Events published before each poll in poll mode.
const POLL_BATCH: usize = 256;

/// Publishes `n` events in batches of [`POLL_BATCH`] (`make(seq)` gives each its draft and
/// payload), polling the shard after each batch until the batch is handled.
fn poll_loop<const SLOT: usize, T: WritePayload>(
    n: u64,
    next: &mut u64,
    publisher: &mut Publisher<SLOT>,
    shard: &mut Shard<SLOT>,
    mut make: impl FnMut(u64) -> (Draft, T),
) -> Duration {
    let start = Instant::now();
    let mut left = n;
    while left > 0 {
        let k = left.min(POLL_BATCH as u64);
        for _ in 0..k {
            let (draft, payload) = make(*next);
            *next += 1;
            match publisher.try_publish_with(draft, &payload) {
                Ok(r) => debug_assert_eq!(r.shards, 1),
                Err(e) => panic!("publish: {e}"),
            }
        }
        let mut handled = 0;
        while handled < k as usize {
            handled += shard.poll(POLL_BATCH);
        }
        left -= k;
    }
    start.elapsed()
}

/// A one-shard poll-mode bus and its shard.
fn poll_bus<const SLOT: usize>() -> (Bus<SLOT>, Shard<SLOT>) {
    let (bus, mut shards) = Bus::<SLOT>::builder_with_slot()
        .ring_capacity_all(1024)
        .build_polled()
        .expect("bus");
    (bus, shards.remove(0))
}

#[derive(Clone, Copy)]
enum Flavor {
    Broadcast,
    Direct,
}

fn subscriptions(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale_subscriptions_one_matching");
    g.throughput(Throughput::Elements(1));
    for flavor in [Flavor::Broadcast, Flavor::Direct] {
        for total in [10usize, 100, 1_000, 10_000] {
            let (bus, mut shard) = poll_bus::<256>();
            let types: Vec<EventType> = (0..100)
                .map(|i| {
                    bus.register_event_type(&format!("bench.type{i}"))
                        .expect("type")
                })
                .collect();
            let agents: Vec<_> = (0..total)
                .map(|i| bus.register_agent(&format!("agent-{i}")).expect("agent"))
                .collect();
            let wrong = Arc::new(AtomicU64::new(0));
            let d = done();
            let mut probe = Probe::new(&d);
            let target = types[0];
            let matching = match flavor {
                Flavor::Broadcast => Subscription::new(Filter::of_type(target)),
                Flavor::Direct => Subscription::new(Filter::of_type(target)).for_agent(agents[0]),
            };
            bus.subscribe(matching, move |dl| {
                probe.observe(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
                Outcome::Done
            })
            .expect("subscribe");
            for i in 1..total {
                let sub = match flavor {
                    Flavor::Broadcast => {
                        Subscription::new(Filter::of_type(types[1 + i % 99])).for_agent(agents[i])
                    }
                    Flavor::Direct => {
                        Subscription::new(Filter::of_type(target)).for_agent(agents[i])
                    }
                };
                let wrong = Arc::clone(&wrong);
                bus.subscribe(sub, move |_| {
                    wrong.fetch_add(1, Ordering::Relaxed);
                    Outcome::Done
                })
                .expect("subscribe");
            }
            let mut publisher = bus.publisher(agents[0]).expect("publisher");
            let draft = match flavor {
                Flavor::Broadcast => Draft::new(target),
                Flavor::Direct => Draft::new(target).to(agents[0]),
            };
            let name = match flavor {
                Flavor::Broadcast => "broadcast",
                Flavor::Direct => "direct",
            };
            let mut next = 0u64;
            g.bench_function(BenchmarkId::new(name, total), |b| {
                b.iter_custom(|n| {
                    poll_loop(n, &mut next, &mut publisher, &mut shard, |seq| {
                        (draft, Task::new(seq))
                    })
                })
            });
            assert_eq!(
                d.load(Ordering::Acquire),
                next,
                "every event reached its one subscriber"
            );
            assert_eq!(
                wrong.load(Ordering::Relaxed),
                0,
                "no event reached another subscription"
            );
            drop(publisher);
            bus.close();
        }
    }
    g.finish();
}

/// `producers` threads publish `n` events between them (the last takes the remainder).
struct Producers {
    go: Vec<crossbeam_channel::Sender<(u64, u64)>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Producers {
    fn start<P: FnMut(u64) + Send + 'static>(mut makers: Vec<P>) -> Self {
        let mut go = Vec::new();
        let mut handles = Vec::new();
        for mut publish in makers.drain(..) {
            let (tx, rx) = crossbeam_channel::bounded::<(u64, u64)>(1);
            go.push(tx);
            handles.push(std::thread::spawn(move || {
                while let Ok((first, count)) = rx.recv() {
                    for seq in first..first + count {
                        publish(seq);
                    }
                }
            }));
        }
        Producers { go, handles }
    }

    /// Publishes `n` events across the producers and waits until `done` counts them all.
    fn run(&self, n: u64, next: &mut u64, done: &AtomicU64) -> Duration {
        let p = self.go.len() as u64;
        let each = n / p;
        let start = Instant::now();
        let mut first = *next;
        for (i, tx) in self.go.iter().enumerate() {
            let count = if i as u64 == p - 1 {
                n - each * (p - 1)
            } else {
                each
            };
            tx.send((first, count)).expect("producer alive");
            first += count;
        }
        common::wait_for(done, *next + n);
        let elapsed = start.elapsed();
        *next += n;
        elapsed
    }
}

impl Drop for Producers {
    fn drop(&mut self) {
        self.go.clear();
        for h in self.handles.drain(..) {
            h.join().expect("producer panicked");
        }
    }
}

fn producers(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale_producers");
    g.throughput(Throughput::Elements(1));
    for p in 1..=4usize {
        // dreamnet-bus: one shard worker, one publisher (own SPSC lanes) per producer thread.
        let bus = Bus::builder()
            .wait_strategy(WaitStrategy::Yield)
            .ring_capacity_all(4096)
            .build()
            .expect("bus");
        let d = done();
        let mut probe = Probe::new(&d);
        bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
            probe.observe(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
            Outcome::Done
        })
        .expect("subscribe");
        let makers: Vec<_> = (0..p)
            .map(|i| {
                let agent = bus.register_agent(&format!("producer-{i}")).expect("agent");
                let mut publisher = bus.publisher(agent).expect("publisher");
                let draft = Draft::new(EventType::AGENT_TASK);
                move |seq: u64| {
                    let task = Task::new(seq);
                    loop {
                        match publisher.try_publish_with(draft, &task) {
                            Ok(_) => break,
                            Err(PublishError::Full(())) => relax(),
                            Err(e) => panic!("publish: {e}"),
                        }
                    }
                }
            })
            .collect();
        let producers = Producers::start(makers);
        let mut next = 0;
        g.bench_function(BenchmarkId::new("dreamnet-bus", p), |b| {
            b.iter_custom(|n| producers.run(n, &mut next, &d))
        });
        drop(producers);
        bus.close();

        // The crossbeam-channel bus, its MPMC channel shared by the producers.
        let d = done();
        let (tx, rx) = crossbeam_channel::bounded::<Box<Slot>>(4096);
        let mut dispatch = Dispatch::new(&d);
        let consumer = std::thread::spawn(move || loop {
            match rx.try_recv() {
                Ok(ev) => dispatch.dispatch(&ev),
                Err(crossbeam_channel::TryRecvError::Empty) => relax(),
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            }
        });
        let makers: Vec<_> = (0..p)
            .map(|_| {
                let tx = tx.clone();
                move |seq: u64| {
                    let mut ev = Box::new(Slot::new(0, seq));
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
                }
            })
            .collect();
        drop(tx);
        let producers = Producers::start(makers);
        let mut next = 0;
        g.bench_function(BenchmarkId::new("crossbeam-channel-bus", p), |b| {
            b.iter_custom(|n| producers.run(n, &mut next, &d))
        });
        drop(producers);
        consumer.join().expect("consumer");
    }
    g.finish();
}

/// A payload of `N + 8` archived bytes.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Blob<const N: usize> {
    seq: u64,
    data: [u8; N],
}

fn payload_case<const SLOT: usize, const N: usize>(g: &mut Group<'_>, label: &str) {
    let (bus, mut shard) = poll_bus::<SLOT>();
    let agent = bus.register_agent("producer").expect("agent");
    let d = done();
    let mut probe = Probe::new(&d);
    bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
        probe.observe(dl.payload::<Blob<N>>().map_or(0, |b| b.seq.to_native()));
        Outcome::Done
    })
    .expect("subscribe");
    let mut publisher = bus.publisher(agent).expect("publisher");
    let draft = Draft::new(EventType::AGENT_TASK);
    let mut next = 0u64;
    g.bench_function(label, |b| {
        b.iter_custom(|n| {
            poll_loop(n, &mut next, &mut publisher, &mut shard, |seq| {
                (
                    draft,
                    Blob::<N> {
                        seq,
                        data: [seq as u8; N],
                    },
                )
            })
        })
    });
    assert_eq!(d.load(Ordering::Acquire), next);
    drop(publisher);
    bus.close();
}

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale_payload_bytes");
    g.throughput(Throughput::Elements(1));
    payload_case::<256, 8>(&mut g, "16B/slot256");
    payload_case::<256, 56>(&mut g, "64B/slot256");
    payload_case::<256, 120>(&mut g, "128B/slot256");
    payload_case::<512, 120>(&mut g, "128B/slot512");
    payload_case::<512, 192>(&mut g, "200B/slot512");
    g.finish();
}

fn priority(c: &mut Criterion) {
    let mut g = c.benchmark_group("scale_priority_mix");
    g.throughput(Throughput::Elements(1));
    // Per 100 events: critical, high, normal, low.
    let mixes: [(&str, [u32; 4]); 3] = [
        ("all-normal", [0, 0, 100, 0]),
        ("loadgen-mix-1-9-80-10", [1, 9, 80, 10]),
        ("even-25-each", [25, 25, 25, 25]),
    ];
    for (label, mix) in mixes {
        let (bus, mut shard) = poll_bus::<256>();
        let agent = bus.register_agent("producer").expect("agent");
        let d = done();
        let mut probe = Probe::new(&d);
        bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |dl| {
            probe.observe(dl.payload::<Task>().map_or(0, |t| t.seq.to_native()));
            Outcome::Done
        })
        .expect("subscribe");
        let mut publisher = bus.publisher(agent).expect("publisher");
        // A fixed interleaving of the mix, 100 long.
        let mut pattern = Vec::with_capacity(100);
        let mut left = mix;
        while pattern.len() < 100 {
            for (level, n) in left.iter_mut().enumerate() {
                if *n > 0 {
                    *n -= 1;
                    pattern.push(Priority::ALL[level]);
                }
            }
        }
        let mut next = 0u64;
        g.bench_function(label, |b| {
            b.iter_custom(|n| {
                poll_loop(n, &mut next, &mut publisher, &mut shard, |seq| {
                    let p = pattern[(seq % 100) as usize];
                    (
                        Draft::new(EventType::AGENT_TASK).with_priority(p),
                        Task::new(seq),
                    )
                })
            })
        });
        assert_eq!(d.load(Ordering::Acquire), next);
        drop(publisher);
        bus.close();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = subscriptions, producers, payload, priority
}
criterion_main!(benches);
