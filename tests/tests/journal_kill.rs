//! kill -9: a child process (this test binary, re-invoked with an environment variable)
//! appends to a journal at full speed under `Os` or `Batch` and reports its durable
//! watermark through a pipe (its stdout). The parent kills it (SIGKILL) at a random point,
//! then checks, before and after recovery, that every event the child reported durable is
//! there with the right content, and that no corrupt record is ever returned.
//!
//! 100 kills locally; 10 when `CI` is set (`.ci/run`). Small segments make the kills land
//! in rollovers (footer writes, segment creation) too; retention keeps the directory
//! bounded (events it deleted are older than any kill's window and are not checked).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dreamnet_bus::journal::{
    Durability, Journal, JournalConfig, JournalReader, Retention, Selection,
};
use dreamnet_bus::{Event, EventType};

const CHILD_DIR: &str = "DNJ_KILL_CHILD_DIR";
const CHILD_POLICY: &str = "DNJ_KILL_CHILD_POLICY";
const SEGMENT_RECORDS: u32 = 4096;

fn config(dir: &Path, policy: &str) -> JournalConfig {
    let durability = match policy {
        "batch" => Durability::Batch {
            every_events: 512,
            every: Duration::from_millis(2),
        },
        _ => Durability::Os,
    };
    JournalConfig::new(dir)
        .segment_records(SEGMENT_RECORDS)
        .durability(durability)
        .retention(Retention {
            max_bytes: Some(32 << 20),
            max_age: None,
        })
}

/// The event the child appends as `seq`: its content is a function of `seq`.
fn event_for(seq: u64) -> Event {
    Event::new(EventType::AGENT_STATUS)
        .with_correlation_id(seq ^ 0x5eed_5eed)
        .with_payload(&seq)
        .expect("a u64 fits")
}

/// The child: append forever, report the durable watermark whenever it moves (under `Os`
/// every 256 appends, as each append is durable at once).
#[test]
fn kill_child_entry() {
    let (Ok(dir), Ok(policy)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_POLICY)) else {
        return; // not a child: nothing to do
    };
    let mut journal: Journal = Journal::open(config(Path::new(&dir), &policy)).expect("child open");
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {}", journal.next_seq()).expect("pipe");
    out.flush().expect("pipe");
    let mut reported = 0;
    loop {
        let seq = journal.next_seq();
        assert_eq!(journal.append(&event_for(seq)).expect("append"), seq);
        let durable = journal.durable_seq();
        if durable > reported && (policy != "os" || seq % 256 == 0) {
            writeln!(out, "DURABLE {durable}").expect("pipe");
            out.flush().expect("pipe");
            reported = durable;
        }
    }
}

/// Every record readable, in order, with the content its seq implies; returns the last seq.
fn check_journal(dir: &Path, durable: u64, when: &str) -> u64 {
    let reader: JournalReader = JournalReader::open(dir).expect("reader open");
    let first = reader.first_seq();
    let mut next = first;
    for rec in reader.records(&Selection::all()) {
        let rec = rec.unwrap_or_else(|e| panic!("{when}: corrupt record returned: {e}"));
        assert_eq!(rec.seq(), next, "{when}: sequence");
        let e = rec.event();
        assert_eq!(
            e.header().correlation_id(),
            next ^ 0x5eed_5eed,
            "{when}: content of {next}"
        );
        assert_eq!(
            *e.payload::<u64>().expect("payload validates"),
            next,
            "{when}"
        );
        next += 1;
    }
    let last = next - 1;
    assert!(
        last >= durable,
        "{when}: durable {durable} reported, journal ends at {last} (first {first})"
    );
    last
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_loses_nothing_reported_durable() {
    if std::env::var(CHILD_DIR).is_ok() {
        return; // inside a child
    }
    let kills = if std::env::var_os("CI").is_some() {
        10
    } else {
        100
    };
    let dir: PathBuf =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("journal-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("test binary");
    let mut total_durable = 0;
    let mut cut_tails = 0;
    for round in 0..kills {
        let policy = if round % 2 == 0 { "os" } else { "batch" };
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir)
            .env(CHILD_POLICY, policy)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut durable = 0u64;
        let mut start_seq = None;
        // Wait until the child reports an event of its own durable, then let it run for a
        // random while.
        for line in lines.by_ref() {
            let line = line.expect("pipe");
            // The harness prints "test kill_child_entry ... " before it, on the same line.
            if let Some((_, n)) = line.split_once("READY ") {
                start_seq = n.parse::<u64>().ok();
            } else if let Some(n) = line.strip_prefix("DURABLE ") {
                durable = n.parse().expect("number");
                // The first report may only cover what the child recovered.
                if start_seq.is_some_and(|s| durable >= s) {
                    break;
                }
            }
        }
        let start_seq =
            start_seq.unwrap_or_else(|| panic!("round {round}: the child never started"));
        std::thread::sleep(Duration::from_micros(rng.below(30_000)));
        child.kill().expect("SIGKILL");
        // Lines written before the kill are still in the pipe.
        for line in lines {
            if let Some(n) = line.expect("pipe").strip_prefix("DURABLE ") {
                durable = durable.max(n.parse().expect("number"));
            }
        }
        child.wait().expect("reap");
        assert!(
            durable >= start_seq,
            "round {round}: durable {durable} < start {start_seq}"
        );
        let when = format!("round {round} ({policy}, seed {seed:#x}) before recovery");
        check_journal(&dir, durable, &when);
        let journal: Journal = Journal::open(config(&dir, policy))
            .unwrap_or_else(|e| panic!("round {round} ({policy}, seed {seed:#x}): recovery: {e}"));
        cut_tails += journal.recovered().len();
        let next = journal.next_seq();
        drop(journal);
        let when = format!("round {round} ({policy}, seed {seed:#x}) after recovery");
        assert_eq!(check_journal(&dir, durable, &when) + 1, next, "{when}");
        total_durable += durable - start_seq + 1;
    }
    eprintln!(
        "{kills} kills (seed {seed:#x}): {total_durable} events reported durable and found; {cut_tails} torn tails cut"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The harness must not hang on a child that never reports (it would if the child failed
/// to open): the child prints READY before appending, and the parent panics on EOF.
#[test]
fn child_mode_is_inert_without_the_environment() {
    let t = Instant::now();
    kill_child_entry();
    assert!(t.elapsed() < Duration::from_secs(1));
}
