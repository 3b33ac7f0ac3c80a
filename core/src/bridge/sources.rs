//! Which local agent an event from the wire is published as: the inbound source mapping,
//! and the rule that keeps a remote process from acting as a local agent.
//!
//! Agent ids are per bus, so a remote source travels as a name and is mapped to a local
//! id here. Mapping every name blindly would let any process on the mesh stamp its events
//! with a local agent's id (the name `"planner"` would become this bus's planner, with
//! its routes, `from_source` filters and security policy rules). The rule:
//!
//! 1. A name this bridge mapped before keeps its id.
//! 2. A name **declared remote** (`BridgeBuilder::remote_agent`, or the agent of an
//!    `Export::agent`, which says "this agent is reached through the wire") maps to its
//!    local id, registering it if needed: the user said it lives elsewhere.
//! 3. A name **this bus does not know yet** is registered by the bridge and is remote from
//!    then on (rule 1).
//! 4. A name **this bus registered for itself** (not declared remote, not first seen
//!    from the wire) is refused: the message is dropped, counted as
//!    `DropReason::LocalSource` and kept in the bridge's dead letters.
//! 5. The one exception: this bus's own work handed back by a NATS queue group or a shared
//!    durable consumer (the path is exactly this bus's id) keeps its local source, since it
//!    was published here (a name this bus does not know cannot be its own work: rules 1
//!    to 3 apply). This mapping is not remembered, so it never opens rule 1 to other
//!    senders.
//!
//! So register local agents before the bridge sees their names on the wire: a name the
//! wire claimed first belongs to the remote agent (registering it later returns the same
//! id). Headers are not signed: a sender that forges this bus's id on the path of a
//! message to a queue group gets rule 5. Authenticating processes is NATS's job (accounts,
//! per-subject permissions); this rule keeps names from being confused across processes.

use std::collections::{HashMap, HashSet};

use crate::bus::Bus;
use crate::names::AgentId;

/// The agent table the mapping reads and extends (the bus; a model in the tests).
pub(crate) trait AgentTable {
    /// The id of a registered name, if any.
    fn lookup(&self, name: &str) -> Option<AgentId>;
    /// Registers `name` (idempotent), or says why it cannot be.
    fn register(&self, name: &str) -> Result<AgentId, String>;
}

impl<const SLOT: usize> AgentTable for Bus<SLOT> {
    fn lookup(&self, name: &str) -> Option<AgentId> {
        self.agent(name)
    }

    fn register(&self, name: &str) -> Result<AgentId, String> {
        self.register_agent(name).map_err(|e| e.to_string())
    }
}

/// Why a source name was not mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SourceRefused {
    /// The name is a local agent of this bus (rule 4).
    Local(String),
    /// The name could not be registered (tables full).
    Name(String),
}

/// The inbound source mapping of one bridge (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    /// Names declared remote.
    declared: HashSet<String>,
    /// Names mapped so far (rules 1 to 3), with their local ids.
    mapped: HashMap<String, AgentId>,
}

impl SourceMap {
    /// A mapping with the names declared remote.
    pub(crate) fn new(declared: impl IntoIterator<Item = String>) -> Self {
        SourceMap {
            declared: declared.into_iter().collect(),
            mapped: HashMap::new(),
        }
    }

