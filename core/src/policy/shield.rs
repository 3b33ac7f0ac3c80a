//! The bus's enforcement point ("Shield Core"): holds the installed policy for lock-free
//! reads, swaps it while traffic flows, and records every violation (counted per agent
//! and kind, handed to the audit hook).
//!
//! Hot reload: the policy sits in an `ArcSwapOption`, and an [`Epoch`] word says whether
//! one is installed and which install it is (`epoch.rs` argues the ordering and models it
//! in loom). A publish loads the epoch once: off, it passes; unchanged since its
//! publisher's lease was bound, and the same kind of publish as the last that passed, it
//! spends leased units (`lease.rs`); otherwise it reads the policy through its
//! publisher's `arc_swap::Cache` ([`PolicyCache`]: no reference count touched) and runs
//! the full check.

use core::sync::atomic::{AtomicU64, Ordering};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use arc_swap::cache::Cache;
use arc_swap::ArcSwapOption;

use crate::event::Event;
use crate::names::{AgentId, EventType};
use crate::policy::compiled::{Compiled, PublishRequest};
use crate::policy::counters::ViolationTable;
use crate::policy::epoch::Epoch;
use crate::policy::lease::Lease;
use crate::policy::violation::{SecurityAlert, Violation, ViolationCounts};
use crate::priority::Priority;

/// A policy as installed: compiled, with where its alerts go.
#[derive(Debug)]
pub(crate) struct Installed {
    pub(crate) compiled: Compiled,
    /// The `system.security` event type.
    pub(crate) alert_type: EventType,
    /// The agent alerts are published as.
    pub(crate) alert_source: AgentId,
}

/// A refused publish or subscribe: the violation, and how to raise its alert.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refused {
    pub(crate) violation: Violation,
    pub(crate) alert_type: EventType,
    pub(crate) alert_source: AgentId,
}

impl Refused {
    /// The `system.security` event for this violation (its payload is a
    /// [`SecurityAlert`]; in a slot too small for it, the alert goes without payload).
    pub(crate) fn alert<const SLOT: usize>(&self) -> Event<SLOT> {
        let mut event = Event::new(self.alert_type).with_priority(Priority::High);
        let _ = event.set_payload(&SecurityAlert::from(&self.violation));
        event
    }
}

/// A publisher's view of the installed policy (re-read only when it changed) and its
/// lease of quota and rate-limit tokens under it (`lease.rs`).
pub(crate) struct PolicyCache {
    policy: Cache<Arc<ArcSwapOption<Installed>>, Option<Arc<Installed>>>,
    lease: Lease,
    /// The epoch word the lease was bound under (0, never an installed word: unbound).
    epoch: u64,
}

/// The enforcement point.
#[derive(Default)]
pub(crate) struct Shield {
    epoch: Epoch,
    current: Arc<ArcSwapOption<Installed>>,
    /// Per agent and kind, kept across reloads; rows allocated as agents are prepared.
    counts: ViolationTable,
    alerts_published: AtomicU64,
    alerts_dropped: AtomicU64,
    hook_panics: AtomicU64,
}

impl core::fmt::Debug for Shield {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shield")
            .field("enabled", &self.is_on())
            .finish_non_exhaustive()
    }
}

impl Shield {
    /// Installs `policy`; publishes that start after this returns are checked by it.
    /// `agents`: how many agents are registered (their counter rows are made here).
    pub(crate) fn set(&self, policy: Installed, agents: u32) {
        for a in 0..agents {
            self.counts.prepare(AgentId(a));
        }
        self.counts.prepare(Violation::ANONYMOUS);
        self.current.store(Some(Arc::new(policy)));
        self.epoch.advance(true);
    }

    /// Makes `agent`'s counter row, if a policy was ever installed (a publisher's agent,
    /// when it is created: control plane, so counting a violation never allocates).
    pub(crate) fn prepare(&self, agent: AgentId) {
        if self.current.load().is_some() {
            self.counts.prepare(agent);
        }
    }

    /// Removes the policy: everything is allowed again, unchecked.
    pub(crate) fn clear(&self) {
        self.current.store(None);
        self.epoch.advance(false);
    }

