//! A policy compiled for the hot path: rules indexed by agent id, type sets as bitsets,
//! destinations sorted for binary search, and the live state of its rate limits and
//! quotas. Checking allocates nothing and takes no lock.
//!
//! The order of the checks, and so which violation a publish that breaks several rules
//! reports: type, destination, payload size, quota, agent rate, type rate. A refused
//! publish spends nothing: a quota or token taken by an earlier check is given back.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::error::BusError;
use crate::names::{AgentId, EventType, MAX_AGENTS, MAX_EVENT_TYPES};
use crate::policy::lease::{Pass, Units};
use crate::policy::rules::{AgentPolicy, AuditHook, DefaultRule, Policy};
use crate::policy::token_bucket::{Rate, TokenBucket};
use crate::policy::violation::{Violation, ViolationKind};

const TYPE_WORDS: usize = MAX_EVENT_TYPES / 64;

/// A set of event types: a bitset over every possible type id, inline (one cache-line
/// pair, no pointer to chase on the publish path).
#[derive(Debug)]
struct TypeSet([u64; TYPE_WORDS]);

impl TypeSet {
    fn new(types: Option<&[EventType]>, default: DefaultRule) -> Self {
        match (types, default) {
            (None, DefaultRule::Allow) => TypeSet([u64::MAX; TYPE_WORDS]),
            (None, DefaultRule::Deny) => TypeSet([0; TYPE_WORDS]),
            (Some(types), _) => {
                let mut bits = [0u64; TYPE_WORDS];
                for t in types {
                    let i = usize::from(t.raw());
                    bits[i / 64] |= 1 << (i % 64);
                }
                TypeSet(bits)
            }
        }
    }

    #[inline]
    fn contains(&self, ty: EventType) -> bool {
        let i = usize::from(ty.raw());
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn is_any(&self) -> bool {
        self.0.iter().all(|&w| w == u64::MAX)
    }
}

/// A set of destination agents.
#[derive(Debug)]
enum AgentSet {
    Any,
    Only(Box<[u32]>),
}

impl AgentSet {
    fn contains(&self, agent: AgentId) -> bool {
        match self {
            AgentSet::Any => true,
            AgentSet::Only(sorted) => sorted.binary_search(&agent.raw()).is_ok(),
        }
    }
}

/// A quota: events left under this policy.
#[derive(Debug)]
struct Quota {
    max: u64,
    used: AtomicU64,
}

impl Quota {
    /// Units a publisher leases at a time (`lease.rs`).
    fn lease(&self) -> u64 {
        (self.max / 64).clamp(1, 256)
    }

    /// Takes up to `n` units; how many were left to take (0: the quota is spent).
    fn take_up_to(&self, n: u64) -> u64 {
        let mut taken = 0;
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                taken = n.min(self.max.saturating_sub(u));
                (taken > 0).then_some(u + taken)
            });
        taken
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A rate limit and its state.
#[derive(Debug)]
struct Limiter {
    rate: Rate,
    bucket: TokenBucket,
}

impl Limiter {
    fn new(rate: Rate) -> Self {
        Limiter {
            rate,
            bucket: TokenBucket::new(rate),
        }
    }

