//! `loadgen --bridge <nats://127.0.0.1:PORT | auto>`: the load across two OS processes
//! bridged through NATS, beside raw async-nats carrying the same bytes, in the same run.
//!
//! loadgen (the sending process) runs itself again as the receiving process ([`peer`],
//! the hidden `--bridge-peer` flag) and drives it over a pipe. `auto` starts a
//! `nats-server` on 127.0.0.1 on an ephemeral port, with the helper the tests use.
//!
//! Every message is a 256-byte event slot whose payload is a `CLOCK_MONOTONIC` stamp
//! (shared by the processes of one machine), plus the bridge's headers. Phases:
//!
//! 1. **Throughput**, closed loop for the duration each (windows of 1000 messages, at most
//!    two in flight; raw and core alternate three times and keep their median): `raw` (an async-nats client
//!    publishes the slot with the headers the bridge would write; a subscriber in the peer
//!    decodes it), `core` (bus A publishes, its bridge exports a broadcast, the peer's
//!    bridge imports it into bus B, whose handler records it) and `js` (the same through
//!    JetStream: stored, deduplicated, acked by the handler's `Done`). Throughput is what
//!    arrived over the time from the first send to the last arrival.
//! 2. **Latency**, open loop at `rate` for the duration, `raw` and `core` messages
//!    interleaved (half the rate each, so both see the same machine): each message is
//!    stamped with the time it was due (so a stall counts in full), and the peer records
//!    arrival minus stamp: one-way latency from send to the handler in the other process.
//!    A bridged publish wakes the sending bus's parked worker itself (the bus's
//!    publishers do, through the shard's sleep mark).

pub mod peer;

use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dreamnet_bus::bridge::{wire, Bridge, Export};
use dreamnet_bus::{Bus, Event, EventType, Filter, Priority, Publisher, WaitStrategy};
use dreamnet_bus_tests::nats_server::NatsServer;

/// The slot size of the bridged load.
pub const SLOT: usize = 256;
/// The event type bridged over core NATS.
pub const CORE_TYPE: &str = "loadgen.core";
/// The event type bridged over JetStream.
pub const JS_TYPE: &str = "loadgen.js";
/// The agent JetStream events are addressed to (the peer's durable consumer imports it).
pub const JS_SINK: &str = "sink";
/// The peer's durable consumer.
pub const JS_DURABLE: &str = "loadgen";

/// The raw subject (outside the bridge's namespace, so the bridge never sees it).
pub fn raw_subject(namespace: &str) -> String {
    format!("{namespace}-raw.bench")
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for both processes of a run.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC is always available on Linux (the call cannot fail with it).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// What `loadgen --bridge` is asked.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// The server's URL; `None`: start one (`auto`).
    pub url: Option<String>,
    /// Measured time per phase.
    pub duration: Duration,
    /// Warm-up before the phases (raw and core traffic, not recorded).
    pub warmup: Duration,
    /// The open-loop rate of the latency phase, messages per second.
    pub rate: f64,
    /// How the buses' idle workers wait.
    pub wait: WaitStrategy,
}

/// One phase's result.
#[derive(Debug, Clone)]
pub struct Phase {
    /// `raw`, `core` or `js`.
    pub path: &'static str,
    /// `throughput` or `latency`.
    pub kind: &'static str,
    /// Messages sent.
    pub sent: u64,
    /// Messages that arrived in the peer.
    pub received: u64,
    /// Arrivals per second, first send to last arrival.
    pub per_s: f64,
    /// One-way latency percentiles in ns: p50, p90, p99, p99.9, max, mean.
    pub latency_ns: [u64; 6],
}

/// A whole `--bridge` run.
#[derive(Debug, Clone)]
pub struct BridgeReport {
    /// The server used.
    pub url: String,
    /// Whether loadgen started it.
    pub auto: bool,
    /// Every phase, in run order.
    pub phases: Vec<Phase>,
    /// The open-loop rate of the latency phases.
    pub rate: f64,
}

impl BridgeReport {
    fn find(&self, path: &str, kind: &str) -> Option<&Phase> {
        self.phases
            .iter()
            .find(|p| p.path == path && p.kind == kind)
    }

    /// Bridged core throughput over raw core throughput.
    pub fn throughput_ratio(&self) -> Option<f64> {
        let raw = self.find("raw", "throughput")?;
        let core = self.find("core", "throughput")?;
        (raw.per_s > 0.0).then(|| core.per_s / raw.per_s)
    }

