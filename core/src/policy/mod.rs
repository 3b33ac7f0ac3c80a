//! Security policy ("Shield Core"): who may publish and subscribe to what, send to whom,
//! how large and how fast, checked at publish and at subscribe.
//!
//! - [`Policy`] and [`AgentPolicy`] (`rules.rs`): what the user writes, default-allow or
//!   default-deny per bus.
//! - `compiled.rs`: the policy indexed for the hot path, with its live rate limits
//!   ([`Rate`], `token_bucket.rs`: one atomic word per bucket, no lock, no allocation)
//!   and quotas.
//! - `lease.rs`: a publisher's private stock of quota and tokens, refilled from the
//!   shared state a few at a time, so most publishes write no shared word.
//! - `epoch.rs`: one word that says whether a policy is installed and which install it
//!   is, so a publish sees with one load that its lease is still good (loom model).
//! - `shield.rs`: the installed policy behind `arc-swap` (hot reload without a lock on
//!   the hot path), violation counters per agent and kind, the audit hook.
//! - [`Violation`], [`SecurityAlert`] (`violation.rs`): what a refusal reports, to the
//!   caller (a typed error with the event handed back), the counters, the audit hook and
//!   the `system.security` event published on the bus. Nothing is refused in silence.

mod compiled;
mod counters;
mod epoch;
mod lease;
mod rules;
mod shield;
mod token_bucket;
mod violation;

pub(crate) use compiled::{Compiled, PublishRequest};
pub use rules::{AgentPolicy, AuditHook, DefaultRule, Policy};
pub(crate) use shield::{Installed, PolicyCache, Refused, Shield};
pub use token_bucket::Rate;
pub(crate) use token_bucket::TokenBucket;
pub use violation::{
    SecurityAlert, Violation, ViolationCounts, ViolationKind, SECURITY_EVENT_TYPE,
};
