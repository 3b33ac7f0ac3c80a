//! # dreamnet-bus
//!
//! An in-process event bus for systems of cooperating agents: fixed-size, cache-aligned
//! event slots flow through per-priority lock-free rings to shards that route them to
//! subscriptions. Payloads are rkyv archives written into the slot and read with zero copy.
//!
//! ```text
//!  Bus::builder() -> BusBuilder -> Config (checked)                     config.rs
//!  Bus: names, subscriptions, groups (control plane, one lock)         bus.rs, names.rs
//!    | register_agent / register_event_type: names -> small ids        names.rs
//!    | subscribe / unsubscribe: posted to a shard's mailbox (tickets)  mailbox.rs, progress.rs
//!    |   and the shard target masks updated (which shards an event     targets.rs
//!    |   must reach, readable without a lock)
//!    v
//!  Publisher (one per producing thread, bound to its agent)            publisher.rs
//!    | intake gate (close never loses an accepted publish;             intake.rs, barrier.rs
//!    |   asymmetric fence: the closer pays)
//!    | check ids, read the target mask, claim a chunk on each ring,    shared.rs
//!    | write the slot in place or copy it (header + rkyv payload),     event.rs
//!    | stamp id / source / time; scheduled events are registered       schedule.rs
//!    v
//!  lanes: one SPSC ring per (publisher, shard, priority)                lanes.rs, priority.rs
//!    |
//!  Shard (a worker thread, pinned or not, or your own poll() loop)      shard.rs
//!    | 1. control messages (only when the mailbox says so)
//!    | 2. due timer-wheel entries: retries, scheduled events            timer_wheel.rs, retry.rs
//!    | 3. redriven dead letters
//!    | 4. the rings: critical first, starvation guard, chunks
//!    v
//!  Router: direct / broadcast / filtered / load-balanced groups         router.rs, subscription.rs
//!    | advanced filters: and/or/not, wildcards, expressions (compiled)  filter/
//!    -> handler(&Delivery) -> Outcome (the envelope on request)         outcome.rs, envelope.rs
//!    |  Done | Retry: backoff on the timer wheel | Fail, exhausted,     backoff.rs, retry.rs
//!    |       |                                    | panicked, expired:
//!    |       |                                    | dead letters        dead_letters.rs
//!    v
//!  stats: snapshots per bus, shard, publisher, subscription            stats.rs
//!  analytics (opt-in): per type / source counts, latency per priority  analytics/
//!  time: the bus clock (TSC), read lazily by shards                     clock.rs
//!  waiting: spin / yield / park, chosen once                            wait.rs
//! ```
//!
//! ## The contract
//!
//! - **What allocates**: building the bus, registering names, creating a publisher (its
//!   rings), subscribing. After that, publish -> route -> handler allocates nothing (a test
//!   with a counting allocator holds us to it).
//! - **What blocks**: `try_publish` and `Shard::poll` never block. `publish` waits for ring
//!   space with the configured [`WaitStrategy`]; `unsubscribe` (worker mode) waits for the
//!   shard to apply it; `close` waits for in-flight publishes and the drain.
//! - **What can be lost: nothing.** A full ring hands the event back (`Err(Full(event))`);
//!   a closed bus hands it back (`Err(Closed(event))`); bad ids are typed errors with the
//!   event. An accepted event that matches no subscription is counted (`unroutable`) and,
//!   if the bus is set to, dead-lettered. `close` delivers everything accepted.
//! - **Ordering**: FIFO per publisher per priority to each subscription. Nothing between
//!   priorities or publishers; a retried event is out of order by design.
//! - **Memory**: what a configuration implies is checked against a budget before it is
//!   allocated ([`MemoryFootprint`], [`BusBuilder::memory_budget`]): a typed error, never
//!   an out-of-memory abort.
//! - **Security policy** (optional, [`Bus::set_policy`], [`Policy`]): checked at publish
//!   and subscribe; a violation is a typed error with the event, counted per agent and
//!   kind, audited, and raised as a `system.security` event. Without a policy a publish
//!   pays one branch.
//!
//! ## Features
//!
//! - `metrics`: [`analytics::MetricsExporter`], live analytics through the `metrics`
//!   facade (0.24), for any exporter (Prometheus, StatsD, ...).
//! - `journal`: the `journal` module (segment files on memmap2, CRC-32C records, replay),
//!   `BusBuilder::journal` (each shard appends what it drains to its own journal before
//!   any handler sees it), `Bus::replayer` (a journal replayed into a bus), and
//!   [`analytics::JournalAnalyzer`] (offline analytics over a journal).
//! - `cli`: the `dreamnet` binary (journal tools, `report`).
//! - `nats`: the `bridge` module, a bridge to NATS (core and JetStream) that carries
//!   events between processes and machines (async-nats 0.51, rustc 1.89). Off by default;
//!   with it on, a bus without a bridge runs the same code.
//! - `cron`: `Bus::cron` and `recurring::Recurrence::cron`, recurring schedules from cron
//!   expressions (the `cron` crate). `Bus::every` and the `window` module need no feature.
//! - `async`: [`EventStream`] is also a `futures_core::Stream` (tokio and other
//!   executors); pulls in `futures-core` only.
//!
//! ## Example
//!
//! ```
//! use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! struct Task { id: u32 }
//!
//! // Poll mode: the shards run in your loop. `build()` runs them on worker threads.
//! let (bus, mut shards) = Bus::builder().build_polled()?;
//! let lucid = bus.register_agent("dreamnet-lucid")?;
//! bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |d| {
//!     assert_eq!(d.payload::<Task>().map(|t| t.id.to_native()), Ok(7));
//!     Outcome::Done
//! })?;
//! let mut publisher = bus.publisher(lucid)?;
//! let event = Event::new(EventType::AGENT_TASK)
//!     .with_priority(Priority::High)
//!     .with_payload(&Task { id: 7 })?;
//! publisher.try_publish(event)?;
//! assert_eq!(shards[0].poll(16), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Modules in the order data flows through them (see the picture above).
pub mod analytics;
mod backoff;
mod barrier;
#[cfg(feature = "nats")]
pub mod bridge;
mod bus;
mod clock;
mod config;
/// The dead-letter ring itself is public for the `dead_letters` fuzz target only: no
/// semver promise (the bus's dead-letter API is re-exported at the crate root).
#[doc(hidden)]
pub mod dead_letters;
mod envelope;
mod error;
mod event;
mod filter;
mod intake;
#[cfg(feature = "journal")]
pub mod journal;
mod lanes;
mod mailbox;
mod memory;
mod names;
mod outcome;
mod policy;
mod priority;
mod progress;
mod publisher;
pub mod recurring;
mod retry;
mod router;
mod schedule;
mod shard;
mod shared;
mod stats;
mod stream;
mod subscription;
mod sync;
mod targets;
/// Public for the `timer_wheel` fuzz target only: no semver promise.
#[doc(hidden)]
pub mod timer_wheel;
mod transform;
mod type_tag;
mod wait;
mod wakeup;
pub mod window;