    /// What the bridge adds to the open-loop p50 and p99, in ns (may be negative: noise).
    pub fn added_latency_ns(&self) -> Option<(i64, i64)> {
        let raw = self.find("raw", "latency")?;
        let core = self.find("core", "latency")?;
        let d = |i: usize| core.latency_ns[i] as i64 - raw.latency_ns[i] as i64;
        Some((d(0), d(2)))
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "loadgen --bridge: two processes through {}{}; 256 B slot + bridge headers\n",
            self.url,
            if self.auto {
                " (nats-server started by loadgen)"
            } else {
                ""
            }
        );
        let us = |ns: u64| ns as f64 / 1000.0;
        for p in &self.phases {
            let label = match p.path {
                "raw" => "raw async-nats",
                "core" => "bridged, core NATS",
                _ => "bridged, JetStream",
            };
            if p.kind == "throughput" {
                s += &format!(
                    "  throughput  {label:<20} {:>10.0} msg/s  ({} sent, {} arrived)\n",
                    p.per_s, p.sent, p.received
                );
            } else {
                let l = p.latency_ns;
                s += &format!(
                    "  latency     {label:<20} p50 {:>7.1} us  p90 {:>7.1}  p99 {:>7.1}  p99.9 {:>8.1}  max {:>8.1}  ({} of {} arrived, open loop {:.0}/s, interleaved)\n",
                    us(l[0]), us(l[1]), us(l[2]), us(l[3]), us(l[4]), p.received, p.sent, p.per_s
                );
            }
        }
        if let Some(r) = self.throughput_ratio() {
            s += &format!("  bridged / raw core throughput: {r:.2}x (goal >= 0.9x)\n");
        }
        if let Some((p50, p99)) = self.added_latency_ns() {
            s += &format!(
                "  added by the bridge: p50 {:+.1} us (goal <= 10 us), p99 {:+.1} us\n",
                p50 as f64 / 1000.0,
                p99 as f64 / 1000.0
            );
        }
        s
    }

    /// The report as one JSON object.
    pub fn json(&self) -> String {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|p| {
                let l = p.latency_ns;
                format!(
                    "{{\"path\":\"{}\",\"kind\":\"{}\",\"sent\":{},\"received\":{},\"per_s\":{:.1},\"latency_ns\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},\"mean\":{}}}}}",
                    p.path, p.kind, p.sent, p.received, p.per_s, l[0], l[1], l[2], l[3], l[4], l[5]
                )
            })
            .collect();
        let ratio = self
            .throughput_ratio()
            .map_or_else(|| "null".to_owned(), |r| format!("{r:.3}"));
        let (p50, p99) = self.added_latency_ns().map_or_else(
            || ("null".into(), "null".into()),
            |(a, b)| (a.to_string(), b.to_string()),
        );
        format!(
            "{{\"bridge\":{{\"url\":\"{}\",\"auto\":{},\"rate\":{},\"phases\":[{}],\"throughput_ratio\":{ratio},\"added_p50_ns\":{p50},\"added_p99_ns\":{p99}}}}}",
            self.url,
            self.auto,
            self.rate,
            phases.join(",")
        )
    }
}

/// The receiving process, driven over its stdin and stdout.
struct PeerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PeerProcess {
    fn spawn(url: &str, namespace: &str, wait: &str) -> Result<PeerProcess, Box<dyn Error>> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "--bridge-peer",
                url,
                "--bridge-ns",
                namespace,
                "--wait",
                wait,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the peer process has no pipes".into());
        };
        let mut peer = PeerProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let ready = peer.line()?;
        if ready != "READY" {
            return Err(format!("the peer process said {ready:?}, not READY").into());
        }
        Ok(peer)
    }

    fn line(&mut self) -> Result<String, Box<dyn Error>> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err("the peer process ended (its error is above)".into());
        }
        Ok(line.trim_end().to_owned())
    }

    fn ask(&mut self, command: &str) -> Result<String, Box<dyn Error>> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.line()
    }

    /// `(count, last arrival ns, [p50, p90, p99, p99.9, max, mean])`.
    fn report(&mut self, path: &str, sent: u64) -> Result<(u64, u64, [u64; 6]), Box<dyn Error>> {
        let answer = self.ask(&format!("report {path} {sent}"))?;
        let n: Vec<u64> = answer
            .strip_prefix("REPORT ")
            .ok_or_else(|| format!("the peer answered {answer:?}"))?
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let [count, last, a, b, c, d, e, f] = n.as_slice() else {
            return Err(format!("the peer answered {answer:?}").into());
        };
        Ok((*count, *last, [*a, *b, *c, *d, *e, *f]))
    }

    /// Waits until `n` messages arrived on `path` (at most 10 s).
    fn wait(&mut self, path: &str, n: u64) -> Result<u64, Box<dyn Error>> {
        let answer = self.ask(&format!("wait {path} {n}"))?;
        let count = answer
            .strip_prefix("COUNT ")
            .ok_or_else(|| format!("the peer answered {answer:?}"))?
            .parse()?;
        Ok(count)
    }

    fn quit(mut self) -> Result<(), Box<dyn Error>> {
        let bye = self.ask("quit")?;
        let status = self.child.wait()?;
        if bye != "BYE" || !status.success() {
            return Err(format!("the peer process ended with {status} ({bye:?})").into());
        }
        Ok(())
    }
}

