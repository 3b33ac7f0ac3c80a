//! Two buses in two OS processes, bridged through a real nats-server: direct, broadcast and
//! a load-balanced group spread across both, with exact counts. The other process is the
//! `nats_peer` binary of this package, driven over its stdin.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::DropReason;
use dreamnet_bus_tests::mesh::{Counts, Node};
use dreamnet_bus_tests::nats_server::NatsServer;

/// The peer process and its pipes; killed on drop if still running.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(url: &str, me: &str, peer: &str) -> Peer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nats_peer"))
            .args([url, me, peer])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nats_peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = BufReader::new(child.stdout.take().expect("peer stdout"));
        let mut peer = Peer {
            child,
            stdin,
            stdout,
        };
        assert_eq!(peer.line(), "READY");
        peer
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from peer");
        assert!(!line.is_empty(), "the peer process ended");
        line.trim().to_owned()
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to peer");
        self.stdin.flush().expect("flush to peer");
        self.line()
    }

    fn counts(&mut self) -> Counts {
        let answer = self.ask("counts");
        let n: Vec<u64> = answer
            .strip_prefix("COUNTS ")
            .unwrap_or_else(|| panic!("bad answer {answer:?}"))
            .split(' ')
            .map(|w| w.parse().expect("a count"))
            .collect();
        Counts {
            direct: n[0],
            broadcast: n[1],
            group: n[2],
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `done` holds or `timeout` passes; returns whether it held.
fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

#[test]
fn two_processes_direct_broadcast_and_group_exact_counts() {
    let server = NatsServer::start();
    let mut beta = Peer::spawn(&server.url(), "beta", "alpha");
    let mut alpha = Node::start(&server.url(), "alpha", "beta").expect("alpha node");

    const A_DIRECT: u64 = 300;
    const B_DIRECT: u64 = 200;
    const A_NEWS: u64 = 250;
    const B_NEWS: u64 = 150;
    const A_JOBS: u64 = 400;
    const B_JOBS: u64 = 350;
    alpha.send_direct(A_DIRECT).unwrap();
    alpha.send_broadcast(A_NEWS).unwrap();
    alpha.send_jobs(A_JOBS).unwrap();
    assert_eq!(beta.ask(&format!("direct {B_DIRECT}")), "OK");
    assert_eq!(beta.ask(&format!("broadcast {B_NEWS}")), "OK");
    assert_eq!(beta.ask(&format!("jobs {B_JOBS}")), "OK");

    let news = A_NEWS + B_NEWS;
    let jobs = A_JOBS + B_JOBS;
    let mut last = (Counts::default(), Counts::default());
    let settled = eventually(Duration::from_secs(20), || {
        last = (alpha.counts(), beta.counts());
        let (a, b) = last;
        a.direct == B_DIRECT
            && b.direct == A_DIRECT
            && a.broadcast == news
            && b.broadcast == news
            && a.group + b.group == jobs
    });
    assert!(settled, "counts never settled: alpha, beta = {last:?}");
    // Exact: nothing more arrives (no echo, no loop, no duplicate).
    std::thread::sleep(Duration::from_millis(300));
    let (a, b) = (alpha.counts(), beta.counts());
    assert_eq!((a, b), last, "more deliveries after settling");
    // The group is spread across both processes: each handled some of the jobs.
    assert!(a.group > 0 && b.group > 0, "group not spread: {a:?} {b:?}");

    let stats = alpha.bridge.stats();
    assert_eq!(
        stats.in_published,
        B_DIRECT + B_NEWS + a.group,
        "alpha published what came in: {stats:?}"
    );
    assert_eq!(stats.dropped_total(), 0, "alpha dropped: {stats:?}");
    // What alpha brought in reached the export subscriptions and was not sent back out.
    assert_eq!(stats.out_from_wire, B_NEWS + a.group, "{stats:?}");
    assert_eq!(stats.out_sent, A_DIRECT + A_NEWS + A_JOBS, "{stats:?}");
    assert_eq!(stats.dropped(DropReason::Loop), 0);
    let beta_stats = beta.ask("stats");
    assert_eq!(
        beta_stats,
        format!("STATS {} 0", A_DIRECT + A_NEWS + b.group)
    );
    assert_eq!(beta.ask("quit"), "BYE");
}

/// A group with one process: its own work comes back to it through the NATS queue group
/// (the group connection has echo; the main one does not, so broadcasts do not echo).
#[test]
fn a_group_of_one_process_takes_its_own_work_and_broadcasts_do_not_echo() {
    let server = NatsServer::start();
    let mut alpha = Node::start(&server.url(), "alpha", "beta").expect("alpha node");
    alpha.send_jobs(100).unwrap();
    alpha.send_broadcast(10).unwrap();
    let settled = eventually(Duration::from_secs(10), || alpha.counts().group == 100);
    assert!(settled, "{:?} {:?}", alpha.counts(), alpha.bridge.stats());
    std::thread::sleep(Duration::from_millis(200));
    let c = alpha.counts();
    assert_eq!((c.group, c.broadcast), (100, 10), "{c:?}");
    let s = alpha.bridge.stats();
    assert_eq!(s.in_received, 100, "only the group's work came back: {s:?}");
    assert_eq!(s.dropped_total(), 0, "{s:?}");
}
