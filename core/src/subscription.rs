//! Subscriptions: what a handler wants to see (a [`Filter`]), where it runs (a shard), and
//! the handler itself. A load-balanced group is a route with several handlers, each event
//! going to one of them.

use smallvec::SmallVec;

use crate::backoff::RetryPolicy;
use crate::clock::LazyNow;
use crate::envelope::{Envelope, ErrorCode};
use crate::error::PayloadError;
use crate::event::{Event, Header};
use crate::names::{AgentId, EventType};
use crate::outcome::Outcome;
use crate::priority::Priority;

/// Identifies one subscription on one bus. Never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

impl SubscriptionId {
    /// The raw id.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// Identifies a load-balanced group on one bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupId(pub(crate) u32);

/// How a group picks the one member that gets an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Balance {
    /// Members in turn.
    #[default]
    RoundRobin,
    /// The member with the fewest events outstanding (delivered and waiting for a retry),
    /// ties broken by the fewest delivered so far.
    LeastLoaded,
}

/// A predicate on the event header, for filtered routing.
pub type Predicate = Box<dyn Fn(&Header) -> bool + Send + Sync>;

/// Which events a subscription sees. Every set criterion must hold.
///
/// ```
/// use dreamnet_bus::{EventType, Filter, Priority};
/// let f = Filter::of_type(EventType::AGENT_TASK)
///     .priorities(&[Priority::Critical, Priority::High])
///     .matching(|h| h.correlation_id() != 0);
/// # let _ = f;
/// ```
#[derive(Default)]
pub struct Filter {
    /// Empty: every type.
    pub(crate) types: SmallVec<[EventType; 4]>,
    pub(crate) source: Option<AgentId>,
    /// A tap on direct traffic to this agent.
    pub(crate) destination: Option<AgentId>,
    /// Bit `p` set: priority `p` passes. Zero: every priority.
    pub(crate) priorities: u8,
    pub(crate) predicate: Option<Predicate>,
    /// Compiled criteria from combinators, expressions and wildcards (`filter/`). Boxed:
    /// routes hold their filter inline, and plain filters should stay small.
    pub(crate) cond: Option<Box<crate::filter::Cond>>,
}

impl core::fmt::Debug for Filter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Filter")
            .field("types", &self.types)
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("priorities", &self.priorities)
            .field("predicate", &self.predicate.is_some())
            .field("cond", &self.cond)
            .finish()
    }
}

impl Filter {
    /// Every broadcast event.
    pub fn any() -> Self {
        Filter::default()
    }

    /// Events of one type.
    pub fn of_type(ty: EventType) -> Self {
        Filter::default().or_type(ty)
    }

    /// Events of any of `types`.
    pub fn of_types(types: &[EventType]) -> Self {
        let mut f = Filter::default();
        for &t in types {
            f = f.or_type(t);
        }
        f
    }

    /// Also accepts type `ty`.
    pub fn or_type(mut self, ty: EventType) -> Self {
        if !self.types.contains(&ty) {
            self.types.push(ty);
        }
        self
    }

    /// Only events published by `agent`.
    pub fn from_source(mut self, agent: AgentId) -> Self {
        self.source = Some(agent);
        self
    }

    /// Direct events addressed to `agent` (a tap: the subscription sees that agent's direct
    /// traffic, as well as broadcasts that pass the other criteria).
    pub fn to_destination(mut self, agent: AgentId) -> Self {
        self.destination = Some(agent);
        self
    }

    /// Only events at one of `levels`.
    pub fn priorities(mut self, levels: &[Priority]) -> Self {
        self.priorities = levels.iter().fold(0, |m, p| m | (1 << p.index()));
        self
    }

    /// Only events for which `predicate(header)` is true (filtered routing).
    pub fn matching(mut self, predicate: impl Fn(&Header) -> bool + Send + Sync + 'static) -> Self {
        self.predicate = Some(Box::new(predicate));
        self
    }

    /// Whether `event` passes (routing by destination is the router's). It takes the
    /// event, not the header, because payload criteria (`Filter::payload`) read it.
    pub fn matches<const SLOT: usize>(&self, event: &Event<SLOT>) -> bool {
        let h = event.header();
        (self.types.is_empty() || self.types.contains(&h.event_type()))
            && self.matches_besides_type(event)
    }

    /// Every criterion but the type: for routes found through the router's per-type index,
    /// where the type is known to match.
    #[inline]
    pub(crate) fn matches_besides_type<const SLOT: usize>(&self, event: &Event<SLOT>) -> bool {
        let h = event.header();
        self.source.is_none_or(|s| s == h.source())
            && (self.priorities == 0 || self.priorities & (1 << h.priority().index()) != 0)
            && self.predicate.as_ref().is_none_or(|p| p(h))
            && self
                .cond
                .as_ref()
                .is_none_or(|c| c.eval(h, event.payload_bytes()))
    }

    /// Whether the filter says nothing but which types pass.
    pub(crate) fn is_types_only(&self) -> bool {
        self.source.is_none()
            && self.priorities == 0
            && self.predicate.is_none()
            && self.cond.is_none()
    }

    /// The types the router indexes this filter under (empty: every type). For the plain
    /// criteria these are exactly the types that pass; for a combined, parsed or wildcard
    /// filter a superset (its compiled program decides).
    pub fn types(&self) -> &[EventType] {
        &self.types
    }

