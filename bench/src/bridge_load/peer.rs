//! The receiving process of `loadgen --bridge`: loadgen runs itself again with the hidden
//! flag `--bridge-peer URL --bridge-ns NS`, and this is what that process does.
//!
//! It holds three receivers, each recording (count, last arrival, latency histogram):
//! - `raw`: a plain async-nats subscriber on `<ns>-raw.bench`, decoding the slot with
//!   `Event::from_bytes` (what the bridge does to every message too);
//! - `core`: a bus whose bridge imports broadcasts, and a handler for the core type;
//! - `js`: the same bus's JetStream import (durable consumer, `Done` acks).
//!
//! It is driven over stdin, one command a line, answering on stdout: `reset` (answers
//! `OK`), `wait <raw|core|js> <n>` (waits until n arrived, at most 10 s; answers
//! `COUNT <arrived>`), `report <raw|core|js> <sent>` (waits until that many arrived or arrivals stop
//! for 3 s; answers `REPORT <count> <last arrival ns> <p50> <p90> <p99> <p99.9> <max>
//! <mean>`, latencies in ns), `quit` (answers `BYE`).

use std::error::Error;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, Import, JetStreamImport};
use dreamnet_bus::{Bus, Event, Filter, Outcome, WaitStrategy};
use futures_util::StreamExt;
use hdrhistogram::Histogram;

use super::{mono_ns, raw_subject, CORE_TYPE, JS_DURABLE, JS_SINK, JS_TYPE, SLOT};

/// One receiver's record.
#[derive(Debug)]
pub(crate) struct Record {
    count: AtomicU64,
    last_ns: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Record {
    fn new() -> Arc<Record> {
        Arc::new(Record {
            count: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("constant bounds"),
            ),
        })
    }

    /// One arrival stamped `stamp_ns` (the sender's clock: `CLOCK_MONOTONIC`, shared by
    /// the processes of one machine).
    fn arrived(&self, stamp_ns: u64) {
        let now = mono_ns();
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(now.saturating_sub(stamp_ns).max(1));
        drop(h);
        self.last_ns.store(now, Ordering::Release);
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn reset(&self) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset();
        self.last_ns.store(0, Ordering::Release);
        self.count.store(0, Ordering::Release);
    }

    /// Waits until `n` arrived (at most 10 s); answers `COUNT <arrived>`.
    fn wait(&self, n: u64) -> String {
        let end = Instant::now() + Duration::from_secs(10);
        let mut spins = 0u32;
        while self.count.load(Ordering::Acquire) < n && Instant::now() < end {
            spins += 1;
            if spins < 64 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        format!("COUNT {}", self.count.load(Ordering::Acquire))
    }

    /// Waits until `sent` arrived or arrivals stopped for 3 s, and says what arrived.
    fn report(&self, sent: u64) -> String {
        let mut seen = self.count.load(Ordering::Acquire);
        let mut since = Instant::now();
        while seen < sent && since.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(1));
            let now = self.count.load(Ordering::Acquire);
            if now != seen {
                seen = now;
                since = Instant::now();
            }
        }
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "REPORT {} {} {} {} {} {} {} {}",
            self.count.load(Ordering::Acquire),
            self.last_ns.load(Ordering::Acquire),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            h.mean() as u64,
        )
    }
}

/// The stamp in an event's payload (0 if it has none).
fn stamp(event: &Event<SLOT>) -> u64 {
    event.payload::<u64>().map_or(0, |v| v.to_native())
}

/// Runs the peer until `quit` or the end of stdin.
pub fn run(url: &str, namespace: &str, wait: WaitStrategy) -> Result<(), Box<dyn Error>> {
    let (raw, core, js) = (Record::new(), Record::new(), Record::new());

    let bus = Arc::new(Bus::builder().wait_strategy(wait).build()?);
    let core_ty = bus.register_event_type(CORE_TYPE)?;
    let js_ty = bus.register_event_type(JS_TYPE)?;
    let c = Arc::clone(&core);
    bus.subscribe(Filter::of_type(core_ty), move |d| {
        c.arrived(stamp(d.event()));
        Outcome::Done
    })?;
    let j = Arc::clone(&js);
    let bridge = Bridge::builder(url)
        .bus_id("loadgen-peer")
        .namespace(namespace)
        .import(Import::broadcast())
        .jetstream_import(JetStreamImport::new(
            JS_DURABLE,
            Some(JS_SINK),
            Filter::of_type(js_ty),
            move |d| {
                j.arrived(stamp(d.event()));
                Outcome::Done
            },
        ))
        .start(Arc::clone(&bus))?;

    // The raw subscriber: its own current-thread runtime on a thread of its own, as the
    // bridge has.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let r = Arc::clone(&raw);
    let subject = raw_subject(namespace);
    let url_owned = url.to_owned();
    std::thread::Builder::new()
        .name("loadgen-raw-sub".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            rt.block_on(async move {
                let subscribed = async {
                    let client = async_nats::connect(url_owned).await?;
                    let sub = client.subscribe(subject).await?;
                    client.flush().await?;
                    Ok::<_, Box<dyn Error>>((client, sub))
                }
                .await;
                let (_client, mut sub) = match subscribed {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Some(msg) = sub.next().await {
                    if let Ok(event) = Event::<SLOT>::from_bytes(&msg.payload) {
                        r.arrived(stamp(&event));
                    }
                }
            });
        })?;
    ready_rx.recv()??;

    let pick = |which: &str| -> Result<&Arc<Record>, Box<dyn Error>> {
        match which {
            "raw" => Ok(&raw),
            "core" => Ok(&core),
            "js" => Ok(&js),
            other => Err(format!("no receiver {other:?}").into()),
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["reset"] => {
                for rec in [&raw, &core, &js] {
                    rec.reset();
                }
                "OK".to_owned()
            }
            ["report", which, sent] => pick(which)?.report(sent.parse()?),
            ["wait", which, n] => pick(which)?.wait(n.parse()?),
            ["quit"] => break,
            _ => return Err(format!("unknown command {line:?}").into()),
        };
        writeln!(out, "{answer}")?;
        out.flush()?;
    }
    drop(bridge);
    bus.close();
    writeln!(out, "BYE")?;
    out.flush()?;
    Ok(())
}
