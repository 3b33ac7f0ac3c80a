//! NATS-style subject wildcards on event type names (`agent.*`, `system.>`), and the type
//! sets filters test on the hot path.
//!
//! Type names are strings only at set-up time, and types can be registered at any time. A
//! filter that names types therefore carries a [`TypeSet`]: one bit per possible type id
//! ([`MAX_EVENT_TYPES`] bits, 128 bytes), tested with one load and a shift. A set made from
//! wildcard patterns is also kept in the bus's [`Wildcards`] registry (a weak reference):
//! when a type is registered later, the bus matches its name against each live set's
//! patterns, once, and sets the bit. The hot path never sees a string.
//!
//! Memory ordering: the bit is set (`Relaxed`) under the control-plane lock before
//! `register_event_type` returns the new id. Any event of that type is published after
//! that (a publisher needs the id), and reaches the shard through a ring whose
//! release/acquire pair orders the bit store before the shard's load; so a `Relaxed` load
//! on the shard sees it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::filter::error::FilterError;
use crate::names::{EventType, MAX_EVENT_TYPES, MAX_NAME_LEN};

const WORDS: usize = MAX_EVENT_TYPES / 64;

/// A subject pattern: tokens separated by `.`; `*` stands for exactly one token, `>` (last
/// only) for one or more trailing tokens. Without either it names one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pattern {
    text: Box<str>,
}

impl Pattern {
    /// Checks `text`: a valid name once `*` and `>` are read as tokens, with `>` last.
    /// `position` is where the pattern starts in a larger text (for the error).
    pub(crate) fn parse(text: &str, position: usize) -> Result<Pattern, FilterError> {
        let bad = |offset: usize, reason: &'static str| FilterError::BadPattern {
            position: position + offset,
            pattern: text.to_owned(),
            reason,
        };
        let mut offset = 0;
        let tokens: Vec<&str> = text.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if let Some(c) = token.char_indices().find(|(_, c)| {
                !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '/' | '*' | '>'))
            }) {
                return Err(bad(
                    offset + c.0,
                    "only ASCII letters, digits and . - _ : / * >",
                ));
            }
            if token.is_empty() {
                return Err(bad(offset, "a non-empty token between dots"));
            }
            if token.len() > 1 && (token.contains('*') || token.contains('>')) {
                return Err(bad(offset, "* and > as whole tokens"));
            }
            if *token == ">" && i + 1 != tokens.len() {
                return Err(bad(offset, "> as the last token only"));
            }
            offset += token.len() + 1;
        }
        // What is left of the name rules: the length.
        if text.len() > MAX_NAME_LEN {
            return Err(bad(MAX_NAME_LEN, "at most 64 bytes"));
        }
        Ok(Pattern { text: text.into() })
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it holds a wildcard token (else it names exactly one type).
    pub(crate) fn is_wildcard(&self) -> bool {
        self.text.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether type name `name` matches (control plane: a string walk).
    pub(crate) fn matches(&self, name: &str) -> bool {
        let mut names = name.split('.');
        for token in self.text.split('.') {
            if token == ">" {
                return names.next().is_some();
            }
            match names.next() {
                Some(n) if token == "*" || token == n => {}
                _ => return false,
            }
        }
        names.next().is_none()
    }
}

/// A set of event types as a fixed bitset, plus the patterns that decide whether a type
/// registered later joins it. Shared between a filter (reads, hot path) and the bus's
/// registry (writes, control plane).
#[derive(Debug)]
pub(crate) struct TypeSet {
    bits: [AtomicU64; WORDS],
    /// Patterns with a wildcard; empty for a fixed set (never updated).
    patterns: Box<[Pattern]>,
}

impl TypeSet {
    /// A set holding exactly `types`.
    pub(crate) fn fixed(types: impl IntoIterator<Item = EventType>) -> TypeSet {
        let set = TypeSet {
            bits: Default::default(),
            patterns: Box::new([]),
        };
        for t in types {
            set.insert(t);
        }
        set
    }

    /// Whether `ty` is in the set: one load and a shift.
    #[inline]
    pub(crate) fn contains(&self, ty: EventType) -> bool {
        let i = ty.index();
        self.bits
            .get(i / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (i % 64)) != 0)
    }

    fn insert(&self, ty: EventType) {
        let i = ty.index();
        if let Some(w) = self.bits.get(i / 64) {
            w.fetch_or(1 << (i % 64), Ordering::Relaxed);
        }
    }

    /// Same members and same patterns.
    pub(crate) fn same_as(&self, other: &TypeSet) -> bool {
        self.patterns == other.patterns
            && self
                .bits
                .iter()
                .zip(&other.bits)
                .all(|(a, b)| a.load(Ordering::Relaxed) == b.load(Ordering::Relaxed))
    }
}

