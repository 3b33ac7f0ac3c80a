//! End-to-end tests of the `dreamnet` binary (feature `cli`): real journals written
//! through the public API (events stamped by a real bus, so ids, sources, timestamps and
//! causation are what a bus produces), the real binary run as a child process, and its
//! text and JSON output checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::journal::layout::{record_size, SEGMENT_HEADER_SIZE};
use dreamnet_bus::journal::{Journal, JournalConfig};
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, DEFAULT_SLOT};

const SEGMENT_RECORDS: u32 = 16;

/// A fresh temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("dreamnet-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dreamnet(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dreamnet"));
    cmd.arg("journal").arg(args[0]).arg(dir).args(&args[1..]);
    cmd.output().expect("run dreamnet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 output")
}

/// Runs a subcommand that must succeed and returns its stdout.
fn ok(args: &[&str], dir: &Path) -> String {
    let o = dreamnet(args, dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "dreamnet {args:?}: stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// What the sample journal holds, as the bus stamped it.
struct Sample {
    root_id: u64,
    a: u32,
    b: u32,
}

/// 54 stamped events in 4 segments: a conversation (a task, a response and a status
/// caused by it, an error caused by the response), 30 `system.health` from `b` and 20
/// `agent.task` from `a`.
fn write_sample(dir: &Path) -> Sample {
    let (bus, mut shards) = Bus::builder().build_polled().expect("bus");
    let a = bus.register_agent("cli-test-a").expect("agent a");
    let b = bus.register_agent("cli-test-b").expect("agent b");
    let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
    let sink = Arc::clone(&seen);
    bus.subscribe(Filter::any(), move |d| {
        sink.lock().expect("sink").push(d.event().clone());
        Outcome::Done
    })
    .expect("subscribe");
    let mut pa = bus.publisher(a).expect("publisher a");
    let mut pb = bus.publisher(b).expect("publisher b");
    let mut last = || {
        for s in shards.iter_mut() {
            s.poll(64);
        }
        seen.lock()
            .expect("seen")
            .last()
            .expect("delivered")
            .clone()
    };
    pa.try_publish(Event::new(EventType::AGENT_TASK))
        .expect("root");
    let root = last();
    pb.try_publish(Event::new(EventType::AGENT_RESPONSE).caused_by(root.header()))
        .expect("response");
    let response = last();
    pa.try_publish(Event::new(EventType::AGENT_STATUS).caused_by(root.header()))
        .expect("status");
    last();
    pb.try_publish(Event::new(EventType::AGENT_ERROR).caused_by(response.header()))
        .expect("error");
    last();
    for _ in 0..30 {
        pb.try_publish(Event::new(EventType::SYSTEM_HEALTH))
            .expect("health");
        last();
    }
    for i in 0..20 {
        pa.try_publish(Event::new(EventType::AGENT_TASK).with_correlation_id(1_000 + i))
            .expect("task");
        last();
    }
    let events = seen.lock().expect("seen").clone();
    assert_eq!(events.len(), 54);
    let mut journal: Journal =
        Journal::open(JournalConfig::new(dir).segment_records(SEGMENT_RECORDS)).expect("journal");
    for e in &events {
        journal.append(e).expect("append");
    }
    journal.close().expect("close");
    Sample {
        root_id: root.header().id(),
        a: a.raw(),
        b: b.raw(),
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn seq_of(line: &str) -> u64 {
    line.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seq in {line:?}"))
}

#[test]
fn info_reports_segments_ranges_and_sizes() {
    let tmp = TempDir::new("info");
    write_sample(&tmp.0);
    let text = ok(&["info"], &tmp.0);
    assert!(text.contains("segments: 4  records: 54"), "{text}");
    assert!(text.contains("seq: 1..=54"), "{text}");
    assert_eq!(text.matches(" sealed ").count(), 3, "{text}");
    let json = ok(&["info", "--json"], &tmp.0);
    for field in [
        "\"segments\":4",
        "\"records\":54",
        "\"first_seq\":1",
        "\"last_seq\":54",
        "\"next_seq\":55",
        "\"fixes\":[]",
    ] {
        assert!(json.contains(field), "{field} missing in {json}");
    }
    let seg_bytes = (SEGMENT_HEADER_SIZE + 16 * record_size(DEFAULT_SLOT)) as u64;
    assert!(
        json.contains(&format!("\"capacity\":{SEGMENT_RECORDS}")),
        "{json}"
    );
    assert!(
        json.trim_end().ends_with('}') && json.lines().count() == 1,
        "{json}"
    );
    let total: u64 = json
        .split("\"bytes\":")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .expect("bytes");
    assert!(
        total > 4 * seg_bytes,
        "{total} bytes for 4 segments of {seg_bytes}+"
    );
}

#[test]
fn replay_filters_select_the_right_records() {
    let tmp = TempDir::new("replay");
    let s = write_sample(&tmp.0);
    let all = ok(&["replay"], &tmp.0);
    let seqs: Vec<u64> = lines(&all).iter().map(|l| seq_of(l)).collect();
    assert_eq!(seqs, (1..=54).collect::<Vec<_>>());

    let range = ok(&["replay", "--from-seq", "10", "--to-seq", "19"], &tmp.0);
    let seqs: Vec<u64> = lines(&range).iter().map(|l| seq_of(l)).collect();
    assert_eq!(seqs, (10..=19).collect::<Vec<_>>());

    let responses = ok(&["replay", "--type", "agent.response"], &tmp.0);
    assert_eq!(lines(&responses).len(), 1, "{responses}");
    assert!(responses.contains("type=agent.response"));
    // By numeric id: system.health is 5.
    let health = ok(&["replay", "--type", "5"], &tmp.0);
    assert_eq!(lines(&health).len(), 30);

    let from_b = ok(&["replay", "--source", &s.b.to_string()], &tmp.0);
    assert_eq!(lines(&from_b).len(), 32, "{from_b}"); // response, error, 30 health
    let from_a = ok(
        &[
            "replay",
            "--source",
            &s.a.to_string(),
            "--type",
            "agent.task",
        ],
        &tmp.0,
    );
    assert_eq!(lines(&from_a).len(), 21); // the root and 20 tasks

    let conv = ok(&["replay", "--correlation", &s.root_id.to_string()], &tmp.0);
    assert_eq!(lines(&conv).len(), 3, "{conv}"); // response, status, error

    let json = ok(&["replay", "--json", "--from-seq", "50"], &tmp.0);
    let json_lines = lines(&json);
    assert_eq!(json_lines.len(), 5);
    assert!(
        json_lines[0].starts_with("{\"seq\":50,"),
        "{}",
        json_lines[0]
    );
    assert!(json_lines.iter().all(|l| l.ends_with('}')));
}

#[test]
fn bad_type_is_a_typed_error_with_the_value() {
    let tmp = TempDir::new("badtype");
    write_sample(&tmp.0);
    let o = dreamnet(&["replay", "--type", "no.such.type"], &tmp.0);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"no.such.type\""));
    let o = dreamnet(&["info", "--json"], &tmp.0.join("missing"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).starts_with("{\"ok\":false,\"error\":"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn stats_counts_types_sources_and_buckets() {
    let tmp = TempDir::new("stats");
    let s = write_sample(&tmp.0);
    let json = ok(&["stats", "--json"], &tmp.0);
    for field in [
        "\"records\":54".to_owned(),
        "{\"type\":\"system.health\",\"type_id\":5,\"count\":30}".to_owned(),
        "{\"type\":\"agent.task\",\"type_id\":0,\"count\":21}".to_owned(),
        "{\"type\":\"agent.response\",\"type_id\":1,\"count\":1}".to_owned(),
        format!("{{\"source\":{},\"count\":32}}", s.b),
        format!("{{\"source\":{},\"count\":22}}", s.a),
    ] {
        assert!(json.contains(&field), "{field} missing in {json}");
    }
    // Bucket counts add up to the records.
    let bucket_total: u64 = json
        .split("\"buckets\":")
        .nth(1)
        .expect("buckets")
        .split("\"count\":")
        .skip(1)
        .map(|s| {
            s.split(',')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .expect("count")
        })
        .sum();
    assert_eq!(bucket_total, 54);
    let text = ok(&["stats", "--type", "agent.task"], &tmp.0);
    assert!(text.starts_with("records: 21 "), "{text}");
    assert!(text.contains("by type:\n  agent.task"), "{text}");
}

#[test]
fn thread_is_drawn_as_a_causal_tree() {
    let tmp = TempDir::new("thread");
    let s = write_sample(&tmp.0);
    let text = ok(&["thread", &s.root_id.to_string()], &tmp.0);
    let shape: Vec<(usize, &str)> = lines(&text)
        .iter()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            let ty = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("type="))
                .expect("type");
            (indent / 2, ty)
        })
        .collect();
    assert_eq!(
        shape,
        [
            (0, "agent.task"),
            (1, "agent.response"),
            (2, "agent.error"),
            (1, "agent.status"),
        ],
        "{text}"
    );
    let json = ok(&["thread", &s.root_id.to_string(), "--json"], &tmp.0);
    assert!(json.contains("\"events\":4"), "{json}");
    let depths: Vec<&str> = json.split("\"depth\":").skip(1).map(|s| &s[..1]).collect();
    assert_eq!(depths, ["0", "1", "2", "1"]);
    let none = ok(&["thread", "987654321"], &tmp.0);
    assert!(none.starts_with("no events"), "{none}");
}

#[test]
fn tail_prints_the_end_and_follows_a_live_writer() {
    let tmp = TempDir::new("tail");
    write_sample(&tmp.0);
    let last = ok(&["tail", "-n", "5"], &tmp.0);
    let seqs: Vec<u64> = lines(&last).iter().map(|l| seq_of(l)).collect();
    assert_eq!(seqs, [50, 51, 52, 53, 54]);

    // Follow: the writer appends (into new segments, too) until the tail has seen 20.
    let mut journal: Journal =
        Journal::open(JournalConfig::new(&tmp.0).segment_records(SEGMENT_RECORDS)).expect("open");
    let child = Command::new(env!("CARGO_BIN_EXE_dreamnet"))
        .args(["journal", "tail"])
        .arg(&tmp.0)
        .args([
            "-n",
            "0",
            "--follow",
            "--max",
            "20",
            "--interval-ms",
            "5",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tail");
    let child = Arc::new(Mutex::new(child));
    let started = Instant::now();
    loop {
        if child
            .lock()
            .expect("child")
            .try_wait()
            .expect("wait")
            .is_some()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tail --follow did not stop"
        );
        journal
            .append(&Event::new(EventType::SYSTEM_EVENT))
            .expect("append");
        std::thread::sleep(Duration::from_millis(2));
    }
    let child = Arc::try_unwrap(child)
        .expect("one owner")
        .into_inner()
        .expect("child");
    let o = child.wait_with_output().expect("output");
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let seqs: Vec<u64> = lines(&out)
        .iter()
        .map(|l| {
            l.strip_prefix("{\"seq\":")
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("not a record: {l}"))
        })
        .collect();
    assert_eq!(seqs.len(), 20, "{out}");
    assert!(seqs[0] > 54, "only new records: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(out.contains("\"type\":\"system.event\""));
}

#[test]
fn verify_finds_damage_and_repair_fixes_it() {
    let tmp = TempDir::new("damage");
    let mut journal: Journal =
        Journal::open(JournalConfig::new(&tmp.0).segment_records(SEGMENT_RECORDS)).expect("open");
    for i in 0..40u64 {
        journal
            .append(&Event::new(EventType::AGENT_TASK).with_correlation_id(i + 1))
            .expect("append");
    }
    journal.close().expect("close");
    drop(journal); // releases the directory lock repair takes
    assert!(ok(&["verify"], &tmp.0).starts_with("ok\n"));

    // Flip a byte inside record 3 (seq 4) of the first, sealed, segment.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&tmp.0)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let mut bytes = std::fs::read(&segs[0]).expect("read");
    let at = SEGMENT_HEADER_SIZE + 3 * record_size(DEFAULT_SLOT) + 40;
    bytes[at] ^= 0x5a;
    std::fs::write(&segs[0], bytes).expect("write");

    let o = dreamnet(&["verify"], &tmp.0);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.starts_with("DAMAGED: corrupt journal"), "{text}");
    assert!(text.contains("(seq 4)"), "{text}");
    let o = dreamnet(&["verify", "--json"], &tmp.0);
    assert_eq!(o.status.code(), Some(1));
    let json = stdout(&o);
    assert!(json.starts_with("{\"ok\":false,"), "{json}");
    assert!(json.contains("\"seq\":4,"), "{json}");

    let repaired = ok(&["repair"], &tmp.0);
    assert!(repaired.contains("tombstoned seq 4 in"), "{repaired}");
    assert!(ok(&["verify"], &tmp.0).starts_with("ok\n"));
    assert!(ok(&["repair", "--json"], &tmp.0).contains("\"fixes\":[]"));
    let replay = ok(&["replay"], &tmp.0);
    let seqs: Vec<u64> = lines(&replay).iter().map(|l| seq_of(l)).collect();
    assert_eq!(seqs.len(), 39);
    assert!(!seqs.contains(&4));
}