    /// The local id to publish a message from `name` as; `own`: the message is this bus's
    /// own work handed back (rule 5).
    pub(crate) fn map(
        &mut self,
        table: &impl AgentTable,
        name: &str,
        own: bool,
    ) -> Result<AgentId, SourceRefused> {
        if let Some(id) = self.mapped.get(name) {
            return Ok(*id);
        }
        let local = table.lookup(name);
        if let (true, Some(id)) = (own, local) {
            return Ok(id);
        }
        if !self.declared.contains(name) && local.is_some() {
            return Err(SourceRefused::Local(name.to_owned()));
        }
        let id = table.register(name).map_err(SourceRefused::Name)?;
        self.mapped.insert(name.to_owned(), id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;

    /// A model agent table: names in registration order.
    #[derive(Default)]
    struct Table(RefCell<Vec<String>>);

    impl AgentTable for Table {
        fn lookup(&self, name: &str) -> Option<AgentId> {
            let names = self.0.borrow();
            names
                .iter()
                .position(|n| n == name)
                .map(|i| AgentId(i as u32))
        }

        fn register(&self, name: &str) -> Result<AgentId, String> {
            if let Some(id) = self.lookup(name) {
                return Ok(id);
            }
            let mut names = self.0.borrow_mut();
            if names.len() >= 6 {
                return Err("full".into());
            }
            names.push(name.to_owned());
            Ok(AgentId(names.len() as u32 - 1))
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// The local application registers an agent.
        Local(usize),
        /// A message from the wire claims a source; `own`: this bus's own work handed back.
        Claim { name: usize, own: bool },
    }

    const NAMES: [&str; 5] = ["planner", "lucid", "beta", "gamma", "delta"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..NAMES.len()).prop_map(Op::Local),
            (0..NAMES.len(), proptest::bool::weighted(0.15))
                .prop_map(|(name, own)| Op::Claim { name, own }),
        ]
    }

    proptest! {
        /// Against a model of who owns each name: a claim from another process is stamped
        /// with a local agent's id only if the name was declared remote or the wire claimed
        /// it before the application registered it; a local name is refused; own work keeps
        /// its source; any other claim is mapped (a claim may fail only on a full table).
        #[test]
        fn a_remote_claim_never_becomes_a_local_agent(
            declared in proptest::collection::hash_set(0..NAMES.len(), 0..3),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let table = Table::default();
            let mut map = SourceMap::new(declared.iter().map(|&i| NAMES[i].to_owned()));
            // The model: for each name, who owns it (first to register it).
            let mut owner: HashMap<usize, &str> = HashMap::new();
            for op in ops {
                match op {
                    Op::Local(i) => {
                        if table.register(NAMES[i]).is_ok() {
                            owner.entry(i).or_insert("local");
                        }
                    }
                    Op::Claim { name: i, own } => {
                        let got = map.map(&table, NAMES[i], own);
                        let expect_ok = (own && owner.contains_key(&i))
                            || declared.contains(&i)
                            || owner.get(&i).is_none_or(|o| *o == "wire");
                        match got {
                            Ok(id) => {
                                prop_assert!(expect_ok, "{} mapped to {id:?} but owned locally", NAMES[i]);
                                prop_assert_eq!(table.lookup(NAMES[i]), Some(id));
                                owner.entry(i).or_insert(if declared.contains(&i) { "declared" } else { "wire" });
                            }
                            Err(SourceRefused::Local(n)) => {
                                prop_assert!(!expect_ok, "{n} refused but not local");
                                prop_assert_eq!(n, NAMES[i]);
                            }
                            Err(SourceRefused::Name(_)) => {
                                prop_assert!(table.lookup(NAMES[i]).is_none());
                                prop_assert_eq!(table.0.borrow().len(), 6);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn declared_and_unknown_names_map_and_local_names_do_not() {
        let table = Table::default();
        let planner = table.register("planner").unwrap();
        let beta = table.register("beta").unwrap();
        let mut map = SourceMap::new(["beta".to_owned()]);
        assert_eq!(
            map.map(&table, "planner", false),
            Err(SourceRefused::Local("planner".into()))
        );
        assert_eq!(map.map(&table, "beta", false), Ok(beta));
        let gamma = map.map(&table, "gamma", false).unwrap();
        assert_eq!(table.lookup("gamma"), Some(gamma));
        // Own work keeps its local source, and does not open the name to others.
        assert_eq!(map.map(&table, "planner", true), Ok(planner));
        assert_eq!(
            map.map(&table, "planner", false),
            Err(SourceRefused::Local("planner".into()))
        );
    }
}