/// The bus's list of live wildcard type sets (control plane, under the plane lock).
#[derive(Debug, Default)]
pub(crate) struct Wildcards {
    live: Vec<Weak<TypeSet>>,
}

impl Wildcards {
    /// A type set for `types` and `patterns`, filled from the types registered so far
    /// (`names` yields every registered type with its name) and kept up to date from now on.
    pub(crate) fn bind<'a>(
        &mut self,
        types: impl IntoIterator<Item = EventType>,
        patterns: Vec<Pattern>,
        names: impl IntoIterator<Item = (EventType, &'a str)>,
    ) -> Arc<TypeSet> {
        let set = TypeSet::fixed(types);
        let set = TypeSet {
            patterns: patterns.into_boxed_slice(),
            ..set
        };
        for (ty, name) in names {
            if set.patterns.iter().any(|p| p.matches(name)) {
                set.insert(ty);
            }
        }
        let set = Arc::new(set);
        if !set.patterns.is_empty() {
            // Dropped sets are pruned here and on registration, so the list stays as long
            // as the live wildcard filters.
            self.live.retain(|w| w.strong_count() > 0);
            self.live.push(Arc::downgrade(&set));
        }
        set
    }

    /// Type `ty` was registered under `name`: every live set whose patterns match gains it.
    pub(crate) fn registered(&mut self, ty: EventType, name: &str) {
        self.live.retain(|w| match w.upgrade() {
            Some(set) => {
                if set.patterns.iter().any(|p| p.matches(name)) {
                    set.insert(ty);
                }
                true
            }
            None => false,
        });
    }

    /// How many live wildcard sets the bus keeps up to date.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.iter().filter(|w| w.strong_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s, 0).unwrap()
    }

    #[test]
    fn nats_semantics() {
        assert!(p("agent.*").matches("agent.task"));
        assert!(!p("agent.*").matches("agent"));
        assert!(!p("agent.*").matches("agent.task.x"));
        assert!(p("system.>").matches("system.health"));
        assert!(p("system.>").matches("system.a.b.c"));
        assert!(!p("system.>").matches("system"));
        assert!(p("*.task").matches("agent.task"));
        assert!(p(">").matches("anything.at.all"));
        assert!(p("agent.task").matches("agent.task"));
        assert!(!p("agent.task").matches("agent.tasks"));
        assert!(!p("agent.task").is_wildcard());
        assert!(p("a.*.c").is_wildcard());
    }

    #[test]
    fn bad_patterns_are_typed_errors_with_positions() {
        let err = |s: &str| match Pattern::parse(s, 10) {
            Err(FilterError::BadPattern { position, .. }) => position,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(err("agent.>.x"), 16);
        assert_eq!(err("agent..x"), 16);
        assert_eq!(err("agent.ta*"), 16);
        assert_eq!(err("agent task"), 15);
        assert_eq!(err(""), 10);
        assert_eq!(err(&"a".repeat(65)), 74);
    }

    #[test]
    fn types_registered_later_join_live_sets_only() {
        let mut reg = Wildcards::default();
        let set = reg.bind([], vec![p("agent.*")], [(EventType(0), "agent.task")]);
        assert!(set.contains(EventType(0)));
        reg.registered(EventType(9), "agent.later");
        reg.registered(EventType(10), "system.later");
        assert!(set.contains(EventType(9)));
        assert!(!set.contains(EventType(10)));
        assert_eq!(reg.live(), 1);
        drop(set);
        reg.registered(EventType(11), "agent.x");
        assert_eq!(reg.live(), 0);
        assert!(!TypeSet::fixed([]).contains(EventType(u16::MAX)));
    }

    /// Model: match token lists by recursion on the pattern.
    fn model(pat: &[&str], name: &[&str]) -> bool {
        match (pat.split_first(), name.split_first()) {
            (Some((&">", _)), Some(_)) => true,
            (Some((t, prest)), Some((n, nrest))) => (*t == "*" || t == n) && model(prest, nrest),
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matches_like_the_token_model(
            pat in proptest::collection::vec(prop_oneof!["a", "b", Just("*".to_owned())], 1..4),
            gt in any::<bool>(),
            name in proptest::collection::vec(prop_oneof!["a", "b"], 1..5),
        ) {
            let mut pat = pat;
            if gt { pat.push(">".to_owned()); }
            let text = pat.join(".");
            let pattern = Pattern::parse(&text, 0).unwrap();
            let pat: Vec<&str> = pat.iter().map(String::as_str).collect();
            let name_v: Vec<&str> = name.iter().map(String::as_str).collect();
            prop_assert_eq!(pattern.matches(&name.join(".")), model(&pat, &name_v));
        }
    }
}