#[test]
fn stats_gives_reaction_latency_by_type_and_the_top_sources() {
    let tmp = TempDir::new("stats-latency");
    let s = write_sample(&tmp.0);
    let o = dreamnet(&["stats", "--json"], &tmp.0);
    assert_eq!(o.status.code(), Some(0));
    // Piped stderr: no progress bar, nothing at all.
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let json = stdout(&o);
    // The conversation: a response and a status caused by the task, an error caused by
    // the response; each is one reaction of its type.
    for ty in ["agent.response", "agent.status", "agent.error"] {
        let field = format!("{{\"type\":\"{ty}\",\"type_id\":");
        let at = json
            .split("\"reaction_latency_by_type\":")
            .nth(1)
            .and_then(|rest| rest.find(&field).map(|i| &rest[i..]))
            .unwrap_or_else(|| panic!("{ty} missing in {json}"));
        assert!(at.contains("\"reactions\":1,"), "{at}");
    }
    assert!(json.contains("\"causes_unmatched\":0"), "{json}");
    let text = ok(&["stats", "--top", "1"], &tmp.0);
    assert!(
        text.contains(&format!("by source:\n  {:<20} 32\n  (1 more)", s.b)),
        "{text}"
    );
    assert!(text.contains("reaction latency by type"), "{text}");
    assert!(text.contains("  agent.error          n=1 "), "{text}");
}

