//! Leases: a publisher's private stock of quota and rate-limit tokens, taken from the
//! agent's shared state a few at a time so that most publishes touch no shared word.
//!
//! Without leases every publish under a rate limit and a quota does three atomic
//! read-modify-writes on cache lines shared by every publisher of the agent (about 15 ns
//! on this project's bench machine, a third of a publish). With them a publish
//! decrements three private counters, and one publish in `lease` refills them.
//!
//! What it costs in exactness, and what it does not:
//! - **Never more than the limit over time.** Every unit spent was taken from the shared
//!   bucket or quota first, so the long-run rate and the quota's total are exact.
//! - **A burst can run over by one lease per publisher**: tokens leased and not yet
//!   spent stay with the publisher while the shared bucket refills. A lease is
//!   `burst / 64` tokens, at least 1 and at most 256 (`Limiter::lease`), so a bucket with a
//!   burst under 128 leases one token at a time and behaves exactly as before; a quota
//!   leases `max / 64`, at least 1 and at most 256.
//! - **Between publishers of one agent**, a unit leased by one is not available to the
//!   other until it is spent or given back: one of them can be refused while the other
//!   holds a few units.
//! - **A refused publish takes nothing**: units leased by the refused call itself are
//!   given back at once; units leased earlier stay in the lease (they were not spent).
//!
//! The lease also remembers the last access decision that passed (type, destination, the
//! payload limit and which meters apply): a publisher that publishes the same kind of
//! event again pays a few compares and three decrements, not the rule lookup.
//!
//! - **Given back** when the policy changes (the next publish sees the new one and
//!   returns the old lease to the old policy's state) and when the publisher is dropped.

use std::sync::Arc;

use crate::names::{AgentId, EventType};
use crate::policy::compiled::PublishRequest;
use crate::policy::shield::Installed;

/// What a publish that passed the access checks needs from then on: the payload limit
/// of its type and which meters it spends. A pure function of the policy, the agent, the
/// type and the destination, so it can be remembered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pass {
    pub(crate) max_payload: usize,
    pub(crate) quota: bool,
    pub(crate) rate: bool,
    pub(crate) type_rate: bool,
}

/// The last passed decision and what it was for.
#[derive(Clone, Copy, Debug)]
struct Memo {
    event_type: EventType,
    destination: Option<AgentId>,
    pass: Pass,
}

/// Units held by one publisher for one agent under one compiled policy.
#[derive(Debug)]
pub(crate) struct Units {
    /// Quota units left.
    pub(crate) quota: u64,
    /// Agent rate-limit tokens left.
    pub(crate) agent_tokens: u64,
    /// Per-type rate-limit tokens left, for `tokens_type` only (a publisher usually
    /// publishes one type at a time; another type gives these back first).
    pub(crate) type_tokens: u64,
    pub(crate) tokens_type: EventType,
}

impl Default for Units {
    fn default() -> Self {
        Units {
            quota: 0,
            agent_tokens: 0,
            type_tokens: 0,
            tokens_type: EventType(0),
        }
    }
}

impl Units {
    pub(crate) fn is_empty(&self) -> bool {
        self.quota == 0 && self.agent_tokens == 0 && self.type_tokens == 0
    }
}

/// A publisher's lease: its units, and the policy and agent they were taken from.
#[derive(Debug)]
pub(crate) struct Lease {
    /// The installed policy the units belong to; compared by address on every check, and
    /// held so that the units can be given back to it after a reload.
    owner: Option<Arc<Installed>>,
    agent: AgentId,
    pub(crate) units: Units,
    memo: Option<Memo>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            owner: None,
            agent: AgentId(0),
            units: Units::default(),
            memo: None,
        }
    }
}

impl Lease {
    /// Makes the lease hold units of `installed` for `agent`, giving back whatever it
    /// held for another policy or agent first. One address and one id compare when
    /// nothing changed.
    #[inline(always)]
    pub(crate) fn bind(&mut self, installed: &Arc<Installed>, agent: AgentId) {
        let same = self
            .owner
            .as_ref()
            .is_some_and(|o| Arc::ptr_eq(o, installed));
        if !same || self.agent != agent {
            self.rebind(installed, agent);
        }
    }

    /// Passes `r` without the rule lookup when it is the kind of publish that passed
    /// last time and the lease holds the units it spends (and spends them). The caller
    /// has checked that the policy is still the one the lease is bound to (the epoch).
    /// False: take the full check.
    #[inline(always)]
    pub(crate) fn try_pass(&mut self, r: &PublishRequest) -> bool {
        let Some(m) = &self.memo else {
            return false;
        };
        let same_kind = self.agent == r.agent
            && m.event_type == r.event_type
            && m.destination == r.destination
            && r.payload_len <= m.pass.max_payload;
        let u = &mut self.units;
        let p = m.pass;
        if !same_kind
            || (p.quota && u.quota == 0)
            || (p.rate && u.agent_tokens == 0)
            || (p.type_rate && u.type_tokens == 0)
        {
            return false;
        }
        u.quota -= u64::from(p.quota);
        u.agent_tokens -= u64::from(p.rate);
        u.type_tokens -= u64::from(p.type_rate);
        true
    }

    /// Remembers that `r` passed with `pass` (the full check just said so).
    pub(crate) fn remember(&mut self, r: &PublishRequest, pass: Pass) {
        self.memo = Some(Memo {
            event_type: r.event_type,
            destination: r.destination,
            pass,
        });
    }

    #[cold]
    fn rebind(&mut self, installed: &Arc<Installed>, agent: AgentId) {
        self.release();
        self.memo = None;
        self.owner = Some(Arc::clone(installed));
        self.agent = agent;
    }

    /// Gives every unit back to the policy it came from.
    fn release(&mut self) {
        if let Some(owner) = self.owner.take() {
            if !self.units.is_empty() {
                owner.compiled.give_back(self.agent, &mut self.units);
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.release();
    }
}
