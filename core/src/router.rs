//! The router: a routing table from event to subscriptions, and the dispatch that calls
//! their handlers. Each shard owns one (so handlers are single-threaded and the table needs
//! no lock); it is also usable on its own, as the spec's `register_handler` / `route`.
//!
//! Routing rules, all five strategies:
//! - **broadcast** (no destination): every route whose filter passes the event;
//! - **direct** (a destination agent): the routes subscribed *for* that agent, and routes
//!   tapping it (`Filter::to_destination`), whose filter passes;
//! - **filtered**: a route's [`Filter`] (types, source, priorities, predicate);
//! - **load-balanced**: a group is one route with several members; each event that passes
//!   goes to exactly one member (round-robin or least-loaded);
//! - **priority** is the shard's drain order, not the router's.
//!
//! The table is indexed by event type (broadcast) and by destination agent (direct), so the
//! cost of routing follows the routes that can match, not the number of subscriptions.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use crate::backoff::RetryPolicy;
use crate::clock::LazyNow;
use crate::envelope::{Envelope, ErrorCode, Status};
use crate::error::BusError;
use crate::event::{Event, DEFAULT_SLOT};
use crate::names::{AgentId, EventType};
use crate::outcome::Outcome;
use crate::stats::SubscriptionCounters;
use crate::subscription::{Balance, BoxedHandler, Delivery, Filter, SubscriptionId};

/// What happened to one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The handler returned an outcome.
    Returned(Outcome),
    /// The handler panicked (caught).
    Panicked,
    /// The event's deadline had passed: the handler was not called.
    Expired,
}

/// The subscription a verdict is for, as the retry path needs it.
pub(crate) struct MemberRef<'a> {
    pub id: SubscriptionId,
    pub retry: &'a RetryPolicy,
    pub counters: &'a SubscriptionCounters,
    /// Events of this member waiting for a retry (for least-loaded balancing).
    pub outstanding: &'a mut u32,
}

/// One handler in a route.
struct Member<const SLOT: usize> {
    id: SubscriptionId,
    handler: BoxedHandler<SLOT>,
    /// Retry policy of this subscription (the bus default unless overridden).
    retry: RetryPolicy,
    /// Events delivered to this member and now waiting for a retry.
    outstanding: u32,
    counters: Arc<SubscriptionCounters>,
}

/// A filter with one member (a plain subscription) or several (a load-balanced group).
struct Route<const SLOT: usize> {
    filter: Filter,
    /// The filter names types and nothing else: found through the per-type index, an
    /// event passes it without a look.
    types_only: bool,
    agent: Option<AgentId>,
    balance: Balance,
    /// Load-balanced routes pick one member per event; others have exactly one member.
    grouped: bool,
    members: Vec<Member<SLOT>>,
    /// Next member for round-robin, in `0..members.len()` when non-empty.
    cursor: usize,
}

/// How to add a subscription to a router.
pub(crate) struct NewMember<const SLOT: usize> {
    pub id: SubscriptionId,
    pub handler: BoxedHandler<SLOT>,
    pub retry: RetryPolicy,
    pub counters: Arc<SubscriptionCounters>,
}

/// Identifies a route in the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct RouteKey(pub u32);

/// A per-shard routing table and dispatcher.
///
/// ```
/// use dreamnet_bus::{Event, EventType, Outcome, Router, Status};
///
/// let mut router: Router = Router::new();
/// router.register_handler(EventType::AGENT_TASK, |_d| Outcome::Done);
/// let envelope = router.route(&Event::new(EventType::AGENT_TASK));
/// assert_eq!(envelope.status, Status::Completed);
/// assert_eq!(envelope.deliveries, 1);
/// ```
pub struct Router<const SLOT: usize = DEFAULT_SLOT> {
    /// Slab of routes; `None` slots are on `free`.
    routes: Vec<Option<Route<SLOT>>>,
    free: Vec<u32>,
    /// Routes naming type `t`, at index `t`.
    by_type: Vec<SmallVec<[u32; 4]>>,
    /// Routes naming no type (they see every type).
    any_type: SmallVec<[u32; 4]>,
    /// Routes receiving direct traffic for agent `a`, at index `a`.
    by_destination: Vec<SmallVec<[u32; 2]>>,
    /// Subscription -> (route, position in its members). Control plane and retry path.
    members: HashMap<SubscriptionId, (u32, u32)>,
    /// Ids for subscriptions made through the router directly.
    next_local_id: u64,
    default_retry: RetryPolicy,
    epoch: Instant,
}

