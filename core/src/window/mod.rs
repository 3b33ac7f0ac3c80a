//! Aggregation windows (issue 14 §6): tumbling, hopping and session windows over events,
//! keyed by source, type or a metadata entry, aggregating a value (a metadata entry or a
//! function of the delivery) into count, sum, min, max, mean and percentiles, emitted as
//! one event per key when a window closes.
//!
//! ```text
//!  Bus::window(subscription, spec)                          bus/window.rs
//!    data subscription (the user's filter) --+               (both on one shard, sharing
//!    tick subscription (its own timer)    ---+-> Operator     one uncontended lock)
//!                                               | WindowState: keys -> open windows  state.rs
//!                                               |   KeyTable (fixed capacity)          key_table.rs
//!                                               |   Cell + histogram per window        aggregate.rs, histogram.rs
//!                                               +-> WindowResult events (publisher)
//!                                               +-> Late / KeyOverflow dead letters
//! ```
//!
//! Closing runs on the shard's timer wheel: the operator schedules a tick event to itself
//! (`try_publish_at`) for the earliest window close, and closes what is due when the
//! tick fires. Event time is the header's timestamp; a window closes `grace` after its
//! end on the bus clock.

mod aggregate;
mod histogram;
mod key_table;
mod spec;
mod state;

pub use aggregate::WindowResult;
pub use spec::{
    KeyBy, Shape, ValueFn, ValueFrom, WindowError, WindowKind, WindowSpec, MAX_WINDOWS_PER_KEY,
    MAX_WINDOW_KEYS,
};
pub use state::{Observed, WindowState, WindowStats};

/// The histogram's bucketing, for models and tests: what a percentile reports for a value.
pub mod quantize {
    pub use super::histogram::{quantize, rank, BUCKETS};
}