    /// Tokens a publisher leases at a time (`lease.rs`): a bucket with a burst under 128
    /// leases one, which is exactly the unleased bucket.
    fn lease(&self) -> u64 {
        (self.rate.burst() / 64).clamp(1, 256)
    }
}

/// One agent's compiled rules.
#[derive(Debug)]
struct AgentRules {
    publish: TypeSet,
    subscribe: TypeSet,
    destinations: AgentSet,
    /// Sorted by type.
    max_payload: Box<[(u16, usize)]>,
    max_payload_all: Option<usize>,
    rate: Option<Limiter>,
    /// Sorted by type.
    type_rates: Box<[(u16, Limiter)]>,
    quota: Option<Quota>,
}

impl AgentRules {
    fn new(p: &AgentPolicy, default: DefaultRule) -> Self {
        let destinations = match (&p.destinations, default) {
            (None, DefaultRule::Allow) => AgentSet::Any,
            (None, DefaultRule::Deny) => AgentSet::Only(Box::new([])),
            (Some(list), _) => {
                let mut v: Vec<u32> = list.iter().map(|a| a.raw()).collect();
                v.sort_unstable();
                v.dedup();
                AgentSet::Only(v.into_boxed_slice())
            }
        };
        let mut max_payload: Vec<(u16, usize)> =
            p.max_payload.iter().map(|(t, n)| (t.raw(), *n)).collect();
        max_payload.sort_unstable_by_key(|e| e.0);
        let mut type_rates: Vec<(u16, Limiter)> = p
            .type_rates
            .iter()
            .map(|(t, r)| (t.raw(), Limiter::new(*r)))
            .collect();
        type_rates.sort_unstable_by_key(|e| e.0);
        AgentRules {
            publish: TypeSet::new(p.publish.as_deref(), default),
            subscribe: TypeSet::new(p.subscribe.as_deref(), default),
            destinations,
            max_payload: max_payload.into_boxed_slice(),
            max_payload_all: p.max_payload_all,
            rate: p.rate.map(Limiter::new),
            type_rates: type_rates.into_boxed_slice(),
            quota: p.quota.map(|max| Quota {
                max,
                used: AtomicU64::new(0),
            }),
        }
    }

    #[inline]
    fn max_payload(&self, ty: EventType) -> Option<usize> {
        if self.max_payload.is_empty() {
            return self.max_payload_all;
        }
        match self.max_payload.binary_search_by_key(&ty.raw(), |e| e.0) {
            Ok(i) => Some(self.max_payload[i].1),
            Err(_) => self.max_payload_all,
        }
    }

    fn type_rate(&self, ty: EventType) -> Option<&Limiter> {
        self.type_rates
            .binary_search_by_key(&ty.raw(), |e| e.0)
            .ok()
            .map(|i| &self.type_rates[i].1)
    }
}

/// What a publish asks the policy about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PublishRequest {
    pub(crate) agent: AgentId,
    pub(crate) event_type: EventType,
    pub(crate) destination: Option<AgentId>,
    pub(crate) payload_len: usize,
}

/// The compiled policy.
pub(crate) struct Compiled {
    default: DefaultRule,
    /// Indexed by agent id; `None`: not mentioned.
    agents: Box<[Option<AgentRules>]>,
    anonymous: Option<AgentRules>,
    pub(crate) hook: Option<AuditHook>,
}

impl core::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Compiled")
            .field("default", &self.default)
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

impl Compiled {
    /// Checks `policy`'s ids against the counts interned on the bus, and compiles it.
    pub(crate) fn new(policy: &Policy, agents: u32, types: u32) -> Result<Self, BusError> {
        let check_agent = |a: AgentId| {
            if a.raw() >= agents {
                Err(BusError::UnknownAgent(a.raw()))
            } else {
                Ok(())
            }
        };
        let check_rules = |p: &AgentPolicy| -> Result<(), BusError> {
            let types_named = p
                .publish
                .iter()
                .flatten()
                .chain(p.subscribe.iter().flatten())
                .chain(p.max_payload.iter().map(|(t, _)| t))
                .chain(p.type_rates.iter().map(|(t, _)| t));
            for t in types_named {
                if u32::from(t.raw()) >= types {
                    return Err(BusError::UnknownEventType(t.raw()));
                }
            }
            p.destinations
                .iter()
                .flatten()
                .try_for_each(|a| check_agent(*a))
        };
        let mut table: Vec<Option<AgentRules>> = Vec::new();
        for (agent, rules) in &policy.agents {
            check_agent(*agent)?;
            check_rules(rules)?;
            let i = agent.raw() as usize;
            debug_assert!(i < MAX_AGENTS);
            if table.len() <= i {
                table.resize_with(i + 1, || None);
            }
            table[i] = Some(AgentRules::new(rules, policy.default));
        }
        if let Some(rules) = &policy.anonymous {
            check_rules(rules)?;
        }
        Ok(Compiled {
            default: policy.default,
            agents: table.into_boxed_slice(),
            anonymous: policy
                .anonymous
                .as_ref()
                .map(|r| AgentRules::new(r, policy.default)),
            hook: policy.hook.clone(),
        })
    }

