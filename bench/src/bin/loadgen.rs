//! `loadgen`: the load generator for dreamnet-bus. Run with no flags first:
//!
//! ```text
//! cargo run --release --bin loadgen
//! cargo run --release --bin loadgen -- --compare --duration 2 --plot latency.svg
//! cargo run --release --bin loadgen -- --mode open --rate 1000000 --pin
//! cargo run --release --bin loadgen -- --fail-rate 0.01 --retry-rate 0.05 --panic-rate 0.001
//! cargo run --release --bin loadgen -- --journal /tmp/dnj --durability batch
//! cargo run --release --bin loadgen -- --workload streams
//! cargo run --release --bin loadgen -- --bridge auto --duration 2
//! ```
//!
//! The workload, the baseline and the report live in the `dreamnet_bus_bench` library.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use dreamnet_bus::journal::Durability;
use dreamnet_bus::WaitStrategy;
use dreamnet_bus_bench::alloc::CountingAlloc;
use dreamnet_bus_bench::disruptor_peer::{self, Variant};
use dreamnet_bus_bench::headline::{self, Line};
use dreamnet_bus_bench::report::RunReport;
use dreamnet_bus_bench::workload::{self, Inject, Mode, Options, Reliability, SUBSCRIPTIONS};
use dreamnet_bus_bench::{
    baseline, bridge_load, dreamnet, journal_load, plot, report, streams_load,
};

