//! # dreamnet-bus
//!
//! An in-process event bus for systems of cooperating agents: fixed-size, cache-aligned
//! event slots flow through per-priority lock-free rings to shards that route them to
//! subscriptions. Payloads are rkyv archives written into the slot and read with zero copy.
//!
//! ```text
//!  Publisher (one per producing thread, bound to its agent id)       publisher.rs
//!    | try_publish / publish: check ids, stamp id/source/timestamp,
//!    | find target shards (targets.rs), write the slot (event.rs)
//!    v
//!  per-priority SPSC rings [critical][high][normal][low] per shard   lanes.rs
//!    | a Shard (a worker thread, pinned or not, or your own poll())  shard.rs
//!    | drains critical first, with a starvation guard
//!    v
//!  Router: direct / broadcast / filtered / load-balanced             router.rs
//!    -> handler(&Delivery) -> Outcome                                subscription.rs, outcome.rs
//!    |  Done      | Retry: timer wheel, backoff   | Fail, exhausted:
//!    |            | (timer_wheel.rs, backoff.rs)  | dead letters (dead_letters.rs)
//!    v
//!  stats (stats.rs): per shard, per publisher, per subscription
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
//!
//! ## Example
//!
//! ```
//! use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority, RunMode};
//!
//! #[derive(rkyv::Archive, rkyv::Serialize)]
//! struct Task { id: u32 }
//!
//! let bus = Bus::builder().mode(RunMode::Poll).build()?;
//! let lucid = bus.register_agent("dreamnet-lucid")?;
//! bus.subscribe(Filter::of_type(EventType::AGENT_TASK), |d| {
//!     assert_eq!(d.payload::<Task>().map(|t| t.id.to_native()), Ok(7));
//!     Outcome::Done
//! })?;
//! let mut shards = bus.take_shards()?;
//! let mut publisher = bus.publisher(lucid)?;
//! let event = Event::new(EventType::AGENT_TASK)
//!     .with_priority(Priority::High)
//!     .with_payload(&Task { id: 7 })?;
//! publisher.try_publish(event)?;
//! assert_eq!(shards[0].poll(16), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod backoff;
mod barrier;
mod bus;
mod clock;
mod config;
pub mod dead_letters;
mod envelope;
mod error;
mod event;
mod intake;
mod lanes;
mod mailbox;
mod names;
mod outcome;
mod priority;
mod progress;
mod publisher;
mod retry;
mod router;
mod schedule;
mod shard;
mod shared;
mod stats;
mod subscription;
mod sync;
mod targets;
pub mod timer_wheel;
mod wait;

pub use backoff::{Jitter, RetryPolicy};
pub use bus::Bus;
pub use clock::{Clock, ManualClock};
pub use config::{BusBuilder, Config, RunMode};
pub use dead_letters::{DeadLetter, DeadLetterHook, DeadLetters, DeadReason, FullPolicy};
pub use envelope::{Envelope, ErrorCode, Status, MAX_PATH};
pub use error::{BusError, ConfigError, DecodeError, NameError, PayloadError, PublishError};
pub use event::{
    Event, Header, SizeCounter, WritePayload, DEFAULT_SLOT, HEADER_SIZE, META_ENTRIES, SCRATCH_SIZE,
};
pub use names::{AgentId, EventType, MetaKey, MAX_AGENTS, MAX_EVENT_TYPES, MAX_NAME_LEN};
pub use outcome::Outcome;
pub use priority::Priority;
pub use publisher::{Draft, Publisher, Receipt, MAX_PUBLISHERS};
pub use router::Router;
pub use schedule::ScheduleToken;
pub use shard::Shard;
pub use stats::{
    BusStats, Counter, PerPriority, PublisherCounters, PublisherShardCounters, ShardStats,
    SubscriptionStats,
};
pub use subscription::{
    Balance, BoxedHandler, Delivery, Filter, GroupId, Predicate, Subscription, SubscriptionId,
};
pub use targets::MAX_SHARDS;
pub use wait::WaitStrategy;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
