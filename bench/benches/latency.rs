//! Latency of dreamnet-bus beside the disruptor (crate `disruptor` 4.4), measured in the
//! same run (issue 9, goal 4). `cargo bench --bench latency`; `LATENCY_QUICK=1` for a
//! smoke run (CI), `LATENCY_SECS=N` for longer windows, `LATENCY_RATE=N` to fix the one-way
//! rate. Harness-free: it prints one table per bench.
//!
//! 1. Saturation: each pipeline closed loop, to find what this machine sustains now.
//! 2. One-way: producer on core 1, consumer on core 0; the producer stamps the raw TSC
//!    into the event and the consumer records `now - stamp`. Both run at the same rate,
//!    10 % of the lower of the two saturations (so both are far from queueing), paced by
//!    spinning on the TSC.
//!    A third row hands the same stamps through one cache line, no bus: the floor the
//!    machine gives at that moment.
//! 3. Ping-pong: round trip through two buses (two rings), back to back.
//!
//! The pieces, and what each implementation does exactly, are in
//! `dreamnet_bus_bench::latency`. During every measured window the main thread sleeps in
//! `join`; nothing prints until a table is complete.

use std::error::Error;
use std::process::ExitCode;

use dreamnet_bus_bench::latency::oneway::{self, Peer};
use dreamnet_bus_bench::latency::{floor, pingpong, table, Plan, Summary, Tsc};

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let plan = Plan::from_env()?;
    dreamnet_bus_bench::latency::cores()?;
    let tsc = Tsc::new();
    println!("latency: clock {}", tsc.source());
    println!(
        "latency: warm-up {:?}, measured window {:?} per run; producer core 1, consumer core 0",
        plan.warmup, plan.measure
    );
    // Other work on the machine shows up as millisecond tails (a pinned spinner that is
    // preempted); say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("latency: /proc/loadavg at start: {}", load.trim());
    }

    let peers = [Peer::Ours, Peer::Disruptor];
    let mut saturation = [0.0; 2];
    for (i, peer) in peers.iter().enumerate() {
        saturation[i] = oneway::saturation(*peer, &tsc, plan.saturation)?;
    }
    println!(
        "\nsaturation (closed loop, {:?}): dreamnet-bus {:.2} M ev/s, disruptor {:.2} M ev/s, ratio {:.3}",
        plan.saturation,
        saturation[0] / 1e6,
        saturation[1] / 1e6,
        saturation[0] / saturation[1]
    );

    let rate = plan
        .rate
        .unwrap_or(plan.load * saturation[0].min(saturation[1]));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for peer in peers {
        let (produced, rec) = oneway::one_way(peer, &tsc, plan.warmup, plan.measure, Some(rate))?;
        notes.push(format!(
            "  {}: {} events at {:.0} ev/s achieved, {} sent late by more than one interval",
            peer.name(),
            produced.measured,
            produced.rate(),
            produced.late
        ));
        rows.push(Summary::of(peer.name(), &rec));
    }
    let (produced, rec) = floor::one_way(&tsc, plan.warmup, plan.measure, Some(rate))?;
    notes.push(format!(
        "  {}: {} events at {:.0} ev/s achieved, {} sent late by more than one interval",
        floor::NAME,
        produced.measured,
        produced.rate(),
        produced.late
    ));
    rows.push(Summary::of(floor::NAME, &rec));
    let how = if plan.rate.is_some() {
        "LATENCY_RATE".to_owned()
    } else {
        format!("{:.0} % of the lower saturation", plan.load * 100.0)
    };
    println!(
        "\n{}{}",
        table(
            &format!(
                "one-way latency, TSC stamp -> handler, paced at {:.0} ev/s ({how})",
                rate
            ),
            &rows,
            &[(0, 1)]
        ),
        notes.join("\n")
    );

    let mut rows = Vec::new();
    for peer in peers {
        let rec = pingpong::round_trips(peer, &tsc, plan.warmup, plan.measure)?;
        rows.push(Summary::of(peer.name(), &rec));
    }
    println!(
        "\n{}",
        table(
            "ping-pong round trip (A -> B's handler -> second bus/ring -> A), back to back",
            &rows,
            &[(0, 1)]
        )
    );
    Ok(())
}
