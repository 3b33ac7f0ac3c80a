//! What a subcommand can fail with, and the exit code each failure maps to.

use dreamnet_bus::journal::JournalError;
use thiserror::Error;

/// A subcommand failed.
#[derive(Debug, Error)]
pub enum CliError {
    /// The journal could not be read, or is damaged.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Writing the output failed (a closed pipe, a full disk).
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// `--type` is neither a built-in type name nor a numeric id; the value is handed back.
    #[error("unknown event type {0:?}: give a built-in name (agent.task, ...) or a numeric id")]
    UnknownType(String),
    /// `report` found no record to draw (an empty journal, or filters that select none).
    #[error("no records to plot in {}", .0.display())]
    NothingToPlot(std::path::PathBuf),
    /// `report` could not write its SVG.
    #[error("writing the report {}: {reason}", path.display())]
    Plot {
        /// The SVG file asked for.
        path: std::path::PathBuf,
        /// What plotters said.
        reason: String,
    },
}

impl CliError {
    /// 1 for damage (what `verify` exists to find), 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Journal(JournalError::Corrupt { .. }) => 1,
            _ => 2,
        }
    }
}
