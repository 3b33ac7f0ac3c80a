//! The progress bar of long scans (`journal stats`, `report`): indicatif on stderr, shown
//! only when stderr is a terminal and the output is not JSON, so pipes, files and scripts
//! see nothing of it.

use std::io::IsTerminal;
use std::path::Path;

use dreamnet_bus::journal;
use dreamnet_bus::DEFAULT_SLOT;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Updates the bar every this many records (a redraw per record would cost more than the
/// record).
const STEP: u64 = 4096;

/// A scan's progress over the journal's sequence range.
pub struct ScanProgress {
    bar: ProgressBar,
    first_seq: u64,
    seen: u64,
}

impl ScanProgress {
    /// A bar over the records of the journal in `dir`, hidden for `--json` or when stderr
    /// is not a terminal. The length comes from the segment footers (a cheap scan).
    pub fn over(dir: &Path, json: bool) -> Self {
        let visible = !json && std::io::stderr().is_terminal();
        if !visible {
            return ScanProgress {
                bar: ProgressBar::hidden(),
                first_seq: 1,
                seen: 0,
            };
        }
        // The length is a nicety: if the cheap scan fails, the records' own read reports
        // the damage (with its typed error) and the bar runs without a length.
        let scan = journal::verify::<DEFAULT_SLOT>(dir, false).ok();
        let first_seq = scan
            .as_ref()
            .and_then(|s| s.segments.first())
            .map_or(1, |s| s.summary.first_seq);
        let len = scan.as_ref().map(journal::Scan::records);
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {bar:40} {human_pos}/{human_len} records, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        // Drawn at once, so even a short scan shows where it is.
        bar.tick();
        ScanProgress {
            bar,
            first_seq,
            seen: 0,
        }
    }

    /// The scan reached the record `seq`.
    #[inline]
    pub fn at(&mut self, seq: u64) {
        self.seen += 1;
        if self.seen % STEP == 0 {
            self.bar
                .set_position(seq.saturating_sub(self.first_seq) + 1);
        }
    }

    /// The scan is over: the bar is cleared.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
