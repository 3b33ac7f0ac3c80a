//! What a filter expression or a wildcard pattern can get wrong. Every variant gives the
//! byte position in the text it was given.

use thiserror::Error;

/// A filter expression or type pattern was refused. Nothing was subscribed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The text does not follow the grammar.
    #[error("at byte {position}: expected {expected}, found {found}")]
    Syntax {
        /// Byte offset of the offending token.
        position: usize,
        /// What the parser could accept there.
        expected: &'static str,
        /// The token found (`end of input` at the end).
        found: String,
    },
    /// A name (event type, agent, metadata key) is not registered on this bus.
    #[error("at byte {position}: no {kind} named {name:?} is registered on this bus")]
    UnknownName {
        /// Byte offset of the name.
        position: usize,
        /// `event type`, `agent` or `metadata key`.
        kind: &'static str,
        /// The name as written.
        name: String,
    },
    /// A type pattern is malformed.
    #[error("at byte {position}: bad type pattern {pattern:?}: expected {reason}")]
    BadPattern {
        /// Byte offset of the fault.
        position: usize,
        /// The pattern as written.
        pattern: String,
        /// What a pattern must be.
        reason: &'static str,
    },
    /// The expression is longer or nests deeper than the parser accepts.
    #[error("at byte {position}: expression exceeds {limit}")]
    TooLarge {
        /// Byte offset where the limit was crossed.
        position: usize,
        /// The limit crossed (`1024 bytes`, `32 levels of nesting`).
        limit: &'static str,
    },
}

impl FilterError {
    /// The byte offset in the text the error is about.
    pub fn position(&self) -> usize {
        match self {
            FilterError::Syntax { position, .. }
            | FilterError::UnknownName { position, .. }
            | FilterError::BadPattern { position, .. }
            | FilterError::TooLarge { position, .. } => *position,
        }
    }
}
