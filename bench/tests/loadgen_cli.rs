//! The loadgen binary end to end, as a user runs it (short windows: the machine is
//! shared): the default phases and their headline, `--compare` with the disruptor lines
//! and ratios, `--plot` writing an SVG, `--json` carrying the headline, and bad flags
//! refused with a message and exit status 1.

use std::process::{Command, Output};
use std::sync::Mutex;

/// One loadgen at a time: each spins a producer and a consumer, and two at once on a
/// 2-core machine would measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn loadgen(args: &[&str]) -> Output {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--duration", "0.2", "--warmup", "0.05"])
        .args(args)
        .output()
        .expect("loadgen runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn default_run_prints_saturation_then_open_loop_latency_at_half_of_it() {
    let o = loadgen(&[]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("then open loop at 50 % of the saturation it measured"),
        "{out}"
    );
    let headline = out
        .lines()
        .find(|l| l.trim_start().starts_with("dreamnet-bus (workload)"))
        .expect("a headline line for dreamnet-bus");
    let cols: Vec<&str> = headline.split_whitespace().collect();
    // label (2 words), M events/s, ours/x, open ev/s, p50, p99, p99.9, ratio
    let saturation: f64 = cols[2].parse().expect("saturation");
    let open_rate: f64 = cols[4].parse().expect("open rate");
    assert!(saturation > 0.0, "{headline}");
    // The open phase ran at about half of the saturation (events/s vs M events/s; a
    // producer held up on a busy machine falls a little short).
    let share = open_rate / (saturation * 1e6);
    assert!(
        (0.3..=0.55).contains(&share),
        "open phase at {share} of saturation: {headline}"
    );
    let p50: f64 = cols[5].parse().expect("p50");
    assert!(p50 > 0.0, "{headline}");
}

#[test]
fn compare_plots_and_json_carry_every_implementation() {
    let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("latency.svg");
    let o = loadgen(&["--compare", "--json", "--plot", svg.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for label in [
        "dreamnet-bus (workload)",
        "channel bus (workload)",
        "disruptor (u64 slot)",
        "disruptor (256 B slot)",
    ] {
        assert!(
            out.contains(&format!("{{\"label\":\"{label}\",\"saturation_per_s\":")),
            "{label} missing from the JSON headline: {out}"
        );
    }
    // Ratios pair each phase of ours with the same phase of the channel bus.
    assert!(
        out.contains("\"ratios\":[{\"ours\":0,\"theirs\":2,\"open_loop\":false,")
            && out.contains("{\"ours\":1,\"theirs\":3,\"open_loop\":true,"),
        "{out}"
    );
    let plot = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(plot.starts_with("<svg"), "{}", &plot[..plot.len().min(200)]);
    for label in ["dreamnet-bus (workload)", "disruptor (256 B slot)", "99.9%"] {
        assert!(plot.contains(label), "{label} missing from the plot");
    }
    assert!(
        plot.matches("<polyline").count() >= 4,
        "one line per implementation"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    for (args, says) in [
        (&["--load", "0"][..], "--load must be in (0, 1]"),
        (&["--rate", "1000"][..], "--rate needs --mode open"),
        (&["--mode", "open"][..], "--mode open needs --rate"),
    ] {
        let o = loadgen(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