    fn rules(&self, agent: AgentId) -> Option<&AgentRules> {
        if agent == Violation::ANONYMOUS {
            return self.anonymous.as_ref();
        }
        self.agents
            .get(agent.raw() as usize)
            .and_then(Option::as_ref)
    }

    /// Checks a publish at `now_ns` (read only when a lease of rate-limit tokens must be
    /// refilled), spending one unit of each applicable quota and rate limit from `units`,
    /// refilling them from the shared state when empty (`lease.rs`).
    #[inline]
    pub(crate) fn check_publish(
        &self,
        r: &PublishRequest,
        units: &mut Units,
        now_ns: impl FnOnce() -> u64,
    ) -> Result<Pass, Violation> {
        let refuse = |kind, limit| Violation {
            agent: r.agent,
            kind,
            event_type: r.event_type,
            destination: r.destination,
            payload_len: r.payload_len,
            limit,
        };
        let Some(rules) = self.rules(r.agent) else {
            return match self.default {
                DefaultRule::Allow => Ok(Pass {
                    max_payload: usize::MAX,
                    quota: false,
                    rate: false,
                    type_rate: false,
                }),
                DefaultRule::Deny => Err(refuse(ViolationKind::PublishDenied, 0)),
            };
        };
        if !rules.publish.contains(r.event_type) {
            return Err(refuse(ViolationKind::PublishDenied, 0));
        }
        if let Some(d) = r.destination {
            if !rules.destinations.contains(d) {
                return Err(refuse(ViolationKind::DestinationDenied, 0));
            }
        }
        let max_payload = rules.max_payload(r.event_type);
        if let Some(max) = max_payload {
            if r.payload_len > max {
                return Err(refuse(ViolationKind::PayloadTooLarge, max as u64));
            }
        }
        let type_rate = rules.type_rate(r.event_type);
        let covered = (rules.quota.is_none() || units.quota > 0)
            && (rules.rate.is_none() || units.agent_tokens > 0)
            && (type_rate.is_none()
                || (units.type_tokens > 0 && units.tokens_type == r.event_type));
        if !covered {
            refill(rules, type_rate, r.event_type, units, now_ns).map_err(|kind| {
                let limit = match kind {
                    ViolationKind::QuotaExceeded => rules.quota.as_ref().map_or(0, |q| q.max),
                    ViolationKind::RateLimited => {
                        rules.rate.as_ref().map_or(0, |l| l.rate.per_second())
                    }
                    _ => type_rate.map_or(0, |l| l.rate.per_second()),
                };
                refuse(kind, limit)
            })?;
        }
        units.quota -= u64::from(rules.quota.is_some());
        units.agent_tokens -= u64::from(rules.rate.is_some());
        units.type_tokens -= u64::from(type_rate.is_some());
        Ok(Pass {
            max_payload: max_payload.unwrap_or(usize::MAX),
            quota: rules.quota.is_some(),
            rate: rules.rate.is_some(),
            type_rate: type_rate.is_some(),
        })
    }

    /// Gives `agent`'s leased `units` back to this policy's shared quota and buckets
    /// (a reload, or the publisher dropped).
    pub(crate) fn give_back(&self, agent: AgentId, units: &mut Units) {
        if let Some(rules) = self.rules(agent) {
            if let Some(q) = &rules.quota {
                q.give_back(units.quota);
            }
            if let Some(l) = &rules.rate {
                l.bucket.give_back(units.agent_tokens);
            }
            if let Some(l) = rules.type_rate(units.tokens_type) {
                l.bucket.give_back(units.type_tokens);
            }
        }
        *units = Units::default();
    }