    /// The destination tap, if any.
    pub fn destination(&self) -> Option<AgentId> {
        self.destination
    }
}

/// How to subscribe: a filter plus where and as whom.
///
/// ```
/// use dreamnet_bus::{Filter, Subscription, EventType};
/// let s = Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(0);
/// # let _ = s;
/// ```
#[derive(Debug, Default)]
pub struct Subscription {
    pub(crate) filter: Filter,
    pub(crate) agent: Option<AgentId>,
    pub(crate) shard: Option<usize>,
    pub(crate) retry: Option<RetryPolicy>,
}

impl Subscription {
    /// A subscription to what `filter` passes.
    pub fn new(filter: Filter) -> Self {
        Subscription {
            filter,
            ..Subscription::default()
        }
    }

    /// Subscribes on behalf of `agent`: direct events addressed to it reach this
    /// subscription (if the filter passes them), besides matching broadcasts.
    pub fn for_agent(mut self, agent: AgentId) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Runs the handler on shard `index` (default: shards in turn).
    pub fn on_shard(mut self, index: usize) -> Self {
        self.shard = Some(index);
        self
    }

    /// Retries with `policy` instead of the bus default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
}

impl From<Filter> for Subscription {
    /// A subscription to what `filter` passes, with the defaults.
    fn from(filter: Filter) -> Self {
        Subscription::new(filter)
    }
}

/// What a handler is given: the event (zero copy, in the ring's slot), the subscription
/// it is delivered to, and what its envelope is made of.
#[derive(Debug)]
pub struct Delivery<'a, const SLOT: usize> {
    pub(crate) event: &'a Event<SLOT>,
    pub(crate) subscription: SubscriptionId,
    /// The shard's clock for this drain, read when first asked.
    pub(crate) now: &'a LazyNow<'a>,
    /// Deliveries of this event made before this one, in the same dispatch.
    pub(crate) deliveries: u32,
    /// The last error code an earlier handler of the same dispatch returned.
    pub(crate) last_error: Option<ErrorCode>,
}

impl<'a, const SLOT: usize> Delivery<'a, SLOT> {
    /// The event.
    pub fn event(&self) -> &'a Event<SLOT> {
        self.event
    }
    /// The event's header.
    pub fn header(&self) -> &'a Header {
        self.event.header()
    }
    /// The envelope as the handler sees it: status `Processing`, this delivery's attempt
    /// number, the routing path, the deadline. Built on request (the hot path carries
    /// only what it is made of).
    pub fn envelope(&self) -> Envelope {
        let mut envelope = crate::router::Router::envelope_for(self.event, self.now.get());
        envelope.deliveries = self.deliveries;
        envelope.last_error = self.last_error;
        envelope
    }
    /// The subscription this delivery is for.
    pub fn subscription(&self) -> SubscriptionId {
        self.subscription
    }
    /// The bus clock when the shard took the event (nanoseconds). Every handler of one
    /// drain of the rings sees the same value; the clock is read when first asked.
    pub fn now_ns(&self) -> u64 {
        self.now.get()
    }
    /// The payload, zero copy (see [`Event::payload`]).
    pub fn payload<T>(&self) -> Result<&'a T::Archived, PayloadError>
    where
        T: rkyv::Archive + 'static,
        T::Archived: for<'b> rkyv::bytecheck::CheckBytes<
            rkyv::api::low::LowValidator<'b, rkyv::rancor::Failure>,
        >,
    {
        self.event.payload::<T>()
    }
}

/// A handler: called on its shard's thread, one event at a time, never concurrently with
/// itself. A panic is caught and counted as a failure; the shard keeps running.
pub type BoxedHandler<const SLOT: usize> =
    Box<dyn FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use proptest::prelude::*;

    fn header(ty: u16, prio: Priority, src: u32) -> Event {
        let mut e: Event = Event::new(EventType(ty)).with_priority(prio);
        e.stamp(1, AgentId(src), 0);
        e
    }

    proptest! {
        /// A filter passes exactly when every criterion set on it passes (model: the
        /// conjunction written out by hand).
        #[test]
        fn filter_is_the_conjunction_of_its_criteria(
            types in proptest::collection::vec(0u16..6, 0..3),
            src in proptest::option::of(0u32..3),
            prios in proptest::collection::vec(0u8..4, 0..3),
            threshold in proptest::option::of(0u64..3),
            ev_ty in 0u16..6, ev_prio in 0u8..4, ev_src in 0u32..3,
        ) {
            let mut f = Filter::any();
            for t in &types { f = f.or_type(EventType(*t)); }
            if let Some(s) = src { f = f.from_source(AgentId(s)); }
            let levels: Vec<Priority> = prios.iter().map(|p| Priority::from_u8(*p).unwrap()).collect();
            if !levels.is_empty() { f = f.priorities(&levels); }
            if let Some(t) = threshold { f = f.matching(move |h| u64::from(h.source().raw()) >= t); }
            let e = header(ev_ty, Priority::from_u8(ev_prio).unwrap(), ev_src);
            let model = (types.is_empty() || types.contains(&ev_ty))
                && src.is_none_or(|s| s == ev_src)
                && (prios.is_empty() || prios.contains(&ev_prio))
                && threshold.is_none_or(|t| u64::from(ev_src) >= t);
            prop_assert_eq!(f.matches(&e), model);
        }
    }
}
