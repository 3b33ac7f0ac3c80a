//! `loadgen`: the load generator for dreamnet-bus. Run with no flags first:
//!
//! ```text
//! cargo run --release --bin loadgen
//! cargo run --release --bin loadgen -- --compare --duration 5
//! cargo run --release --bin loadgen -- --mode open --rate 1000000 --pin
//! ```
//!
//! The workload, the baseline and the report live in the `dreamnet_bus_bench` library.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use dreamnet_bus::WaitStrategy;
use dreamnet_bus_bench::alloc::CountingAlloc;
use dreamnet_bus_bench::workload::{self, Mode, Options, SUBSCRIPTIONS};
use dreamnet_bus_bench::{baseline, dreamnet, report};

// Counts every allocation, so "allocations per event" is measured (see `alloc`).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Load generator for dreamnet-bus: several agents publish the spec's event types at mixed
/// priorities to subscribers of every routing strategy (direct, broadcast, filtered,
/// load-balanced round-robin and least-loaded); prints throughput, publish->handler
/// latency percentiles per priority, allocations per event, and a conservation check of
/// every event and every delivery.
///
/// Exit status: 0 when every count adds up, 2 when a conservation check fails, 1 on error.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
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

    /// closed: publish as fast as the bus accepts (throughput; latency then includes the
    /// time spent queued behind a full ring). open: publish at a fixed --rate.
    ///
    /// Open-loop latency is corrected for coordinated omission by intended-time stamping:
    /// event i of a producer is due at start + i / rate; its due time travels in the
    /// payload and latency is handler time minus due time, so an event held back by a
    /// stall counts the whole stall. hdrhistogram's `record_correct` is not used: it
    /// back-fills synthetic samples from one expected interval per recorder, but here
    /// each handler sees an irregular subset of several producers' events, so it has no
    /// single interval to assume, while the due time is exact.
    #[arg(long, value_enum, default_value_t = LoopMode::Closed, verbatim_doc_comment)]
    mode: LoopMode,

    /// Events per second for --mode open, all producers together.
    #[arg(long)]
    rate: Option<f64>,

    /// Also run the same workload on a baseline channel bus (bounded crossbeam-channel of
    /// boxed events + HashMap dispatch on one consumer thread) and print ours/theirs ratios.
    #[arg(long)]
    compare: bool,

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoopMode {
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Wait {
    Spin,
    Yield,
    Park,
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
fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    let opts = options(args)?;
    let (slot, archived) = dreamnet::slot_for(opts.payload).ok_or_else(|| {
        format!(
            "a payload of {} bytes fits no slot (max 1024)",
            opts.payload
        )
    })?;
    let header = describe(&opts, slot, archived);
    if !args.json {
        println!("{header}");
    }
    let mut runs = vec![dreamnet::run(&opts, slot)?];
    if args.compare {
        runs.push(baseline::run(&opts, baseline_capacity(&opts))?);
    }
    if !dreamnet_bus_bench::alloc::installed() {
        eprintln!("loadgen: the counting allocator is not installed; allocation counts are 0");
    }
    if args.json {
        println!(
            "{}",
            report::json(&config_json(args, slot, archived), &runs)
        );
    } else {
        for r in &runs {
            println!("\n{}", report::text(r));
        }
        if let [ours, theirs] = &runs[..] {
            println!("{}", report::compare_text(ours, theirs));
        }
    }
    Ok(runs.iter().all(report::RunReport::ok))
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
    let mode = match (args.mode, args.rate) {
        (LoopMode::Closed, None) => Mode::Closed,
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
        wait: match args.wait {
            Wait::Spin => WaitStrategy::Spin,
            Wait::Yield => WaitStrategy::Yield,
            Wait::Park => WaitStrategy::default(),
        },
        progress: !args.json,
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

fn describe(opts: &Options, slot: usize, archived: usize) -> String {
    let mode = match opts.mode {
        Mode::Closed => "closed loop".to_owned(),
        Mode::Open { rate } => format!("open loop at {rate:.0} events/s"),
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
    )
}

fn config_json(args: &Args, slot: usize, archived: usize) -> String {
    let q = report::json_string;
    format!(
        "{{\"mode\":{},\"rate\":{},\"duration_s\":{},\"warmup_s\":{},\"shards\":{},\"pin\":{},\"producers\":{},\"payload\":{},\"archived_payload\":{archived},\"slot\":{slot},\"wait\":{}}}",
        q(&format!("{:?}", args.mode).to_lowercase()),
        args.rate.map_or_else(|| "null".to_owned(), |r| r.to_string()),
        args.duration,
        args.warmup,
        args.shards,
        args.pin,
        args.producers,
        args.payload,
        q(&format!("{:?}", args.wait).to_lowercase()),
    )
}
