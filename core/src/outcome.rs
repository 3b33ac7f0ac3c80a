//! What a handler says about an event it was given.

use core::time::Duration;

use crate::envelope::ErrorCode;

/// A handler's verdict on one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; nothing more to do for this subscription.
    Done,
    /// A temporary failure: deliver again to this subscription (and only this one) after a
    /// backoff. `after` overrides the computed delay, still bounded by the policy's cap and
    /// the event's deadline.
    Retry {
        /// Why, for the record.
        code: ErrorCode,
        /// A requested delay, if the handler knows better than the policy.
        after: Option<Duration>,
    },
    /// A permanent failure: no retries; the event goes to the dead letters.
    Fail {
        /// Why, for the record.
        code: ErrorCode,
    },
}

impl Outcome {
    /// `Retry` with the policy's delay.
    pub const fn retry(code: u16) -> Outcome {
        Outcome::Retry {
            code: ErrorCode(code),
            after: None,
        }
    }

    /// `Fail` with `code`.
    pub const fn fail(code: u16) -> Outcome {
        Outcome::Fail {
            code: ErrorCode(code),
        }
    }
}