    /// Whether a policy is installed.
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        Epoch::is_on(self.epoch.load())
    }

    /// A cache of the installed policy for one publisher.
    pub(crate) fn cache(&self) -> PolicyCache {
        PolicyCache {
            policy: Cache::new(Arc::clone(&self.current)),
            lease: Lease::default(),
            epoch: 0,
        }
    }

    /// Checks a publish against the policy in `cache`. A violation is counted and handed
    /// to the audit hook before it is returned. Without a policy: one load and a branch.
    /// The same kind of publish as the last one that passed, under the same install, with
    /// units in the lease: that load and a few compares (`Lease::try_pass`). Anything
    /// else takes the full check.
    #[inline(always)]
    pub(crate) fn check_publish(
        &self,
        cache: &mut PolicyCache,
        request: &PublishRequest,
        now_ns: impl FnOnce() -> u64,
    ) -> Result<(), Refused> {
        let epoch = self.epoch.load();
        if !Epoch::is_on(epoch) {
            return Ok(());
        }
        if epoch == cache.epoch && cache.lease.try_pass(request) {
            return Ok(());
        }
        self.check_fully(cache, epoch, request, now_ns())
    }

    #[inline(never)]
    fn check_fully(
        &self,
        cache: &mut PolicyCache,
        epoch: u64,
        request: &PublishRequest,
        now_ns: u64,
    ) -> Result<(), Refused> {
        let PolicyCache {
            policy,
            lease,
            epoch: bound,
        } = cache;
        // The policy of `epoch` or a newer one (`epoch.rs`); if newer, the next publish
        // sees a newer epoch and comes here again.
        let Some(installed) = policy.load() else {
            return Ok(());
        };
        lease.bind(installed, request.agent);
        *bound = epoch;
        match installed
            .compiled
            .check_publish(request, &mut lease.units, || now_ns)
        {
            Ok(pass) => {
                lease.remember(request, pass);
                Ok(())
            }
            Err(v) => Err(self.refuse(installed, v)),
        }
    }

    /// Checks a subscription by `agent` (`None`: anonymous) to `types` (empty: every
    /// type).
    pub(crate) fn check_subscribe(
        &self,
        agent: Option<AgentId>,
        types: &[EventType],
    ) -> Result<(), Refused> {
        if !self.is_on() {
            return Ok(());
        }
        let guard = self.current.load();
        let Some(installed) = guard.as_deref() else {
            return Ok(());
        };
        installed
            .compiled
            .check_subscribe(agent.unwrap_or(Violation::ANONYMOUS), types)
            .map_err(|v| self.refuse(installed, v))
    }

    /// Counts a violation and calls the audit hook (a panicking hook is caught and
    /// counted: it runs inside a publish, which must not unwind half-done).
    #[cold]
    #[inline(never)]
    fn refuse(&self, installed: &Installed, violation: Violation) -> Refused {
        self.counts.count(&violation);
        if let Some(hook) = &installed.compiled.hook {
            if catch_unwind(AssertUnwindSafe(|| hook(&violation))).is_err() {
                self.hook_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        Refused {
            violation,
            alert_type: installed.alert_type,
            alert_source: installed.alert_source,
        }
    }

    /// Violations counted for `agent` (`None`: anonymous subscriptions), across every
    /// policy installed so far.
    pub(crate) fn counts(&self, agent: Option<AgentId>) -> ViolationCounts {
        self.counts.get(agent.unwrap_or(Violation::ANONYMOUS))
    }

    /// Notes an alert queued on the bus.
    pub(crate) fn alert_published(&self) {
        self.alerts_published.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes an alert that found no room on the bus (its rings full); the violation
    /// itself was still returned, counted and audited.
    pub(crate) fn alert_dropped(&self) {
        self.alerts_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// `(alerts published, alerts dropped for want of ring space, audit hook panics,
    /// violations counted without a row)`.
    pub(crate) fn alert_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.alerts_published.load(Ordering::Relaxed),
            self.alerts_dropped.load(Ordering::Relaxed),
            self.hook_panics.load(Ordering::Relaxed),
            self.counts.unattributed(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rules::{AgentPolicy, Policy};
    use crate::policy::violation::ViolationKind;
    use std::sync::Mutex;

    fn install(shield: &Shield, policy: &Policy) {
        shield.set(
            Installed {
                compiled: Compiled::new(policy, 4, 16).unwrap(),
                alert_type: EventType(9),
                alert_source: AgentId(3),
            },
            4,
        );
    }

    fn req(agent: u32, ty: u16) -> PublishRequest {
        PublishRequest {
            agent: AgentId(agent),
            event_type: EventType(ty),
            destination: None,
            payload_len: 0,
        }
    }

    #[test]
    fn off_until_set_then_counts_and_audits_every_violation() {
        let shield = Shield::default();
        assert!(!shield.is_on());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        install(
            &shield,
            &Policy::deny_by_default()
                .agent(AgentId(1), AgentPolicy::new().may_publish([EventType(2)]))
                .on_violation(move |v| log.lock().unwrap().push(*v)),
        );
        assert!(shield.is_on());
        let mut cache = shield.cache();
        assert!(shield.check_publish(&mut cache, &req(1, 2), || 0).is_ok());
        let r = shield
            .check_publish(&mut cache, &req(1, 3), || 0)
            .unwrap_err();
        assert_eq!(r.violation.kind, ViolationKind::PublishDenied);
        assert_eq!((r.alert_type, r.alert_source), (EventType(9), AgentId(3)));
        assert!(shield.check_subscribe(None, &[EventType(2)]).is_err());
        assert_eq!(
            shield
                .counts(Some(AgentId(1)))
                .get(ViolationKind::PublishDenied),
            1
        );
        assert_eq!(shield.counts(None).get(ViolationKind::SubscribeDenied), 1);
        assert_eq!(shield.counts(Some(AgentId(0))).total(), 0);
        assert_eq!(seen.lock().unwrap().len(), 2);
        let alert: Event = r.alert();
        let a = alert.payload::<SecurityAlert>().unwrap();
        assert_eq!(a.agent, 1);
        assert_eq!(a.event_type, 3);
        assert_eq!(alert.header().event_type(), EventType(9));
    }

    #[test]
    fn a_reload_applies_to_the_next_check_and_keeps_the_counts() {
        let shield = Shield::default();
        let mut cache = shield.cache();
        install(&shield, &Policy::deny_by_default());
        assert!(shield.check_publish(&mut cache, &req(0, 0), || 0).is_err());
        install(&shield, &Policy::allow_by_default());
        assert!(shield.check_publish(&mut cache, &req(0, 0), || 0).is_ok());
        assert_eq!(shield.counts(Some(AgentId(0))).total(), 1);
        shield.clear();
        assert!(!shield.is_on());
        assert!(shield.check_subscribe(None, &[]).is_ok());
    }

    #[test]
    fn a_dropped_publishers_lease_goes_back_to_the_quota() {
        let shield = Shield::default();
        // Quota 128: leases of 2 units.
        install(
            &shield,
            &Policy::allow_by_default().agent(AgentId(1), AgentPolicy::new().quota(128)),
        );
        let (mut a, mut b) = (shield.cache(), shield.cache());
        assert!(shield.check_publish(&mut a, &req(1, 0), || 0).is_ok());
        let passed_b = (0..200)
            .filter(|_| shield.check_publish(&mut b, &req(1, 0), || 0).is_ok())
            .count();
        assert_eq!(passed_b, 126, "a holds one leased unit");
        drop(a);
        assert!(shield.check_publish(&mut b, &req(1, 0), || 0).is_ok());
        assert!(shield.check_publish(&mut b, &req(1, 0), || 0).is_err());
    }

    #[test]
    fn a_panicking_hook_is_caught_and_counted() {
        let shield = Shield::default();
        install(
            &shield,
            &Policy::deny_by_default().on_violation(|_| panic!("audit sink down")),
        );
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = shield.check_publish(&mut shield.cache(), &req(0, 0), || 0);
        std::panic::set_hook(prev);
        assert!(r.is_err());
        assert_eq!(shield.alert_counts().2, 1);
        assert_eq!(shield.alert_counts().3, 0);
    }
}