impl<const SLOT: usize> Default for Router<SLOT> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOT: usize> core::fmt::Debug for Router<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &(self.routes.len() - self.free.len()))
            .field("subscriptions", &self.members.len())
            .finish()
    }
}

impl<const SLOT: usize> Router<SLOT> {
    /// An empty router.
    pub fn new() -> Self {
        Router {
            routes: Vec::new(),
            free: Vec::new(),
            by_type: Vec::new(),
            any_type: SmallVec::new(),
            by_destination: Vec::new(),
            members: HashMap::new(),
            next_local_id: 1 << 63,
            default_retry: RetryPolicy::default(),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn with_default_retry(mut self, policy: RetryPolicy) -> Self {
        self.default_retry = policy;
        self
    }

    /// The spec's `registerHandler`: a handler for every event of type `ty`.
    pub fn register_handler(
        &mut self,
        ty: EventType,
        handler: impl FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static,
    ) -> SubscriptionId {
        self.subscribe(Filter::of_type(ty), None, Box::new(handler))
    }

    /// A handler for what `filter` passes, optionally on behalf of `agent` (direct routing).
    pub fn subscribe(
        &mut self,
        filter: Filter,
        agent: Option<AgentId>,
        handler: BoxedHandler<SLOT>,
    ) -> SubscriptionId {
        let id = SubscriptionId(self.next_local_id);
        self.next_local_id += 1;
        let route = self.add_route(filter, agent, None);
        let retry = self.default_retry;
        self.join(
            route,
            NewMember {
                id,
                handler,
                retry,
                counters: Arc::default(),
            },
        );
        id
    }

    /// Removes a subscription; its handler is dropped. A route left without members is
    /// removed too, unless it is a group (groups keep their route for later members).
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> Result<(), BusError> {
        let (route_ix, pos) = self
            .members
            .remove(&id)
            .ok_or(BusError::UnknownSubscription(id))?;
        let Some(route) = self
            .routes
            .get_mut(route_ix as usize)
            .and_then(Option::as_mut)
        else {
            return Err(BusError::UnknownSubscription(id));
        };
        route.members.swap_remove(pos as usize);
        if let Some(moved) = route.members.get(pos as usize) {
            self.members.insert(moved.id, (route_ix, pos));
        }
        if route.cursor >= route.members.len() {
            route.cursor = 0;
        }
        if route.members.is_empty() && !route.grouped {
            self.remove_route(RouteKey(route_ix));
        }
        Ok(())
    }

    /// How many subscriptions the router holds.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the router holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The spec's `route`: delivers `event` to every matching subscription now, on this
    /// thread, and returns the envelope. Retries and dead letters are the bus's; here a
    /// `Retry`, `Fail` or panic leaves the envelope `Failed` with the last error code.
    pub fn route(&mut self, event: &Event<SLOT>) -> Envelope {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.dispatch(event, &LazyNow::known(now), |_, _, _| {})
            .envelope(event, now)
    }

    /// Adds a route (a plain subscription's or a group's) and indexes it.
    pub(crate) fn add_route(
        &mut self,
        filter: Filter,
        agent: Option<AgentId>,
        group: Option<Balance>,
    ) -> RouteKey {
        let route = Route {
            types_only: filter.is_types_only(),
            filter,
            agent,
            balance: group.unwrap_or_default(),
            grouped: group.is_some(),
            members: Vec::new(),
            cursor: 0,
        };
        let ix = match self.free.pop() {
            Some(ix) => {
                self.routes[ix as usize] = Some(route);
                ix
            }
            None => {
                self.routes.push(Some(route));
                (self.routes.len() - 1) as u32
            }
        };
        let Some(route) = self.routes[ix as usize].as_ref() else {
            unreachable!("route {ix} was stored just above")
        };
        if route.filter.types.is_empty() {
            self.any_type.push(ix);
        }
        for t in &route.filter.types {
            if self.by_type.len() <= t.index() {
                self.by_type.resize_with(t.index() + 1, SmallVec::new);
            }
            self.by_type[t.index()].push(ix);
        }
        let mut direct: SmallVec<[AgentId; 2]> = SmallVec::new();
        direct.extend(route.agent);
        if let Some(d) = route.filter.destination {
            if !direct.contains(&d) {
                direct.push(d);
            }
        }
        for a in direct {
            let a = a.raw() as usize;
            if self.by_destination.len() <= a {
                self.by_destination.resize_with(a + 1, SmallVec::new);
            }
            self.by_destination[a].push(ix);
        }
        RouteKey(ix)
    }

    fn remove_route(&mut self, key: RouteKey) {
        let ix = key.0;
        let Some(route) = self.routes.get_mut(ix as usize).and_then(Option::take) else {
            return;
        };
        let unlist = |list: &mut SmallVec<[u32; 4]>| list.retain(|r| *r != ix);
        unlist(&mut self.any_type);
        for t in &route.filter.types {
            if let Some(list) = self.by_type.get_mut(t.index()) {
                unlist(list);
            }
        }
        for a in route.agent.iter().chain(route.filter.destination.iter()) {
            if let Some(list) = self.by_destination.get_mut(a.raw() as usize) {
                list.retain(|r| *r != ix);
            }
        }
        self.free.push(ix);
    }

    /// Adds a member to a route.
    pub(crate) fn join(&mut self, key: RouteKey, member: NewMember<SLOT>) {
        let Some(route) = self.routes.get_mut(key.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        let pos = route.members.len() as u32;
        self.members.insert(member.id, (key.0, pos));
        route.members.push(Member {
            id: member.id,
            handler: member.handler,
            retry: member.retry,
            outstanding: 0,
            counters: member.counters,
        });
    }

    /// The counters of a subscription (control plane and close; not the hot path).
    pub(crate) fn counters(&self, id: SubscriptionId) -> Option<&SubscriptionCounters> {
        let &(r, m) = self.members.get(&id)?;
        let route = self.routes.get(r as usize)?.as_ref()?;
        Some(&route.members.get(m as usize)?.counters)
    }

    /// The envelope of a dispatch of `event` at `now_ns`, before any delivery.
    pub(crate) fn envelope_for(event: &Event<SLOT>, now_ns: u64) -> Envelope {
        let h = event.header();
        let mut envelope = Envelope {
            route_timestamp_ns: now_ns,
            attempts: u32::from(h.attempts()) + 1,
            deadline_ns: h.deadline_ns(),
            status: Status::Processing,
            ..Envelope::default()
        };
        envelope.path.push(h.source());
        if let Some(d) = h.destination() {
            envelope.path.push(d);
        }
        envelope.hops = envelope.path.len() as u8;
        envelope
    }

    /// Delivers `event` to every matching subscription (one member per group).
    /// `on_verdict` hears each delivery that did not end `Done`, with the envelope as it
    /// stood then (a `Done` needs nothing settled, so the common path builds no envelope).
    pub(crate) fn dispatch(
        &mut self,
        event: &Event<SLOT>,
        now: &LazyNow<'_>,
        mut on_verdict: impl FnMut(Verdict, &Envelope, MemberRef<'_>),
    ) -> Dispatched {
        let h = event.header();
        let Router {
            routes,
            by_type,
            any_type,
            by_destination,
            ..
        } = self;
        let (first, second): (&[u32], &[u32]) = match h.destination() {
            Some(d) => (
                by_destination
                    .get(d.raw() as usize)
                    .map_or(&[][..], |l| l.as_slice()),
                &[],
            ),
            None => (
                by_type
                    .get(h.event_type().index())
                    .map_or(&[][..], |l| l.as_slice()),
                any_type.as_slice(),
            ),
        };
        let mut out = Dispatched::default();
        let expired = h.deadline_ns().is_some_and(|d| now.get() > d);
        // Broadcast candidates come from the per-type index (or name no type): their type
        // matches already. Direct candidates come from the per-agent index: check it.
        let type_known = h.destination().is_none();
        let mut visit = |ix: u32| {
            let Some(route) = routes.get_mut(ix as usize).and_then(Option::as_mut) else {
                return;
            };
            let passes = if type_known {
                route.types_only || route.filter.matches_besides_type(event)
            } else {
                route.filter.matches(event)
            };
            if !passes {
                return;
            }
            let Some(member) = route.pick() else {
                return;
            };
            member.counters.accepted.incr();
            let verdict = if expired {
                Verdict::Expired
            } else {
                deliver(member, event, now, out.deliveries, out.last_error)
            };
            out.deliveries += 1;
            if out.note(verdict) {
                let envelope = out.in_progress(event, now.get());
                on_verdict(verdict, &envelope, member.as_ref());
            }
        };
        // Two plain loops, not a chained iterator: this is the innermost loop of a shard.
        for &ix in first {
            visit(ix);
        }
        for &ix in second {
            visit(ix);
        }
        out
    }

    /// Delivers `event` to one subscription only (a retry or a redrive), counting it as
    /// accepted again if `redrive`. Returns false if the subscription is gone.
    pub(crate) fn deliver_to(
        &mut self,
        id: SubscriptionId,
        event: &Event<SLOT>,
        now_ns: u64,
        redrive: bool,
        on_verdict: impl FnOnce(Verdict, &Envelope, MemberRef<'_>),
    ) -> bool {
        let Some(&(r, m)) = self.members.get(&id) else {
            return false;
        };
        let Some(member) = self
            .routes
            .get_mut(r as usize)
            .and_then(Option::as_mut)
            .and_then(|route| route.members.get_mut(m as usize))
        else {
            return false;
        };
        if redrive {
            member.counters.accepted.incr();
        }
        let expired = event.header().deadline_ns().is_some_and(|d| now_ns > d);
        let verdict = if expired {
            Verdict::Expired
        } else {
            deliver(member, event, &LazyNow::known(now_ns), 0, None)
        };
        let mut out = Dispatched {
            deliveries: 1,
            ..Dispatched::default()
        };
        out.note(verdict);
        on_verdict(verdict, &out.envelope(event, now_ns), member.as_ref());
        true
    }
}

/// What one dispatch did: enough to build its envelope, without building it per event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dispatched {
    /// Handlers the event was delivered to (or found expired for).
    pub(crate) deliveries: u32,
    /// Whether any delivery did not end `Done`.
    pub(crate) failed: bool,
    /// The last error code a handler returned (or `PANICKED`).
    pub(crate) last_error: Option<ErrorCode>,
}

impl Dispatched {
    /// Records a verdict; true if it was not `Done` (something to settle).
    fn note(&mut self, verdict: Verdict) -> bool {
        match verdict {
            Verdict::Returned(Outcome::Done) => return false,
            Verdict::Returned(Outcome::Retry { code, .. } | Outcome::Fail { code }) => {
                self.last_error = Some(code);
            }
            Verdict::Panicked => self.last_error = Some(ErrorCode::PANICKED),
            Verdict::Expired => {}
        }
        self.failed = true;
        true
    }

    /// The envelope while the dispatch is under way (status `Processing`).
    fn in_progress<const SLOT: usize>(&self, event: &Event<SLOT>, now_ns: u64) -> Envelope {
        let mut envelope = Router::envelope_for(event, now_ns);
        envelope.deliveries = self.deliveries;
        envelope.last_error = self.last_error;
        envelope
    }

    /// The finished envelope.
    pub(crate) fn envelope<const SLOT: usize>(&self, event: &Event<SLOT>, now_ns: u64) -> Envelope {
        let mut envelope = self.in_progress(event, now_ns);
        envelope.status = if self.deliveries == 0 {
            Status::Pending
        } else if self.failed {
            Status::Failed
        } else {
            Status::Completed
        };
        envelope
    }
}

/// Calls one handler, catching a panic. `deliveries` and `last_error`: what this dispatch
/// did before, for the handler's view of the envelope.
#[inline]
fn deliver<const SLOT: usize>(
    member: &mut Member<SLOT>,
    event: &Event<SLOT>,
    now: &LazyNow<'_>,
    deliveries: u32,
    last_error: Option<ErrorCode>,
) -> Verdict {
    let delivery = Delivery {
        event,
        subscription: member.id,
        now,
        deliveries,
        last_error,
    };
    member.counters.attempts.incr();
    let handler = &mut member.handler;
    match catch_unwind(AssertUnwindSafe(|| handler(&delivery))) {
        Ok(outcome) => {
            if outcome == Outcome::Done {
                member.counters.done.incr();
            }
            Verdict::Returned(outcome)
        }
        Err(_) => {
            member.counters.panicked.incr();
            Verdict::Panicked
        }
    }
}

impl<const SLOT: usize> Member<SLOT> {
    fn as_ref(&mut self) -> MemberRef<'_> {
        MemberRef {
            id: self.id,
            retry: &self.retry,
            counters: &self.counters,
            outstanding: &mut self.outstanding,
        }
    }
}

impl<const SLOT: usize> Route<SLOT> {
    /// The member that gets the next event, or `None` for an empty group.
    fn pick(&mut self) -> Option<&mut Member<SLOT>> {
        if self.members.is_empty() {
            return None;
        }
        let ix = match (self.grouped, self.balance) {
            (false, _) => 0,
            (true, Balance::RoundRobin) => {
                let ix = self.cursor;
                self.cursor = (self.cursor + 1) % self.members.len();
                ix
            }
            (true, Balance::LeastLoaded) => self
                .members
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| (m.outstanding, m.counters.accepted.get()))
                .map_or(0, |(i, _)| i),
        };
        self.members.get_mut(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::priority::Priority;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn counting(counter: &Arc<AtomicU32>) -> BoxedHandler<DEFAULT_SLOT> {
        let c = Arc::clone(counter);
        Box::new(move |_d| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        })
    }

    fn event(ty: EventType, to: Option<u32>) -> Event {
        let mut e: Event = Event::new(ty);
        e.set_destination(to.map(AgentId));
        e.stamp(1, AgentId(0), 0);
        e
    }

    #[test]
    fn broadcast_reaches_every_matching_route_and_direct_only_its_agent() {
        let mut r: Router = Router::new();
        let (a, b, c) = (Arc::default(), Arc::default(), Arc::default());
        r.subscribe(
            Filter::of_type(EventType::AGENT_TASK),
            Some(AgentId(1)),
            counting(&a),
        );
        r.subscribe(
            Filter::of_type(EventType::AGENT_TASK),
            Some(AgentId(2)),
            counting(&b),
        );
        r.subscribe(Filter::any(), None, counting(&c));
        assert_eq!(r.route(&event(EventType::AGENT_TASK, None)).deliveries, 3);
        assert_eq!(
            r.route(&event(EventType::AGENT_TASK, Some(2))).deliveries,
            1
        );
        assert_eq!(r.route(&event(EventType::SYSTEM_EVENT, None)).deliveries, 1);
        let get = |x: &Arc<AtomicU32>| x.load(Ordering::Relaxed);
        assert_eq!((get(&a), get(&b), get(&c)), (1, 2, 2));
    }

    #[test]
    fn groups_deliver_each_event_once_round_robin() {
        let mut r: Router = Router::new();
        let key = r.add_route(Filter::any(), None, Some(Balance::RoundRobin));
        let counters: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::default()).collect();
        for (i, c) in counters.iter().enumerate() {
            r.join(
                key,
                NewMember {
                    id: SubscriptionId(i as u64),
                    handler: counting(c),
                    retry: RetryPolicy::default(),
                    counters: Arc::default(),
                },
            );
        }
        for _ in 0..9 {
            assert_eq!(r.route(&event(EventType::AGENT_TASK, None)).deliveries, 1);
        }
        for c in &counters {
            assert_eq!(c.load(Ordering::Relaxed), 3);
        }
    }

    #[test]
    fn a_panicking_handler_fails_the_envelope_and_the_router_goes_on() {
        let mut r: Router = Router::new();
        r.register_handler(EventType::AGENT_ERROR, |_| panic!("handler bug"));
        let ok = Arc::default();
        r.subscribe(Filter::of_type(EventType::AGENT_ERROR), None, counting(&ok));
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let env = r.route(&event(EventType::AGENT_ERROR, None));
        std::panic::set_hook(prev);
        assert_eq!(env.status, Status::Failed);
        assert_eq!(env.deliveries, 2);
        assert_eq!(ok.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn unsubscribe_removes_and_twice_is_an_error() {
        let mut r: Router = Router::new();
        let id = r.register_handler(EventType::AGENT_TASK, |_| Outcome::Done);
        assert_eq!(r.unsubscribe(id), Ok(()));
        assert_eq!(r.unsubscribe(id), Err(BusError::UnknownSubscription(id)));
        assert_eq!(
            r.route(&event(EventType::AGENT_TASK, None)).status,
            Status::Pending
        );
        assert!(r.is_empty());
    }

    #[test]
    fn priority_filter_and_predicate_apply() {
        let mut r: Router = Router::new();
        let hits = Arc::default();
        r.subscribe(
            Filter::any()
                .priorities(&[Priority::Critical])
                .matching(|h| h.correlation_id() == 7),
            None,
            counting(&hits),
        );
        let e = event(EventType::AGENT_TASK, None).with_priority(Priority::Critical);
        assert_eq!(r.route(&e).deliveries, 0);
        assert_eq!(r.route(&e.clone().with_correlation_id(7)).deliveries, 1);
        assert_eq!(
            r.route(&e.with_correlation_id(7).with_priority(Priority::Low))
                .deliveries,
            0
        );
    }
}