// Counts every allocation, so "allocations per event" is measured (see `alloc`).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Load generator for dreamnet-bus: several agents publish the spec's event types at mixed
/// priorities to subscribers of every routing strategy (direct, broadcast, filtered,
/// load-balanced round-robin and least-loaded); prints throughput, publish->handler
/// latency percentiles per priority, allocations per event, and a conservation check of
/// every event and every delivery.
///
/// By default it runs twice: closed loop for the saturation throughput, then open loop at
/// half of it for the latency, and ends with a headline of both (--compare adds the
/// channel bus and the disruptor to it, --plot draws the latency distributions).
///
/// Exit status: 0 when every count adds up, 2 when a conservation check fails, 1 on error.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Which workload: agents (the default: the multi-agent routing workload described
    /// above), or streams (streams, an expression filter, a wildcard, a transform, a
    /// tumbling window and a recurring schedule at once, every count checked; see
    /// `streams_load`). streams takes --duration and --wait only.
    #[arg(long, value_enum, default_value_t = Workload::Agents)]
    workload: Workload,

    /// Seconds to measure (after the warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,

    /// Seconds of warm-up before measuring (rings, caches, branch predictors).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,

    /// Shards: worker threads of the bus. The default suits a 2-core machine: one worker
    /// and one producer thread.
    #[arg(long, default_value_t = 1)]
    shards: usize,

    /// Pin shard workers to the first cores and producer threads to the next ones.
    #[arg(long)]
    pin: bool,

    /// Producer threads. The six agents are dealt out between them (each thread owns a
    /// publisher per agent it publishes as).
    #[arg(long, default_value_t = 1)]
    producers: usize,

    /// auto (the default): closed loop first, for the saturation throughput, then open
    /// loop at --load of the saturation just measured, for latency that means something
    /// (closed-loop latency is mostly time queued behind a full ring). closed: publish as
    /// fast as the bus accepts (throughput). open: publish at a fixed --rate.
    ///
    /// Open-loop latency is corrected for coordinated omission by intended-time stamping:
    /// event i of a producer is due at start + i / rate; its due time travels in the
    /// payload and latency is handler time minus due time, so an event held back by a
    /// stall counts the whole stall. hdrhistogram's `record_correct` is not used: it
    /// back-fills synthetic samples from one expected interval per recorder, but here
    /// each handler sees an irregular subset of several producers' events, so it has no
    /// single interval to assume, while the due time is exact.
    #[arg(long, value_enum, default_value_t = LoopMode::Auto, verbatim_doc_comment)]
    mode: LoopMode,

    /// Events per second for --mode open, all producers together.
    #[arg(long)]
    rate: Option<f64>,

    /// --mode auto: the open-loop phase runs at this share (0..=1) of the saturation the
    /// closed-loop phase measured.
    #[arg(long, default_value_t = 0.5)]
    load: f64,

    /// Also run the baselines and print ours/theirs ratios: the same workload on a channel
    /// bus (bounded crossbeam-channel of boxed events + HashMap dispatch on one consumer
    /// thread), and the disruptor as its users write it (one producer, one BusySpin
    /// consumer, a closure handler; the producer writes one u64, or a whole 256-byte slot).
    /// Each runs the same phases as dreamnet-bus, at its own saturation.
    #[arg(long)]
    compare: bool,

    /// Write the open-loop latency percentile distribution of every implementation run
    /// to this SVG file (log percentile axis, like HdrHistogram's plotter).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,

    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    json: bool,

    /// Filler bytes in each event's rkyv payload (the archived payload adds 24 bytes of
    /// fields). The slot size is the smallest of 256, 512, 1024 bytes that fits.
    #[arg(long, default_value_t = 32)]
    payload: usize,

    /// How idle shard workers (and blocked publishers) wait: park (the bus default: spin,
    /// yield, then sleep up to 50 us; kind to a shared machine), yield, or spin (lowest
    /// latency; burns a core per worker).
    #[arg(long, value_enum, default_value_t = Wait::Park)]
    wait: Wait,

    /// Failure injection: share of deliveries (0..1) the handler fails with
    /// `Outcome::fail` (dead letter `failed`). Decided per (handler, event id) with a
    /// xorshift generator, so every attempt of an event sees the same decision.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,

    /// Failure injection: share of deliveries (0..1) the handler answers with
    /// `Outcome::retry` 1..=--retries-per-event times before `Done`. When that needs more
    /// than --max-attempts attempts, the bus dead-letters it (`retries-exhausted`).
    #[arg(long, default_value_t = 0.0)]
    retry_rate: f64,

    /// Most retries a retried delivery asks for (drawn uniformly from 1..=N).
    #[arg(long, default_value_t = 3)]
    retries_per_event: u32,

    /// Failure injection: share of deliveries (0..1) on which the handler panics (caught
    /// by the bus: dead letter `panicked`). A quiet panic hook counts them instead of
    /// printing each.
    #[arg(long, default_value_t = 0.0)]
    panic_rate: f64,

    /// Which subscriptions get the injected failures: `all`, or a comma-separated list of
    /// subscription names (see the report's table; a group's name covers its members).
    #[arg(long, default_value = "all")]
    inject_into: String,

    /// Retry policy (bus-wide): attempts per delivery, the first included.
    #[arg(long, default_value_t = 3)]
    max_attempts: u32,

    /// Retry policy: base delay of the first retry in microseconds (multiplier 2, full
    /// jitter, cap 1 s or the base if larger; the timer wheel ticks every 1 ms).
    #[arg(long, default_value_t = 1000)]
    retry_base_us: u64,

    /// Timer wheel capacity per shard (retries waiting). A retry that finds it full is
    /// dead-lettered (`retry-capacity`) and reported.
    #[arg(long, default_value_t = 65_536)]
    timer_capacity: usize,

    /// Dead-letter ring capacity. Letters beyond it are dropped by the full policy and
    /// counted (the report counts every letter with the `on_dead_letter` hook anyway).
    #[arg(long, default_value_t = 65_536)]
    dead_letters: usize,

    /// What a full dead-letter ring does.
    #[arg(long, value_enum, default_value_t = DeadPolicy::DropOldest)]
    dead_letter_policy: DeadPolicy,

    /// Seconds to wait, after the producers stop, for every retry to fire (`wait_idle`)
    /// before closing. 0 closes at once: retries still waiting become `shutdown` dead
    /// letters.
    #[arg(long, default_value_t = 10.0)]
    idle_timeout: f64,

    /// Journal every event the shards drain into DIR (one journal per shard, DIR/bus is
    /// emptied first), and run the same workload without a journal beside it: prints the
    /// on/off ratio, the read-back rate and the disk's own sequential write of the same
    /// bytes (see `journal_load`).
    #[arg(long, value_name = "DIR", conflicts_with = "compare")]
    journal: Option<PathBuf>,

    /// The journal's durability: os (survives kill -9), batch (fdatasync every 1,000
    /// events or 1 ms), always (fdatasync every event).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Os, requires = "journal")]
    durability: DurabilityArg,

    /// Runs the load across two OS processes bridged through NATS instead (loadgen starts
    /// itself again as the receiving process), beside raw async-nats carrying the same
    /// bytes: throughput (raw, bridged core, bridged JetStream) and open-loop one-way
    /// latency. `auto` starts a nats-server on 127.0.0.1 (an ephemeral port).
    #[arg(long, value_name = "nats://127.0.0.1:PORT|auto")]
    bridge: Option<String>,

    /// --bridge: the open-loop rate of the latency phase, messages per second.
    #[arg(long, default_value_t = 5_000.0)]
    bridge_rate: f64,

    /// Internal: run as the receiving process of --bridge, on this server.
    #[arg(long, hide = true)]
    bridge_peer: Option<String>,

    /// Internal: the receiving process's namespace.
    #[arg(long, hide = true, default_value = "loadgen")]
    bridge_ns: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DurabilityArg {
    Os,
    Batch,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Agents,
    Streams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DeadPolicy {
    DropOldest,
    RejectNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoopMode {
    Auto,
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Wait {
    Spin,
    Yield,
    Park,
}

fn wait_strategy(wait: Wait) -> WaitStrategy {
    match wait {
        Wait::Spin => WaitStrategy::Spin,
        Wait::Yield => WaitStrategy::Yield,
        Wait::Park => WaitStrategy::default(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs what `args` asks; `Ok(false)` when a conservation check failed.
fn run(args: &Args) -> Result<bool, Box<dyn Error>> {
    if args.workload == Workload::Streams {
        return streams_load::run(&streams_load::StreamsOptions {
            duration: Duration::from_secs_f64(args.duration),
            sensors: 4,
            stream_capacity: 8192,
            wait: wait_strategy(args.wait),
        });
    }
    let opts = options(args)?;
    if let Some(url) = &args.bridge_peer {
        bridge_load::peer::run(url, &args.bridge_ns, opts.wait)?;
        return Ok(true);
    }
    if let Some(target) = &args.bridge {
        return run_bridge(args, &opts, target);
    }
    let (slot, archived) = dreamnet::slot_for(opts.payload).ok_or_else(|| {
        format!(
            "a payload of {} bytes fits no slot (max 1024)",
            opts.payload
        )
    })?;
    if !args.json {
        println!("{}", describe(&opts, args, slot, archived));
    }
    let load = (args.mode == LoopMode::Auto).then_some(args.load);
    let mut runs = Vec::new();
    let mut lines = Vec::new();
    let ours = phases(&opts, load, RunReport::published_per_s, |o| {
        dreamnet::run(o, slot)
    })?;
    lines.push(Line::of_runs(
        "dreamnet-bus (workload)",
        ours.0.as_ref(),
        ours.1.as_ref(),
    ));
    let journal_text = match journal_run(args) {
        Some(j) => Some(journal_phases(&opts, load, slot, j, &ours, &mut lines)?),
        None => None,
    };
    runs.extend(ours.0.into_iter().chain(ours.1));
    let journal_summary = journal_text.map(|(text, journaled)| {
        runs.extend(journaled);
        text
    });
    if args.compare {
        let capacity = baseline_capacity(&opts);
        let theirs = phases(&opts, load, RunReport::published_per_s, |o| {
            baseline::run(o, capacity)
        })?;
        lines.push(Line::of_runs(
            "channel bus (workload)",
            theirs.0.as_ref(),
            theirs.1.as_ref(),
        ));
        runs.extend(theirs.0.into_iter().chain(theirs.1));
        for variant in [Variant::Word, Variant::Slot256] {
            let (closed, open) = phases(
                &opts,
                load,
                |r: &disruptor_peer::PeerRun| r.per_s,
                |o| disruptor_peer::run(o, variant),
            )?;
            lines.push(Line::of_peer(closed.as_ref(), open.as_ref()));
        }
    }
    if !dreamnet_bus_bench::alloc::installed() {
        eprintln!("loadgen: the counting allocator is not installed; allocation counts are 0");
    }
    if args.json {
        let config = config_json(args, slot, archived);
        let pairs = compared_pairs(runs.len(), args.compare);
        println!(
            "{}",
            report::json(&config, &headline::json(&lines), &runs, &pairs)
        );
    } else {
        print_text(&runs, &lines, load, args.compare);
        if let Some(text) = &journal_summary {
            println!("{text}");
        }
    }
    if let Some(path) = &args.plot {
        write_plot(path, &lines, &runs)?;
        if !args.json {
            println!("latency percentile plot written to {}", path.display());
        }
    }
    Ok(runs.iter().all(RunReport::ok))
}

/// `--journal`: the journal to run with, if asked.
fn journal_run(args: &Args) -> Option<journal_load::JournalRun> {
    args.journal.as_ref().map(|dir| journal_load::JournalRun {
        dir: dir.clone(),
        durability: match args.durability {
            DurabilityArg::Os => Durability::Os,
            DurabilityArg::Batch => journal_load::BATCH,
            DurabilityArg::Always => Durability::Always,
        },
        shards: args.shards,
    })
}

/// The journaled phases (logic in `journal_load`): the same phases with the journal on,
/// the read-back of the closed run's journal and the disk baseline of the same bytes.
fn journal_phases(
    opts: &Options,
    load: Option<f64>,
    slot: usize,
    j: journal_load::JournalRun,
    off: &(Option<RunReport>, Option<RunReport>),
    lines: &mut Vec<Line>,
) -> Result<(String, Vec<RunReport>), Box<dyn Error>> {
    let on_opts = Options {
        journal: Some(j.clone()),
        ..opts.clone()
    };
    let mut read_back = None;
    let on = phases(&on_opts, load, RunReport::published_per_s, |o| {
        j.fresh()?;
        let r = dreamnet::run(o, slot)?;
        if read_back.is_none() {
            read_back = Some(match slot {
                512 => j.read_back::<512>()?,
                1024 => j.read_back::<1024>()?,
                _ => j.read_back::<256>()?,
            });
        }
        Ok(r)
    })?;
    j.fresh()?;
    let read_back = read_back.unwrap_or_default();
    let record = slot + 64;
    let disk = j.disk_baseline(read_back.records, record)?;
    lines.push(Line::of_runs(
        "dreamnet-bus + journal",
        on.0.as_ref(),
        on.1.as_ref(),
    ));
    let text = journal_load::text(
        j.durability,
        (off.0.as_ref(), off.1.as_ref()),
        (on.0.as_ref(), on.1.as_ref()),
        read_back,
        disk,
        record,
    );
    Ok((text, on.0.into_iter().chain(on.1).collect()))
}

/// `--bridge`: the load across two processes through NATS (`bridge_load`).
fn run_bridge(args: &Args, opts: &Options, target: &str) -> Result<bool, Box<dyn Error>> {
    if !(args.bridge_rate.is_finite() && args.bridge_rate > 0.0) {
        return Err("--bridge-rate must be > 0".into());
    }
    let report = bridge_load::run(&bridge_load::BridgeOptions {
        url: (target != "auto").then(|| target.to_owned()),
        duration: opts.duration,
        warmup: opts.warmup,
        rate: args.bridge_rate,
        wait: opts.wait,
    })?;
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(true)
}

/// The run's phases: in auto mode (`load` given) closed loop, then open loop at `load` of
/// the saturation `rate_of` reads from the closed run; otherwise the one mode `opts` asks.
fn phases<R>(
    opts: &Options,
    load: Option<f64>,
    rate_of: impl Fn(&R) -> f64,
    mut run: impl FnMut(&Options) -> Result<R, Box<dyn Error>>,
) -> Result<(Option<R>, Option<R>), Box<dyn Error>> {
    let Some(load) = load else {
        let r = run(opts)?;
        return Ok(match opts.mode {
            Mode::Closed => (Some(r), None),
            Mode::Open { .. } => (None, Some(r)),
        });
    };
    let closed = run(&Options {
        mode: Mode::Closed,
        ..opts.clone()
    })?;
    let rate = load * rate_of(&closed);
    if !(rate.is_finite() && rate > 0.0) {
        return Err(
            format!("the closed-loop phase measured no throughput ({rate} events/s)").into(),
        );
    }
    let open = run(&Options {
        mode: Mode::Open { rate },
        ..opts.clone()
    })?;
    Ok((Some(closed), Some(open)))
}

/// The same-workload comparisons, phase by phase, as (ours, theirs) run indices: with
/// `--compare` the runs are ours (one per phase) then the channel bus's.
fn compared_pairs(runs: usize, compare: bool) -> Vec<(usize, usize)> {
    if !compare || !runs.is_multiple_of(2) {
        return Vec::new();
    }
    let half = runs / 2;
    (0..half).map(|i| (i, i + half)).collect()
}

fn print_text(runs: &[RunReport], lines: &[Line], load: Option<f64>, compare: bool) {
    for r in runs {
        println!("\n{}", report::text(r));
    }
    for (a, b) in compared_pairs(runs.len(), compare) {
        println!("{}", report::compare_text(&runs[a], &runs[b]));
    }
    println!("{}", headline::text(lines, load));
    if lines.len() > 2 {
        println!("  the disruptor lines are one producer -> one closure handler (no routing): the floor, not the same workload");
    }
}

/// The plot: open-loop latency of every implementation; closed-loop latency (labelled
/// so) when the run had no open phase.
fn write_plot(
    path: &std::path::Path,
    lines: &[Line],
    runs: &[RunReport],
) -> Result<(), Box<dyn Error>> {
    let mut series: Vec<(String, &hdrhistogram::Histogram<u64>)> = lines
        .iter()
        .filter_map(|l| l.latency.as_ref().map(|h| (l.label.clone(), h)))
        .collect();
    let mut title = "latency by percentile, open loop (due time -> handler)".to_owned();
    if series.is_empty() {
        series = runs
            .iter()
            .map(|r| (format!("{} (closed loop)", r.label), &r.overall))
            .collect();
        title = "latency by percentile, closed loop (publish stamp -> handler)".to_owned();
    }
    plot::write_svg(path, &title, &series)
}

fn options(args: &Args) -> Result<Options, String> {
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("--{what} must be a number of seconds >= 0"))
    };
    let duration = secs(args.duration, "duration")?;
    if duration.is_zero() {
        return Err("--duration must be > 0".into());
    }
    if args.producers == 0 || args.producers > 64 {
        return Err("--producers must be in 1..=64".into());
    }
    if !(args.load > 0.0 && args.load <= 1.0) {
        return Err("--load must be in (0, 1]".into());
    }
    let mode = match (args.mode, args.rate) {
        (LoopMode::Auto | LoopMode::Closed, None) => Mode::Closed,
        (LoopMode::Auto, Some(_)) => return Err("--rate needs --mode open".into()),
        (LoopMode::Closed, Some(_)) => return Err("--rate needs --mode open".into()),
        (LoopMode::Open, Some(rate)) if rate.is_finite() && rate > 0.0 => Mode::Open { rate },
        (LoopMode::Open, _) => return Err("--mode open needs --rate <events/s> > 0".into()),
    };
    Ok(Options {
        duration,
        warmup: secs(args.warmup, "warmup")?,
        shards: args.shards,
        pin: args.pin,
        producers: args.producers,
        mode,
        payload: args.payload,
        wait: wait_strategy(args.wait),
        progress: !args.json,
        inject: inject(args)?,
        reliability: reliability(args)?,
        journal: None,
    })
}

fn inject(args: &Args) -> Result<Inject, String> {
    for (rate, what) in [
        (args.fail_rate, "fail-rate"),
        (args.retry_rate, "retry-rate"),
        (args.panic_rate, "panic-rate"),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("--{what} must be in 0..=1"));
        }
    }
    if args.fail_rate + args.retry_rate + args.panic_rate > 1.0 {
        return Err("--fail-rate + --retry-rate + --panic-rate must be at most 1".into());
    }
    if args.retries_per_event == 0 {
        return Err("--retries-per-event must be at least 1".into());
    }
    let subscriptions = if args.inject_into.trim() == "all" {
        (1u32 << SUBSCRIPTIONS.len()) - 1
    } else {
        let mut mask = 0u32;
        for name in args.inject_into.split(',').map(str::trim) {
            let i = SUBSCRIPTIONS
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = SUBSCRIPTIONS.iter().map(|s| s.name).collect();
                    format!(
                        "--inject-into: no subscription {name:?} (there are: all, {})",
                        names.join(", ")
                    )
                })?;
            mask |= 1 << i;
        }
        mask
    };
    let inject = Inject {
        fail_rate: args.fail_rate,
        retry_rate: args.retry_rate,
        panic_rate: args.panic_rate,
        max_retries: args.retries_per_event,
        subscriptions,
    };
    if inject.any() && args.compare {
        return Err("--compare runs without injected failures: the baseline channel bus has no retries or dead letters, so the comparison would not be like for like".into());
    }
    Ok(inject)
}