pub use backoff::{Jitter, RetryPolicy};
pub use bus::{
    Bus, PaceEnd, PacedRedrive, ShieldStats, Window, MAX_PER_TICK, SHIELD_AGENT, WINDOW_AGENT,
    WINDOW_RESULT_TYPE,
};
#[cfg(feature = "journal")]
pub use bus::{ReplayError, ReplayReport, ReplayTarget, Replayer};
pub use clock::{Clock, ManualClock};
pub use config::{BusBuilder, Config, RunMode};
pub use dead_letters::{DeadLetter, DeadLetterHook, DeadLetters, DeadReason, FullPolicy};
pub use envelope::{Envelope, ErrorCode, Status, MAX_PATH};
pub use error::{
    BusError, ConfigError, DecodeError, MetadataFull, NameError, PayloadError, PublishError,
};
pub use event::{
    Event, Header, SizeCounter, WritePayload, DEFAULT_SLOT, HEADER_SIZE, META_ENTRIES, SCRATCH_SIZE,
};
/// Public for the `filter_expr` fuzz target and the tests only: no semver promise.
#[doc(hidden)]
pub use filter::Expression;
pub use filter::{Cmp, FilterError};
pub use memory::{
    MemoryFootprint, DEFAULT_MEMORY_BUDGET, MAX_DEAD_LETTER_CAPACITY, MAX_RING_CAPACITY,
};
pub use names::{AgentId, EventType, MetaKey, MAX_AGENTS, MAX_EVENT_TYPES, MAX_NAME_LEN};
pub use outcome::Outcome;
pub use policy::{
    AgentPolicy, AuditHook, DefaultRule, Policy, Rate, SecurityAlert, Violation, ViolationCounts,
    ViolationKind, SECURITY_EVENT_TYPE,
};
pub use priority::Priority;
pub use publisher::{BatchReceipt, Draft, Publisher, Receipt, MAX_PUBLISHERS};
pub use router::Router;
pub use schedule::{schedule_horizon, ScheduleToken, SCHEDULE_HORIZON_TICKS};
pub use shard::Shard;
pub use stats::{BusStats, PublisherStats, ShardStats, SubscriptionStats};
pub use stream::{
    EventRef, EventStream, Lagged, StreamError, StreamPolicy, StreamStats, STREAM_FULL,
};
pub use subscription::{
    Balance, BoxedHandler, Delivery, Filter, GroupId, Predicate, Subscription, SubscriptionId,
};
pub use targets::MAX_SHARDS;
pub use transform::{EmitError, Emitter, Stage, Transform, TransformStats, DEFAULT_MAX_HOPS};
pub use wait::WaitStrategy;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