fn report(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dreamnet"))
        .arg("report")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dreamnet report")
}

#[test]
fn report_writes_an_svg_of_rate_latency_and_type_mix() {
    let tmp = TempDir::new("report");
    write_sample(&tmp.0);
    let svg = tmp.0.join("report.svg");
    let o = report(
        &["--out", svg.to_str().expect("utf-8 path"), "--json"],
        &tmp.0,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stderr.is_empty(), "--json shows no progress bar");
    let json = stdout(&o);
    assert!(json.starts_with("{\"ok\":true,\"svg\":"), "{json}");
    assert!(json.contains("\"records\":54,"), "{json}");
    assert!(json.contains("\"types\":5,"), "{json}");
    assert!(json.contains("\"reactions\":3"), "{json}");
    let picture = std::fs::read_to_string(&svg).expect("the svg was written");
    assert!(
        picture.starts_with("<svg"),
        "{}",
        &picture[..80.min(picture.len())]
    );
    for text in [
        "events per second",
        "reaction latency",
        "type mix",
        "system.health",
        "agent.task",
    ] {
        assert!(picture.contains(text), "{text} missing in the svg");
    }
    // Text mode says where it wrote.
    let o = report(&["--out", svg.to_str().expect("utf-8 path")], &tmp.0);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with(&format!("wrote {}: 54 records", svg.display())));
}

#[test]
fn report_with_nothing_selected_is_a_typed_error() {
    let tmp = TempDir::new("report-empty");
    write_sample(&tmp.0);
    let svg = tmp.0.join("none.svg");
    let o = report(
        &[
            "--out",
            svg.to_str().expect("utf-8 path"),
            "--type",
            "agent.capability",
            "--json",
        ],
        &tmp.0,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("\"ok\":false"), "{}", stdout(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no records to plot"));
    assert!(!svg.exists());
}

/// The progress bar is drawn on a terminal (a pseudo-terminal from `script`, where the
/// machine has it) and never with `--json`.
#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give the binary a terminal");
        return;
    }
    let tmp = TempDir::new("progress");
    write_sample(&tmp.0);
    let run = |extra: &str| {
        let cmd = format!(
            "{} journal stats {} {extra} >/dev/null",
            env!("CARGO_BIN_EXE_dreamnet"),
            tmp.0.display()
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script");
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let shown = run("");
    assert!(
        shown.contains("/54 records"),
        "no bar on the terminal: {shown:?}"
    );
    let json = run("--json");
    assert!(!json.contains("records,"), "a bar with --json: {json:?}");
}
