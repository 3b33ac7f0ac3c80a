//! Advanced filters: combinators over every criterion (`and`, `or`, `!`), metadata and
//! payload tests, NATS-style type wildcards and a small expression language.
//!
//! Everything compiles, once, to the same flat program ([`program`]) that the router runs
//! per event without allocating. A [`Filter`](crate::Filter) made of the plain criteria
//! (`of_type`, `from_source`, `priorities`, `matching`) carries no program and keeps the
//! router's fast paths; a combined, parsed or wildcard filter carries one.
//!
//! How a wildcard sees types registered after it was made: see [`wildcard`].

mod combine;
mod error;
pub(crate) mod expr;
mod program;
pub(crate) mod wildcard;

pub use error::FilterError;
pub use expr::Expression;
pub use program::Cmp;
pub(crate) use program::Cond;