/// The sending side: raw client, bus A and its bridge.
struct Sender {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    raw_subject: String,
    headers: async_nats::HeaderMap,
    _bridge: Bridge,
    bus: Arc<Bus>,
    publisher: Publisher,
    core: EventType,
    js: EventType,
    sink: dreamnet_bus::AgentId,
}

/// A slot stamped `stamp_ns`.
fn stamped(ty: EventType, stamp_ns: u64) -> Event {
    Event::new(ty)
        .with_payload(&stamp_ns)
        .expect("a u64 fits any slot")
}

impl Sender {
    fn new(url: &str, namespace: &str, wait: WaitStrategy) -> Result<Sender, Box<dyn Error>> {
        // One worker thread of its own runs the client's connection task, as the bridge's
        // thread does for the bridge: writes go out while this thread paces or waits.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = rt.block_on(async_nats::connect(url))?;
        let bus = Arc::new(Bus::builder().wait_strategy(wait).build()?);
        let core = bus.register_event_type(CORE_TYPE)?;
        let js = bus.register_event_type(JS_TYPE)?;
        let sink = bus.register_agent(JS_SINK)?;
        let me = bus.register_agent("loadgen")?;
        let bridge = Bridge::builder(url)
            .bus_id("loadgen")
            .namespace(namespace)
            .inflight(1024)
            .export(Export::broadcast(Filter::of_type(core)))
            .export(Export::agent(JS_SINK, Filter::of_type(js)).jetstream())
            .start(Arc::clone(&bus))?;
        // The headers the bridge writes for a core broadcast of this bus.
        let headers = wire::encode(&wire::Outgoing {
            path: "loadgen",
            hops: 1,
            id: 1 << 40,
            type_name: CORE_TYPE,
            source: "loadgen",
            destination: None,
            priority: Priority::Normal,
            correlation: 0,
            causation: 0,
            deadline_in_ns: None,
            meta: &[],
            msg_id: None,
        });
        let publisher = bus.publisher(me)?;
        Ok(Sender {
            rt,
            client,
            raw_subject: raw_subject(namespace),
            headers,
            _bridge: bridge,
            bus,
            publisher,
            core,
            js,
            sink,
        })
    }