fn reliability(args: &Args) -> Result<Reliability, String> {
    if args.max_attempts == 0 {
        return Err("--max-attempts must be at least 1".into());
    }
    if args.timer_capacity == 0 || args.dead_letters == 0 {
        return Err("--timer-capacity and --dead-letters must be at least 1".into());
    }
    let base = Duration::from_micros(args.retry_base_us);
    if base.is_zero() {
        return Err("--retry-base-us must be at least 1".into());
    }
    let idle_timeout = Duration::try_from_secs_f64(args.idle_timeout)
        .map_err(|_| "--idle-timeout must be a number of seconds >= 0".to_owned())?;
    Ok(Reliability {
        max_attempts: args.max_attempts,
        retry_base: base,
        retry_cap: base.max(Duration::from_secs(1)),
        timer_capacity: args.timer_capacity,
        dead_letters: args.dead_letters,
        drop_oldest: args.dead_letter_policy == DeadPolicy::DropOldest,
        idle_timeout,
    })
}

/// The channel bound for the baseline: the ring slots dreamnet-bus gives the same
/// producers (per publisher and shard, all priorities), so both buffer as much.
fn baseline_capacity(opts: &Options) -> usize {
    let per_lane_set: usize = dreamnet_bus::Config::default().ring_capacity.iter().sum();
    let publishers: usize = (0..opts.producers)
        .map(|p| workload::agents_of(p, opts.producers).len())
        .sum();
    per_lane_set * publishers * opts.shards
}

