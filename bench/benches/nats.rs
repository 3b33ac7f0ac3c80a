//! The NATS bridge against raw async-nats, in the same run, on one nats-server the bench
//! starts on 127.0.0.1 (`nats-server` on PATH, as for the tests). The same bytes cross the
//! wire both ways: a 256-byte event slot as the body and the bridge's headers.
//!
//! - `raw-core/throughput`: an async-nats client publishes N messages on a subject a second
//!   client subscribes to; the time until the subscriber has counted all N.
//! - `bridged-core/throughput`: bus A publishes N events (`Publisher::publish`), its bridge
//!   exports them to core NATS, bus B's bridge imports them and B's handler counts; the
//!   time until B's handler has counted all N.
//! - `bridged-jetstream/throughput`: the same through JetStream (stored, acked, deduped),
//!   B consuming with a durable consumer whose handler's `Done` acks.
//! - `raw-core/latency`, `bridged-core/latency`: one message at a time, publish to receipt
//!   (the mean per iteration is the round trip's one-way latency plus a poll).
//!
//! The bridged buses' workers yield when idle (`WaitStrategy::Yield`) instead of parking,
//! so the bridged latency is the bridge's and not two idle wake-ups of the buses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::bridge::{wire, Bridge, Export, Import, JetStreamImport};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, Publisher, WaitStrategy};
use dreamnet_bus_tests::nats_server::NatsServer;
use futures_util::StreamExt;

const BATCH: u64 = 2_000;

fn wait_until(counter: &AtomicU64, target: u64) {
    // Yield while waiting: on a small machine a spinning bench thread would take the CPU
    // the receiving side needs (raw and bridged alike).
    let end = Instant::now() + Duration::from_secs(60);
    let mut spins = 0u32;
    while counter.load(Ordering::Acquire) < target {
        spins += 1;
        if spins.is_multiple_of(64) {
            assert!(
                Instant::now() < end,
                "messages never arrived: {} of {target}",
                counter.load(Ordering::Acquire)
            );
        }
        std::thread::yield_now();
    }
}

/// Two raw clients: a publisher and a counting subscriber.
struct Raw {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    count: Arc<AtomicU64>,
    headers: async_nats::HeaderMap,
    body: bytes::Bytes,
}

impl Raw {
    fn new(url: &str) -> Raw {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let count = Arc::new(AtomicU64::new(0));
        let client = rt.block_on(async {
            let sub_client = async_nats::connect(url).await.expect("connect");
            let mut sub = sub_client.subscribe("raw.bench").await.expect("subscribe");
            sub_client.flush().await.expect("flush");
            let c = Arc::clone(&count);
            tokio::spawn(async move {
                let _keep = sub_client;
                while let Some(m) = sub.next().await {
                    std::hint::black_box(&m.payload);
                    c.fetch_add(1, Ordering::Release);
                }
            });
            async_nats::connect(url).await.expect("connect")
        });
        let event: Event = Event::new(EventType::SYSTEM_EVENT);
        let headers = wire::encode(&wire::Outgoing {
            path: "alpha",
            hops: 1,
            id: 1 << 40,
            type_name: "system.event",
            source: "alpha",
            destination: None,
            priority: Priority::Normal,
            correlation: 0,
            causation: 0,
            deadline_in_ns: None,
            meta: &[],
            msg_id: None,
        });
        Raw {
            rt,
            client,
            count,
            headers,
            body: wire::body(&event),
        }
    }

    /// Publishes `n` messages. No flush: the client's connection task writes as soon as
    /// it can, as it does for the bridge (a flush would add a PING/PONG round trip).
    fn send(&self, n: u64) {
        self.rt.block_on(async {
            for _ in 0..n {
                self.client
                    .publish_with_headers("raw.bench", self.headers.clone(), self.body.clone())
                    .await
                    .expect("publish");
            }
        });
    }
}

/// Two bridged buses: A exports broadcasts of its type, B imports them and counts.
struct Bridged {
    _a: Arc<Bus>,
    _b: Arc<Bus>,
    _bridges: (Bridge, Bridge),
    publisher: Publisher,
    ty: EventType,
    to: Option<dreamnet_bus::AgentId>,
    count: Arc<AtomicU64>,
}