    fn send(&mut self, path: &str, stamp_ns: u64) -> Result<(), Box<dyn Error>> {
        match path {
            "raw" => {
                let body = bytes::Bytes::copy_from_slice(stamped(self.core, stamp_ns).as_bytes());
                self.rt.block_on(self.client.publish_with_headers(
                    self.raw_subject.clone(),
                    self.headers.clone(),
                    body,
                ))?;
            }
            "core" => {
                self.publisher
                    .publish(stamped(self.core, stamp_ns))
                    .map_err(|e| e.to_string())?;
            }
            _ => {
                self.publisher
                    .publish(stamped(self.js, stamp_ns).to(self.sink))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Sends `n` messages stamped `stamp_ns` (raw: in one pass of the client's runtime,
    /// as the bridge's outbound task sends what its queue holds).
    fn send_batch(&mut self, path: &str, n: u64, stamp_ns: u64) -> Result<(), Box<dyn Error>> {
        if path != "raw" {
            for _ in 0..n {
                self.send(path, stamp_ns)?;
            }
            return Ok(());
        }
        let body = bytes::Bytes::copy_from_slice(stamped(self.core, stamp_ns).as_bytes());
        self.rt.block_on(async {
            for _ in 0..n {
                self.client
                    .publish_with_headers(
                        self.raw_subject.clone(),
                        self.headers.clone(),
                        body.clone(),
                    )
                    .await?;
            }
            Ok::<_, async_nats::PublishError>(())
        })?;
        Ok(())
    }

    /// Closed loop for `duration`, in windows: a batch is sent once all but the previous
    /// batch arrived in the peer (at most two batches in flight, so neither the raw
    /// client nor the bridge is driven into the slow-consumer drops of core NATS, and
    /// both are measured at the rate they deliver). Returns (sent, start ns).
    fn closed(
        &mut self,
        peer: &mut PeerProcess,
        path: &str,
        duration: Duration,
    ) -> Result<(u64, u64), Box<dyn Error>> {
        const BATCH: u64 = 1_000;
        let start = mono_ns();
        let end = start + duration.as_nanos() as u64;
        let mut sent = 0u64;
        while mono_ns() < end {
            if sent >= BATCH {
                peer.wait(path, sent - BATCH)?;
            }
            let now = mono_ns();
            self.send_batch(path, BATCH, now)?;
            sent += BATCH;
        }
        Ok((sent, start))
    }

    /// Open loop at `rate` for `duration`, each message stamped with its due time, message
    /// `i` sent on `paths[i % paths.len()]` (interleaved: every path sees the same machine,
    /// which on a shared one matters more than anything measured). Returns the number sent
    /// on each path.
    fn open(
        &mut self,
        paths: &[&str],
        duration: Duration,
        rate: f64,
    ) -> Result<Vec<u64>, Box<dyn Error>> {
        let start = mono_ns() + 1_000_000;
        let n = (duration.as_secs_f64() * rate) as u64;
        let mut sent = vec![0u64; paths.len()];
        for i in 0..n {
            let due = start + (i as f64 * 1e9 / rate) as u64;
            loop {
                let now = mono_ns();
                if now >= due {
                    break;
                }
                // Sleep when far off, yield near: on a small machine the peer and the
                // server need the cores more than this loop does.
                if due - now > 200_000 {
                    std::thread::sleep(Duration::from_nanos(due - now - 100_000));
                } else {
                    std::thread::yield_now();
                }
            }
            let k = (i % paths.len() as u64) as usize;
            self.send(paths[k], due)?;
            sent[k] += 1;
        }
        Ok(sent)
    }
}

/// Runs the bridged load (see the module documentation).
pub fn run(opts: &BridgeOptions) -> Result<BridgeReport, Box<dyn Error>> {
    let server = opts.url.is_none().then(NatsServer::start);
    let url = match (&opts.url, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => unreachable!("a server is started when no URL is given"),
    };
    let namespace = format!("loadgen{}", std::process::id());
    let wait = match opts.wait {
        WaitStrategy::Spin => "spin",
        WaitStrategy::Yield => "yield",
        _ => "park",
    };
    let mut peer = PeerProcess::spawn(&url, &namespace, wait)?;
    let mut sender = Sender::new(&url, &namespace, opts.wait)?;

    // Warm-up: connections, JetStream consumer, caches; not recorded.
    for path in ["raw", "core", "js"] {
        let (sent, _) = sender.closed(&mut peer, path, opts.warmup / 3)?;
        peer.report(path, sent)?;
    }
    // Raw and bridged core alternate for ROUNDS rounds and each keeps its median round:
    // on a shared machine a single run of each would mostly measure the neighbours.
    const ROUNDS: usize = 3;
    let mut rounds: Vec<Phase> = Vec::new();
    for round in 0..ROUNDS {
        for path in ["raw", "core", "js"] {
            if path == "js" && round > 0 {
                continue;
            }
            peer.ask("reset")?;
            let (sent, start) = sender.closed(&mut peer, path, opts.duration)?;
            let (received, last, latency_ns) = peer.report(path, sent)?;
            let secs = last.saturating_sub(start) as f64 / 1e9;
            rounds.push(Phase {
                path,
                kind: "throughput",
                sent,
                received,
                per_s: if secs > 0.0 {
                    received as f64 / secs
                } else {
                    0.0
                },
                latency_ns,
            });
        }
    }
    let mut phases = Vec::new();
    for path in ["raw", "core", "js"] {
        let mut of_path: Vec<Phase> = rounds.iter().filter(|p| p.path == path).cloned().collect();
        of_path.sort_by(|a, b| a.per_s.total_cmp(&b.per_s));
        if let Some(median) = of_path.get(of_path.len() / 2) {
            phases.push(median.clone());
        }
    }
    peer.ask("reset")?;
    let paths = ["raw", "core"];
    let sent = sender.open(&paths, opts.duration, opts.rate)?;
    for (path, sent) in paths.into_iter().zip(sent) {
        let (received, _, latency_ns) = peer.report(path, sent)?;
        phases.push(Phase {
            path,
            kind: "latency",
            sent,
            received,
            per_s: opts.rate / 2.0,
            latency_ns,
        });
    }
    drop(sender);
    peer.quit()?;
    Ok(BridgeReport {
        url,
        auto: server.is_some(),
        phases,
        rate: opts.rate,
    })
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.bus.close();
    }
}
