//! `dreamnet`: a command-line tool over a dreamnet-bus journal directory (feature `cli`).
//!
//! ```text
//! dreamnet journal info    DIR                 segments, seq and time range, sizes, watermark
//! dreamnet journal verify  DIR                 deep check of every record; exit 1 on damage
//! dreamnet journal repair  DIR                 tombstone damaged records, cut a torn tail, reseal
//! dreamnet journal tail    DIR [-n N] [--follow] [--max N] [--interval-ms MS]
//! dreamnet journal replay  DIR [--from-seq S] [--to-seq S] [--type T]... [--source ID]
//!                              [--correlation ID]
//! dreamnet journal stats   DIR [same filters] [--bucket-ms MS]
//! dreamnet journal thread  DIR CORRELATION     the conversation as an indented causal tree
//! dreamnet report DIR [--out FILE.svg] [filters] [--bucket-ms MS]
//!                                              an SVG: rate and latency over time, type mix
//! ```
//!
//! `stats` and `report` show a progress bar on stderr while they scan (only on a terminal,
//! never with `--json`).
//!
//! Every subcommand takes `--json`: one JSON object on stdout (`tail` and `replay` print
//! one object per record, i.e. JSON Lines). Types are shown and accepted as built-in names
//! (`agent.task`) or numeric ids (`42` or `#42`); sources as raw agent ids (a journal
//! holds ids, not the bus's name tables). Timestamps are the bus clock's nanoseconds.
//!
//! Exit codes: 0 success; 1 the journal is damaged (`JournalError::Corrupt`, printed
//! with file, byte offset, seq and what is wrong); 2 any other error (I/O, bad argument).
//! The journal is read with the default slot size (`DEFAULT_SLOT`); a journal written
//! with another one is refused with `SlotMismatch`.

mod error;
mod filter;
mod format;
mod inspect;
mod json;
mod progress;
mod records;
mod report;
mod stats;
mod thread;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;
use crate::filter::Filter;
use crate::json::Obj;
use crate::records::TailOptions;

#[derive(Parser, Debug)]
#[command(name = "dreamnet", version, about = "Tools for dreamnet-bus journals")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Inspect, check, repair and read a journal directory.
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Draw a journal as an SVG: rate over time, reaction latency over time, type mix.
    Report {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// The SVG file to write.
        #[arg(long, default_value = "dreamnet-report.svg")]
        out: PathBuf,
        /// Width of a time bucket in ms.
        #[arg(long, default_value_t = 1000)]
        bucket_ms: u64,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// The journal directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct FilterArgs {
    /// First sequence number (inclusive).
    #[arg(long)]
    from_seq: Option<u64>,
    /// Last sequence number (inclusive).
    #[arg(long)]
    to_seq: Option<u64>,
    /// Event type: a built-in name (agent.task) or a numeric id; repeat for several.
    #[arg(long = "type")]
    types: Vec<String>,
    /// Raw source agent id.
    #[arg(long)]
    source: Option<u32>,
    /// Correlation id.
    #[arg(long)]
    correlation: Option<u64>,
}

impl FilterArgs {
    fn filter(&self) -> Result<Filter, CliError> {
        let types = self
            .types
            .iter()
            .map(|t| format::parse_type(t).ok_or_else(|| CliError::UnknownType(t.clone())))
            .collect::<Result<_, _>>()?;
        Ok(Filter {
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            types,
            source: self.source,
            correlation: self.correlation,
        })
    }
}

#[derive(Subcommand, Debug)]
enum JournalCmd {
    /// Segments, seq range, time range, sizes and the timestamp watermark.
    Info(Common),
    /// Deep read-only check of every record; exit code 1 on damage.
    Verify(Common),
    /// Tombstone damaged records, cut a torn tail, rewrite missing footers.
    Repair(Common),
    /// Print the last records, and with --follow new ones as they are committed.
    Tail {
        #[command(flatten)]
        common: Common,
        /// Start this many records before the end.
        #[arg(short = 'n', long, default_value_t = 10)]
        last: u64,
        /// Keep polling for new records (stop with Ctrl-C or --max).
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Poll interval when following, in ms (clamped to 1..=10000).
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// Print the selected records in sequence order.
    Replay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Counts per type and per source, and the rate per time bucket.
    Stats {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// Width of a rate bucket in ms.
        #[arg(long, default_value_t = 1000)]
        bucket_ms: u64,
        /// List at most this many sources (the most active first).
        #[arg(long, default_value_t = usize::MAX, hide_default_value = true)]
        top: usize,
    },
    /// One conversation as a causal tree.
    Thread {
        #[command(flatten)]
        common: Common,
        /// The correlation id (the id of the event that started the conversation).
        correlation: u64,
    },
}

fn run(cmd: &JournalCmd, out: &mut dyn Write) -> Result<u8, CliError> {
    match cmd {
        JournalCmd::Info(c) => inspect::info(out, &c.dir, c.json),
        JournalCmd::Verify(c) => inspect::verify(out, &c.dir, c.json),
        JournalCmd::Repair(c) => inspect::repair(out, &c.dir, c.json),
        JournalCmd::Tail {
            common,
            last,
            follow,
            max,
            interval_ms,
        } => {
            let opts = TailOptions {
                last: *last,
                follow: *follow,
                max: *max,
                interval: Duration::from_millis((*interval_ms).clamp(1, 10_000)),
            };
            records::tail(out, &common.dir, opts, common.json)
        }
        JournalCmd::Replay { common, filter } => {
            records::replay(out, &common.dir, &filter.filter()?, common.json)
        }
        JournalCmd::Stats {
            common,
            filter,
            bucket_ms,
            top,
        } => stats::stats(
            out,
            &common.dir,
            &filter.filter()?,
            bucket_ms.saturating_mul(1_000_000),
            *top,
            common.json,
        ),
        JournalCmd::Thread {
            common,
            correlation,
        } => thread::thread(out, &common.dir, *correlation, common.json),
    }
}

fn wants_json(cmd: &JournalCmd) -> bool {
    match cmd {
        JournalCmd::Info(c) | JournalCmd::Verify(c) | JournalCmd::Repair(c) => c.json,
        JournalCmd::Tail { common, .. }
        | JournalCmd::Replay { common, .. }
        | JournalCmd::Stats { common, .. }
        | JournalCmd::Thread { common, .. } => common.json,
    }
}

fn run_top(top: &Top, out: &mut dyn Write) -> Result<u8, CliError> {
    match top {
        Top::Journal(cmd) => run(cmd, out),
        Top::Report {
            common,
            filter,
            out: svg,
            bucket_ms,
        } => report::report(
            out,
            &common.dir,
            svg,
            &filter.filter()?,
            bucket_ms.saturating_mul(1_000_000),
            common.json,
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let json = match &cli.command {
        Top::Journal(cmd) => wants_json(cmd),
        Top::Report { common, .. } => common.json,
    };
    let code = match run_top(&cli.command, &mut out) {
        Ok(code) => code,
        // `dreamnet journal replay DIR | head`: the reader went away, which is not a failure.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            if json {
                let o = Obj::new().bool("ok", false).str("error", &e.to_string());
                let _ = writeln!(out, "{}", o.done());
            }
            eprintln!("dreamnet: {e}");
            e.exit_code()
        }
    };
    let _ = out.flush();
    ExitCode::from(code)
}
