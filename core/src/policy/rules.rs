//! The policy as the user writes it: a default (allow or deny) and rules per agent. It
//! is plain data; `Bus::set_policy` checks it against the bus and compiles it into the
//! indexed form the hot path reads (`compiled.rs`).

use std::sync::Arc;

use crate::names::{AgentId, EventType};
use crate::policy::token_bucket::Rate;
use crate::policy::violation::Violation;

/// What happens to an agent, or a part of an agent's rules, that the policy does not
/// mention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultRule {
    /// Not mentioned: allowed, without limits.
    Allow,
    /// Not mentioned: refused.
    Deny,
}

/// Called with every violation, on the thread that caused it (a publisher's, or the one
/// calling `subscribe`). Keep it short; it must not publish on the same publisher.
pub type AuditHook = Arc<dyn Fn(&Violation) + Send + Sync>;

/// A bus's security policy: who may publish and subscribe to what, send to whom, how
/// large and how fast. Install it with `Bus::set_policy` (hot: traffic keeps flowing).
///
/// ```
/// use dreamnet_bus::{AgentPolicy, Bus, EventType, Policy, Rate};
/// let (bus, _shards) = Bus::builder().build_polled()?;
/// let lucid = bus.register_agent("dreamnet-lucid")?;
/// let assistant = bus.register_agent("openai-assistant")?;
/// bus.set_policy(
///     Policy::deny_by_default().agent(
///         lucid,
///         AgentPolicy::new()
///             .may_publish([EventType::AGENT_TASK])
///             .may_send_to([assistant])
///             .max_payload(EventType::AGENT_TASK, 128)
///             .rate_limit(Rate::new(10_000, 100)?)
///             .quota(1_000_000),
///     ),
/// )?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Policy {
    pub(crate) default: DefaultRule,
    pub(crate) agents: Vec<(AgentId, AgentPolicy)>,
    pub(crate) anonymous: Option<AgentPolicy>,
    pub(crate) hook: Option<AuditHook>,
}

impl core::fmt::Debug for Policy {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Policy")
            .field("default", &self.default)
            .field("agents", &self.agents)
            .field("anonymous", &self.anonymous)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Policy {
    /// A policy under which whatever is not mentioned is allowed.
    pub fn allow_by_default() -> Self {
        Self::with_default(DefaultRule::Allow)
    }

    /// A policy under which whatever is not mentioned is refused.
    pub fn deny_by_default() -> Self {
        Self::with_default(DefaultRule::Deny)
    }

    /// A policy with the given default.
    pub fn with_default(default: DefaultRule) -> Self {
        Policy {
            default,
            agents: Vec::new(),
            anonymous: None,
            hook: None,
        }
    }

    /// The rules for `agent` (replacing any given before for it). Parts of `rules` left
    /// unset follow the default.
    pub fn agent(mut self, agent: AgentId, rules: AgentPolicy) -> Self {
        self.agents.retain(|(a, _)| *a != agent);
        self.agents.push((agent, rules));
        self
    }

    /// The rules for subscriptions bound to no agent (`Subscription::for_agent` not
    /// called). Only the subscribe rules apply to them.
    pub fn anonymous(mut self, rules: AgentPolicy) -> Self {
        self.anonymous = Some(rules);
        self
    }

    /// Calls `hook` with every violation (after it is counted, before the caller gets
    /// the error).
    pub fn on_violation(mut self, hook: impl Fn(&Violation) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// The default.
    pub fn default_rule(&self) -> DefaultRule {
        self.default
    }
}

/// One agent's rules. Every part left unset follows the policy's default: under
/// `allow_by_default` an agent with no `may_publish` may publish every type, under
/// `deny_by_default` none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentPolicy {
    pub(crate) publish: Option<Vec<EventType>>,
    pub(crate) subscribe: Option<Vec<EventType>>,
    pub(crate) destinations: Option<Vec<AgentId>>,
    pub(crate) max_payload: Vec<(EventType, usize)>,
    pub(crate) max_payload_all: Option<usize>,
    pub(crate) rate: Option<Rate>,
    pub(crate) type_rates: Vec<(EventType, Rate)>,
    pub(crate) quota: Option<u64>,
}

impl AgentPolicy {
    /// Rules that set nothing (everything follows the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// The event types the agent may publish (adds to any given before).
    pub fn may_publish(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.publish.get_or_insert_with(Vec::new).extend(types);
        self
    }

    /// The event types the agent may subscribe to (adds to any given before). A filter
    /// on every type needs every type here.
    pub fn may_subscribe(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.subscribe.get_or_insert_with(Vec::new).extend(types);
        self
    }

    /// The agents the agent may address events to (adds to any given before).
    /// Broadcasts are governed by `may_publish` alone.
    pub fn may_send_to(mut self, agents: impl IntoIterator<Item = AgentId>) -> Self {
        self.destinations
            .get_or_insert_with(Vec::new)
            .extend(agents);
        self
    }

    /// The largest payload, in bytes of archive, for events of type `ty`.
    pub fn max_payload(mut self, ty: EventType, bytes: usize) -> Self {
        self.max_payload.retain(|(t, _)| *t != ty);
        self.max_payload.push((ty, bytes));
        self
    }

    /// The largest payload for every type without its own `max_payload`.
    pub fn max_payload_all(mut self, bytes: usize) -> Self {
        self.max_payload_all = Some(bytes);
        self
    }

    /// A rate limit on everything the agent publishes (all its publishers together).
    pub fn rate_limit(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }

    /// A rate limit on the agent's events of type `ty` (on top of `rate_limit`).
    pub fn type_rate_limit(mut self, ty: EventType, rate: Rate) -> Self {
        self.type_rates.retain(|(t, _)| *t != ty);
        self.type_rates.push((ty, rate));
        self
    }

    /// The most events the agent may publish under this policy (a new `set_policy`
    /// starts a new count).
    pub fn quota(mut self, events: u64) -> Self {
        self.quota = Some(events);
        self
    }
}