    /// Checks a subscription by `agent` (or [`Violation::ANONYMOUS`]) to `types` (empty:
    /// every type).
    pub(crate) fn check_subscribe(
        &self,
        agent: AgentId,
        types: &[EventType],
    ) -> Result<(), Violation> {
        let refuse = |ty| Violation {
            agent,
            kind: ViolationKind::SubscribeDenied,
            event_type: ty,
            destination: None,
            payload_len: 0,
            limit: 0,
        };
        let Some(rules) = self.rules(agent) else {
            return match self.default {
                DefaultRule::Allow => Ok(()),
                DefaultRule::Deny => Err(refuse(types.first().copied().unwrap_or(EVERY_TYPE))),
            };
        };
        if types.is_empty() {
            return if rules.subscribe.is_any() {
                Ok(())
            } else {
                Err(refuse(EVERY_TYPE))
            };
        }
        match types.iter().find(|t| !rules.subscribe.contains(**t)) {
            Some(t) => Err(refuse(*t)),
            None => Ok(()),
        }
    }
}

/// Refills the empty parts of a lease that this publish needs, in the order quota,
/// agent rate, type rate; on a refusal, gives back what this call took (a refused publish
/// takes nothing) and says which limit refused.
#[cold]
#[inline(never)]
fn refill(
    rules: &AgentRules,
    type_rate: Option<&Limiter>,
    ty: EventType,
    units: &mut Units,
    now_ns: impl FnOnce() -> u64,
) -> Result<(), ViolationKind> {
    let mut fresh_quota = 0;
    if let Some(q) = &rules.quota {
        if units.quota == 0 {
            fresh_quota = q.take_up_to(q.lease());
            if fresh_quota == 0 {
                return Err(ViolationKind::QuotaExceeded);
            }
            units.quota = fresh_quota;
        }
    }
    let give_back_quota = |units: &mut Units| {
        if let Some(q) = &rules.quota {
            q.give_back(fresh_quota);
            units.quota -= fresh_quota;
        }
    };
    if type_rate.is_some() {
        if units.tokens_type != ty && units.type_tokens > 0 {
            // Another type's tokens: back to that type's bucket first.
            if let Some(old) = rules.type_rate(units.tokens_type) {
                old.bucket.give_back(units.type_tokens);
            }
            units.type_tokens = 0;
        }
        units.tokens_type = ty;
    }
    let needs_agent = rules.rate.is_some() && units.agent_tokens == 0;
    let needs_type = type_rate.is_some() && units.type_tokens == 0;
    if !needs_agent && !needs_type {
        return Ok(());
    }
    let now = now_ns();
    let mut fresh_agent = 0;
    if let (Some(l), true) = (&rules.rate, needs_agent) {
        fresh_agent = l.bucket.take_up_to(now, l.lease());
        if fresh_agent == 0 {
            give_back_quota(units);
            return Err(ViolationKind::RateLimited);
        }
        units.agent_tokens = fresh_agent;
    }
    if let (Some(l), true) = (type_rate, needs_type) {
        let taken = l.bucket.take_up_to(now, l.lease());
        if taken == 0 {
            give_back_quota(units);
            if let Some(agent) = &rules.rate {
                agent.bucket.give_back(fresh_agent);
                units.agent_tokens -= fresh_agent;
            }
            return Err(ViolationKind::TypeRateLimited);
        }
        units.type_tokens = taken;
    }
    Ok(())
}

