//! Interned names: agents, event types and metadata keys.
//!
//! Names are strings only at set-up time. [`Names::intern_agent`] and friends turn each name
//! into a small integer id once; the hot path (publish, route, dispatch) compares integers
//! and never touches a string. Interning is idempotent: the same name always yields the
//! same id on one bus.

use std::collections::HashMap;

use crate::error::NameError;

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// How many agents one bus can intern (ids are `0..MAX_AGENTS`).
pub const MAX_AGENTS: usize = 1 << 16;
/// How many event types one bus can intern, built-ins included (ids are `0..MAX_EVENT_TYPES`).
pub const MAX_EVENT_TYPES: usize = 1024;
/// How many metadata keys one bus can intern.
pub(crate) const MAX_META_KEYS: usize = 1024;

/// An interned agent name (`"dreamnet-lucid"`), valid on the bus that interned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub(crate) u32);

impl AgentId {
    /// The raw id, for logs, metrics and serialisation.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

/// An event type: one of the spec's built-ins or a custom type interned by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub(crate) u16);

impl EventType {
    /// `agent.task`: a task assigned to an agent.
    pub const AGENT_TASK: EventType = EventType(0);
    /// `agent.response`: a response from an agent.
    pub const AGENT_RESPONSE: EventType = EventType(1);
    /// `agent.capability`: a capability announcement.
    pub const AGENT_CAPABILITY: EventType = EventType(2);
    /// `agent.status`: a status update from an agent.
    pub const AGENT_STATUS: EventType = EventType(3);
    /// `agent.error`: an error reported by an agent.
    pub const AGENT_ERROR: EventType = EventType(4);
    /// `system.health`: a system health event.
    pub const SYSTEM_HEALTH: EventType = EventType(5);
    /// `system.event`: a generic system event.
    pub const SYSTEM_EVENT: EventType = EventType(6);

    /// The spec's built-in types with their names, in id order.
    pub const BUILT_IN: [(EventType, &'static str); 7] = [
        (Self::AGENT_TASK, "agent.task"),
        (Self::AGENT_RESPONSE, "agent.response"),
        (Self::AGENT_CAPABILITY, "agent.capability"),
        (Self::AGENT_STATUS, "agent.status"),
        (Self::AGENT_ERROR, "agent.error"),
        (Self::SYSTEM_HEALTH, "system.health"),
        (Self::SYSTEM_EVENT, "system.event"),
    ];

    /// The raw id, for logs, metrics and serialisation.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// The index of this type in per-type tables.
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

/// An interned metadata key, for the few inline key/value entries of an event header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetaKey(pub(crate) u16);

impl MetaKey {
    /// The raw id.
    pub const fn raw(self) -> u16 {
        self.0
    }
}

/// Checks a name: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits and `. - _ : /`.
pub(crate) fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')))
    {
        return Err(NameError::InvalidChar {
            name: name.to_owned(),
            found: bad,
        });
    }
    Ok(())
}

/// One table of interned names: name -> dense id, and back.
#[derive(Debug, Default)]
struct Table {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Table {
    fn intern(&mut self, name: &str, max: usize) -> Result<u32, NameError> {
        validate_name(name)?;
        if let Some(&id) = self.ids.get(name) {
            return Ok(id);
        }
        if self.names.len() >= max {
            return Err(NameError::TableFull { max });
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        Ok(id)
    }

    fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }
}

/// The interning tables of one bus. Control plane only: guarded by a lock in the bus, read
/// on the hot path only through the lock-free counts the bus keeps beside it.
#[derive(Debug)]
pub(crate) struct Names {
    agents: Table,
    types: Table,
    meta_keys: Table,
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

impl Names {
    /// Tables holding the built-in event types and nothing else.
    pub(crate) fn new() -> Self {
        let mut types = Table::default();
        for (ty, name) in EventType::BUILT_IN {
            let id = types.intern(name, MAX_EVENT_TYPES);
            debug_assert_eq!(id, Ok(u32::from(ty.0)));
        }
        Names {
            agents: Table::default(),
            types,
            meta_keys: Table::default(),
        }
    }

