//! The bus's security-policy calls: install, reload and clear a policy, read its
//! counters, and check subscriptions. The publish-side check is in `publisher/police.rs`.

use std::sync::{Mutex, PoisonError};

use crate::bus::Bus;
use crate::error::BusError;
use crate::names::AgentId;
use crate::policy::{Compiled, Installed, Policy, Refused, ViolationCounts, SECURITY_EVENT_TYPE};
use crate::publisher::Publisher;
use crate::subscription::Subscription;

/// The agent `system.security` events are published as.
pub const SHIELD_AGENT: &str = "system.shield";

/// Counts of the policy machinery itself (violations are counted per agent:
/// [`Bus::violations`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShieldStats {
    /// `system.security` events queued on the bus.
    pub alerts_published: u64,
    /// Alerts that found the rings full (the violations were still returned, counted
    /// and audited).
    pub alerts_dropped: u64,
    /// Audit hook calls that panicked (caught; the violation was still returned).
    pub hook_panics: u64,
    /// Violations counted in no agent's row (0 unless an agent's row could not be made
    /// ahead; see [`Bus::violations`]).
    pub unattributed: u64,
}

/// The publisher subscribe-time alerts go out on, made at the first refused subscribe.
pub(crate) type AlertPublisher<const SLOT: usize> = Mutex<Option<Publisher<SLOT>>>;

impl<const SLOT: usize> Bus<SLOT> {
    /// Installs `policy`, replacing any policy before, while traffic flows: no lock is
    /// taken on the publish path, and every publish that starts after this returns is
    /// checked by `policy`. Rate limits and quotas start afresh; violation counts carry on.
    ///
    /// Registers the event type `system.security` (violations are published under it,
    /// with a [`crate::SecurityAlert`] payload) and the agent `system.shield` (their
    /// source). Ids in `policy` that the bus has not interned are typed errors, and the
    /// policy in force stays as it was.
    pub fn set_policy(&self, policy: Policy) -> Result<(), BusError> {
        let alert_type = self.register_event_type(SECURITY_EVENT_TYPE)?;
        let alert_source = self.register_agent(SHIELD_AGENT)?;
        let compiled = Compiled::new(&policy, self.shared.agent_count(), self.shared.type_count())?;
        self.shared.shield.set(
            Installed {
                compiled,
                alert_type,
                alert_source,
            },
            self.shared.agent_count(),
        );
        Ok(())
    }

    /// Removes the policy: from the next publish on, nothing is checked.
    pub fn clear_policy(&self) {
        self.shared.shield.clear();
    }

    /// Violations by `agent`, per kind, across every policy installed on this bus.
    pub fn violations(&self, agent: AgentId) -> ViolationCounts {
        self.shared.shield.counts(Some(agent))
    }

    /// Violations by subscriptions bound to no agent.
    pub fn anonymous_violations(&self) -> ViolationCounts {
        self.shared.shield.counts(None)
    }

    /// Counts of the alerts and audit hook calls.
    pub fn shield_stats(&self) -> ShieldStats {
        let (alerts_published, alerts_dropped, hook_panics, unattributed) =
            self.shared.shield.alert_counts();
        ShieldStats {
            alerts_published,
            alerts_dropped,
            hook_panics,
            unattributed,
        }
    }

    /// Checks a subscription against the policy; a refusal is counted, audited, raised
    /// as an alert and returned as `BusError::Policy`. Call before taking the plane lock
    /// (raising an alert may create a publisher).
    pub(crate) fn police_subscription(&self, s: &Subscription) -> Result<(), BusError> {
        if let Some(agent) = s.agent {
            self.shared.shield.prepare(agent);
        }
        let Err(refused) = self
            .shared
            .shield
            .check_subscribe(s.agent, s.filter.types())
        else {
            return Ok(());
        };
        self.raise_from_bus(&refused);
        Err(BusError::Policy(refused.violation))
    }

    fn raise_from_bus(&self, refused: &Refused) {
        let mut slot = self
            .alert_publisher
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = self.publisher(refused.alert_source).ok();
        }
        match slot.as_mut() {
            Some(publisher) => publisher.raise_gated(refused),
            None => self.shared.shield.alert_dropped(),
        }
    }
}