/// The event type a violation names for a subscription to every type.
const EVERY_TYPE: EventType = Violation::EVERY_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    const A: AgentId = AgentId(0);
    const B: AgentId = AgentId(1);
    const T0: EventType = EventType(0);
    const T1: EventType = EventType(1);

    fn req(agent: AgentId, ty: EventType, dest: Option<AgentId>, len: usize) -> PublishRequest {
        PublishRequest {
            agent,
            event_type: ty,
            destination: dest,
            payload_len: len,
        }
    }

    fn kind(c: &Compiled, u: &mut Units, r: PublishRequest, now: u64) -> Option<ViolationKind> {
        c.check_publish(&r, u, || now).err().map(|v| v.kind)
    }

    #[test]
    fn defaults_apply_to_unmentioned_agents_and_unset_parts() {
        let mut u = Units::default();
        let deny = Compiled::new(
            &Policy::deny_by_default().agent(A, AgentPolicy::new().may_publish([T0])),
            2,
            8,
        )
        .unwrap();
        assert_eq!(kind(&deny, &mut u, req(A, T0, None, 0), 0), None);
        assert_eq!(
            kind(&deny, &mut u, req(A, T1, None, 0), 0),
            Some(ViolationKind::PublishDenied)
        );
        assert_eq!(
            kind(&deny, &mut u, req(A, T0, Some(B), 0), 0),
            Some(ViolationKind::DestinationDenied),
            "unset destinations follow deny"
        );
        assert_eq!(
            kind(&deny, &mut u, req(B, T0, None, 0), 0),
            Some(ViolationKind::PublishDenied)
        );
        assert!(deny.check_subscribe(A, &[T0]).is_err());
        let allow = Compiled::new(
            &Policy::allow_by_default().agent(A, AgentPolicy::new().may_publish([T0])),
            2,
            8,
        )
        .unwrap();
        assert_eq!(kind(&allow, &mut u, req(A, T0, Some(B), 1000), 0), None);
        assert_eq!(
            kind(&allow, &mut u, req(A, T1, None, 0), 0),
            Some(ViolationKind::PublishDenied)
        );
        assert_eq!(kind(&allow, &mut u, req(B, T1, Some(A), 0), 0), None);
        assert!(allow.check_subscribe(A, &[]).is_ok());
        assert!(allow.check_subscribe(Violation::ANONYMOUS, &[T1]).is_ok());
    }

    #[test]
    fn payload_quota_and_rates_in_order_and_refusals_spend_nothing() {
        let mut u = Units::default();
        let rules = AgentPolicy::new()
            .max_payload(T0, 10)
            .max_payload_all(100)
            .quota(3)
            .rate_limit(Rate::new(1, 10).unwrap())
            .type_rate_limit(T1, Rate::new(1, 1).unwrap());
        let c = Compiled::new(&Policy::allow_by_default().agent(A, rules), 1, 8).unwrap();
        let v = c
            .check_publish(&req(A, T0, None, 11), &mut u, || 0)
            .unwrap_err();
        assert_eq!((v.kind, v.limit), (ViolationKind::PayloadTooLarge, 10));
        assert_eq!(
            kind(&c, &mut u, req(A, T1, None, 101), 0),
            Some(ViolationKind::PayloadTooLarge)
        );
        assert_eq!(kind(&c, &mut u, req(A, T1, None, 100), 0), None);
        // T1's bucket (burst 1) is empty now: refused, and neither quota nor the agent's
        // token is spent by the refusal.
        assert_eq!(
            kind(&c, &mut u, req(A, T1, None, 0), 0),
            Some(ViolationKind::TypeRateLimited)
        );
        assert_eq!(kind(&c, &mut u, req(A, T0, None, 0), 0), None);
        assert_eq!(kind(&c, &mut u, req(A, T0, None, 0), 0), None);
        let v = c
            .check_publish(&req(A, T0, None, 0), &mut u, || 0)
            .unwrap_err();
        assert_eq!((v.kind, v.limit), (ViolationKind::QuotaExceeded, 3));
    }

    #[test]
    fn leases_never_let_publishers_spend_more_than_the_quota() {
        // max 1000: leases of 15 units. Two publishers of the agent, interleaved.
        let c = Compiled::new(
            &Policy::allow_by_default().agent(A, AgentPolicy::new().quota(1000)),
            1,
            8,
        )
        .unwrap();
        let (mut p, mut q) = (Units::default(), Units::default());
        let mut passed = 0;
        for i in 0..1200 {
            let u = if i % 3 == 0 { &mut p } else { &mut q };
            passed += usize::from(kind(&c, u, req(A, T0, None, 0), 0).is_none());
        }
        let held = p.quota + q.quota;
        assert!(
            passed + held as usize == 1000,
            "{passed} passed, {held} held"
        );
        // What one publisher holds is spendable by the other once given back.
        c.give_back(A, &mut p);
        let more = (0..100)
            .filter(|_| kind(&c, &mut q, req(A, T0, None, 0), 0).is_none())
            .count();
        assert_eq!(passed + more + q.quota as usize, 1000);
    }

    #[test]
    fn a_lease_of_tokens_keeps_the_long_run_rate() {
        // 1000/s, burst 6400: leases of 100 tokens. Offered far above the rate for 1 s:
        // the burst plus one second of refill passes, and not one token more than was
        // leased.
        let rate = Rate::new(1000, 6400).unwrap();
        let c = Compiled::new(
            &Policy::allow_by_default().agent(A, AgentPolicy::new().rate_limit(rate)),
            1,
            8,
        )
        .unwrap();
        let mut u = Units::default();
        let t0 = 10_000_000_000u64;
        let mut passed = 0u64;
        for step in 0..=100_000u64 {
            let now = t0 + step * 10_000; // every 10 µs
            passed += u64::from(kind(&c, &mut u, req(A, T0, None, 0), now).is_none());
        }
        assert_eq!(passed + u.agent_tokens, 6400 + 1000);
    }

    #[test]
    fn a_type_change_gives_the_other_types_tokens_back() {
        let big = Rate::new(1, 640).unwrap(); // leases of 10
        let rules = AgentPolicy::new()
            .type_rate_limit(T0, big)
            .type_rate_limit(T1, big);
        let c = Compiled::new(&Policy::allow_by_default().agent(A, rules), 1, 8).unwrap();
        let mut u = Units::default();
        assert_eq!(kind(&c, &mut u, req(A, T0, None, 0), 0), None);
        assert_eq!((u.tokens_type, u.type_tokens), (T0, 9));
        assert_eq!(kind(&c, &mut u, req(A, T1, None, 0), 0), None);
        assert_eq!((u.tokens_type, u.type_tokens), (T1, 9));
        // T0 got its 9 back: 640 - 1 passes at the same instant, counting the lease.
        let mut other = Units::default();
        let t0_passes = (0..700)
            .filter(|_| kind(&c, &mut other, req(A, T0, None, 0), 0).is_none())
            .count() as u64;
        assert_eq!(t0_passes + other.type_tokens, 639);
    }

    #[test]
    fn subscribe_rules_per_type_and_for_every_type() {
        let c = Compiled::new(
            &Policy::deny_by_default()
                .agent(A, AgentPolicy::new().may_subscribe([T0]))
                .anonymous(AgentPolicy::new().may_subscribe([T1])),
            1,
            8,
        )
        .unwrap();
        assert!(c.check_subscribe(A, &[T0]).is_ok());
        let v = c.check_subscribe(A, &[T0, T1]).unwrap_err();
        assert_eq!((v.kind, v.event_type), (ViolationKind::SubscribeDenied, T1));
        assert_eq!(
            c.check_subscribe(A, &[]).unwrap_err().event_type,
            EVERY_TYPE
        );
        assert!(c.check_subscribe(Violation::ANONYMOUS, &[T1]).is_ok());
        assert!(c.check_subscribe(Violation::ANONYMOUS, &[T0]).is_err());
    }

    #[test]
    fn unknown_ids_in_a_policy_are_typed_errors() {
        let p = Policy::deny_by_default().agent(AgentId(5), AgentPolicy::new());
        assert_eq!(
            Compiled::new(&p, 2, 8).unwrap_err(),
            BusError::UnknownAgent(5)
        );
        let p = Policy::deny_by_default().agent(A, AgentPolicy::new().may_send_to([B]));
        assert_eq!(
            Compiled::new(&p, 1, 8).unwrap_err(),
            BusError::UnknownAgent(1)
        );
        let p = Policy::deny_by_default().agent(A, AgentPolicy::new().may_publish([EventType(9)]));
        assert_eq!(
            Compiled::new(&p, 1, 8).unwrap_err(),
            BusError::UnknownEventType(9)
        );
    }
}