impl Bridged {
    fn new(url: &str, jetstream: bool) -> Bridged {
        // Workers that yield rather than park when idle: the default park (50 us sleeps)
        // would put two idle wake-ups into every one-at-a-time latency sample.
        let bus = || {
            Bus::builder()
                .wait_strategy(WaitStrategy::Yield)
                .build()
                .expect("bus")
        };
        let (a, b) = (Arc::new(bus()), Arc::new(bus()));
        let name = if jetstream { "bench.js" } else { "bench.core" };
        let ty = a.register_event_type(name).expect("type");
        let tb = b.register_event_type(name).expect("type");
        let me = a.register_agent("alpha").expect("agent");
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        let counting = move |_: &dreamnet_bus::Delivery<'_, 256>| {
            c.fetch_add(1, Ordering::Release);
            Outcome::Done
        };
        let (bridge_a, bridge_b, to) = if jetstream {
            let sink = a.register_agent("sink").expect("agent");
            let bridge_b = Bridge::builder(url)
                .bus_id("beta-js")
                .jetstream_import(JetStreamImport::new(
                    "bench",
                    Some("sink"),
                    Filter::of_type(tb),
                    counting,
                ))
                .start(Arc::clone(&b))
                .expect("bridge b");
            let bridge_a = Bridge::builder(url)
                .bus_id("alpha-js")
                .inflight(1024)
                .export(Export::agent("sink", Filter::of_type(ty)).jetstream())
                .start(Arc::clone(&a))
                .expect("bridge a");
            (bridge_a, bridge_b, Some(sink))
        } else {
            let bridge_b = Bridge::builder(url)
                .bus_id("beta")
                .import(Import::broadcast())
                .start(Arc::clone(&b))
                .expect("bridge b");
            b.subscribe(Filter::of_type(tb), counting)
                .expect("subscribe");
            let bridge_a = Bridge::builder(url)
                .bus_id("alpha")
                .export(Export::broadcast(Filter::of_type(ty)))
                .start(Arc::clone(&a))
                .expect("bridge a");
            (bridge_a, bridge_b, None)
        };
        let publisher = a.publisher(me).expect("publisher");
        Bridged {
            _a: a,
            _b: b,
            _bridges: (bridge_a, bridge_b),
            publisher,
            ty,
            to,
            count,
        }
    }

    fn send(&mut self, n: u64) {
        for _ in 0..n {
            let mut event = Event::new(self.ty);
            event.set_destination(self.to);
            self.publisher.publish(event).expect("publish");
        }
    }
}

fn nats(c: &mut Criterion) {
    let server = NatsServer::start();
    let url = server.url();
    let raw = Raw::new(&url);
    let mut core = Bridged::new(&url, false);
    let mut js = Bridged::new(&url, true);

    let mut g = c.benchmark_group("nats");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BATCH));
    g.bench_function("raw-core/throughput", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = raw.count.load(Ordering::Acquire) + BATCH;
                raw.send(BATCH);
                wait_until(&raw.count, target);
            }
            start.elapsed()
        })
    });
    g.bench_function("bridged-core/throughput", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = core.count.load(Ordering::Acquire) + BATCH;
                core.send(BATCH);
                wait_until(&core.count, target);
            }
            start.elapsed()
        })
    });
    g.bench_function("bridged-jetstream/throughput", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = js.count.load(Ordering::Acquire) + BATCH;
                js.send(BATCH);
                wait_until(&js.count, target);
            }
            start.elapsed()
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("raw-core/latency", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = raw.count.load(Ordering::Acquire) + 1;
                raw.send(1);
                wait_until(&raw.count, target);
            }
            start.elapsed()
        })
    });
    g.bench_function("bridged-core/latency", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = core.count.load(Ordering::Acquire) + 1;
                core.send(1);
                wait_until(&core.count, target);
            }
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, nats);
criterion_main!(benches);
