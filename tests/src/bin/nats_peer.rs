//! The other process of the two-process NATS tests: one mesh node driven over stdin.
//!
//! `nats_peer <url> <me> <peer>` prints `READY` once bridged, then answers one line per
//! command: `direct N`, `broadcast N`, `jobs N` (send; answer `OK`), `counts` (answer
//! `COUNTS <direct> <broadcast> <group>`), `stats` (answer `STATS <in_published>
//! <dropped total>`), `quit` (shut down; answer `BYE`). Any error ends it with a message
//! on stderr and exit code 1.

use std::io::{BufRead, Write};

use dreamnet_bus_tests::mesh::Node;

fn main() {
    if let Err(e) = run() {
        eprintln!("nats_peer: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, me, peer] = args.as_slice() else {
        return Err("usage: nats_peer <url> <me> <peer>".into());
    };
    let mut node = Node::start(url, me, peer)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or("");
        let n: u64 = words.next().map(str::parse).transpose()?.unwrap_or(0);
        match command {
            "direct" => node.send_direct(n)?,
            "broadcast" => node.send_broadcast(n)?,
            "jobs" => node.send_jobs(n)?,
            "counts" => {
                let c = node.counts();
                writeln!(out, "COUNTS {} {} {}", c.direct, c.broadcast, c.group)?;
                out.flush()?;
                continue;
            }
            "stats" => {
                let s = node.bridge.stats();
                writeln!(out, "STATS {} {}", s.in_published, s.dropped_total())?;
                out.flush()?;
                continue;
            }
            "quit" => break,
            other => return Err(format!("unknown command {other:?}").into()),
        }
        writeln!(out, "OK")?;
        out.flush()?;
    }
    drop(node);
    writeln!(out, "BYE")?;
    out.flush()?;
    Ok(())
}