fn describe(opts: &Options, args: &Args, slot: usize, archived: usize) -> String {
    let mode = match (args.mode, opts.mode) {
        (LoopMode::Auto, _) => format!(
            "closed loop, then open loop at {:.0} % of the saturation it measured,",
            args.load * 100.0
        ),
        (_, Mode::Closed) => "closed loop".to_owned(),
        (_, Mode::Open { rate }) => format!("open loop at {rate:.0} events/s"),
    };
    let handlers: usize = SUBSCRIPTIONS.iter().map(|s| s.members()).sum();
    format!(
        "dreamnet-bus loadgen: {mode}, {:.1} s measured after {:.1} s warm-up\n  {} shard(s), {}, wait {:?}; {} producer thread(s) publishing as {} agents\n  payload {} B filler ({archived} B archived) in a {slot} B slot; {} subscriptions, {handlers} handlers (direct, broadcast, filtered, round-robin and least-loaded groups)",
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64(),
        opts.shards,
        if opts.pin { "pinned" } else { "unpinned" },
        opts.wait,
        opts.producers,
        workload::AGENTS.len(),
        opts.payload,
        SUBSCRIPTIONS.len(),
    ) + &if opts.inject.any() {
        format!(
            "\n  failures injected: fail {}, retry {} (1..={} times), panic {} per delivery; retry policy max {} attempts, base {} us; timer wheel {} per shard; dead-letter ring {}",
            opts.inject.fail_rate,
            opts.inject.retry_rate,
            opts.inject.max_retries,
            opts.inject.panic_rate,
            opts.reliability.max_attempts,
            opts.reliability.retry_base.as_micros(),
            opts.reliability.timer_capacity,
            opts.reliability.dead_letters,
        )
    } else {
        String::new()
    }
}