    /// Interns an agent name.
    pub(crate) fn intern_agent(&mut self, name: &str) -> Result<AgentId, NameError> {
        self.agents.intern(name, MAX_AGENTS).map(AgentId)
    }

    /// Interns a custom event type name (built-in names return the built-in type).
    pub(crate) fn intern_event_type(&mut self, name: &str) -> Result<EventType, NameError> {
        self.types
            .intern(name, MAX_EVENT_TYPES)
            .map(|id| EventType(id as u16))
    }

    /// Interns a metadata key name.
    pub(crate) fn intern_meta_key(&mut self, name: &str) -> Result<MetaKey, NameError> {
        self.meta_keys
            .intern(name, MAX_META_KEYS)
            .map(|id| MetaKey(id as u16))
    }

    /// The id of an agent interned before, if any.
    pub(crate) fn agent(&self, name: &str) -> Option<AgentId> {
        self.agents.get(name).map(AgentId)
    }

    /// The type interned under `name`, if any.
    pub(crate) fn event_type(&self, name: &str) -> Option<EventType> {
        self.types.get(name).map(|id| EventType(id as u16))
    }

    /// The metadata key interned under `name`, if any.
    pub(crate) fn meta_key(&self, name: &str) -> Option<MetaKey> {
        self.meta_keys.get(name).map(|id| MetaKey(id as u16))
    }

    /// Every event type with its name, in id order (for wildcard filters).
    pub(crate) fn event_types(&self) -> impl Iterator<Item = (EventType, &str)> {
        (0u16..)
            .zip(self.types.names.iter().map(String::as_str))
            .map(|(i, n)| (EventType(i), n))
    }

    /// The name of an agent id.
    pub(crate) fn agent_name(&self, id: AgentId) -> Option<&str> {
        self.agents.name(id.0)
    }

    /// The name of an event type.
    pub(crate) fn event_type_name(&self, ty: EventType) -> Option<&str> {
        self.types.name(u32::from(ty.0))
    }

    /// The name of a metadata key.
    pub(crate) fn meta_key_name(&self, key: MetaKey) -> Option<&str> {
        self.meta_keys.name(u32::from(key.0))
    }

    /// How many agents are interned (valid ids are below this).
    pub(crate) fn agent_count(&self) -> u32 {
        self.agents.names.len() as u32
    }

    /// How many event types are interned (valid ids are below this).
    pub(crate) fn event_type_count(&self) -> u32 {
        self.types.names.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn built_in_types_have_their_spec_names() {
        let names = Names::new();
        for (ty, name) in EventType::BUILT_IN {
            assert_eq!(names.event_type(name), Some(ty));
            assert_eq!(names.event_type_name(ty), Some(name));
        }
        assert_eq!(names.event_type_count(), 7);
    }

    #[test]
    fn bad_names_are_typed_errors() {
        let mut names = Names::new();
        assert_eq!(names.intern_agent(""), Err(NameError::Empty));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            names.intern_agent(&long),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        assert!(matches!(
            names.intern_event_type("bad name"),
            Err(NameError::InvalidChar { found: ' ', .. })
        ));
        assert!(names.intern_agent(&"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    proptest! {
        /// Interning equals a model map: same name -> same id, ids dense in first-seen order.
        #[test]
        fn interning_matches_a_map_model(words in proptest::collection::vec("[a-c]{1,3}", 0..40)) {
            let mut names = Names::new();
            let mut model: Vec<String> = Vec::new();
            for w in &words {
                let id = names.intern_agent(w).unwrap();
                let expected = match model.iter().position(|m| m == w) {
                    Some(i) => i,
                    None => { model.push(w.clone()); model.len() - 1 }
                };
                prop_assert_eq!(id.raw() as usize, expected);
                prop_assert_eq!(names.agent_name(id), Some(w.as_str()));
            }
            prop_assert_eq!(names.agent_count() as usize, model.len());
        }
    }
}