fn config_json(args: &Args, slot: usize, archived: usize) -> String {
    let q = report::json_string;
    format!(
        "{{\"mode\":{},\"rate\":{},\"load\":{},\"compare\":{},\"duration_s\":{},\"warmup_s\":{},\"shards\":{},\"pin\":{},\"producers\":{},\"payload\":{},\"archived_payload\":{archived},\"slot\":{slot},\"wait\":{},\"fail_rate\":{},\"retry_rate\":{},\"retries_per_event\":{},\"panic_rate\":{},\"inject_into\":{},\"max_attempts\":{},\"retry_base_us\":{},\"timer_capacity\":{},\"dead_letters\":{},\"dead_letter_policy\":{},\"idle_timeout_s\":{}}}",
        q(&format!("{:?}", args.mode).to_lowercase()),
        args.rate.map_or_else(|| "null".to_owned(), |r| r.to_string()),
        args.load,
        args.compare,
        args.duration,
        args.warmup,
        args.shards,
        args.pin,
        args.producers,
        args.payload,
        q(&format!("{:?}", args.wait).to_lowercase()),
        args.fail_rate,
        args.retry_rate,
        args.retries_per_event,
        args.panic_rate,
        q(&args.inject_into),
        args.max_attempts,
        args.retry_base_us,
        args.timer_capacity,
        args.dead_letters,
        q(match args.dead_letter_policy {
            DeadPolicy::DropOldest => "drop-oldest",
            DeadPolicy::RejectNew => "reject-new",
        }),
        args.idle_timeout,
    )
}
