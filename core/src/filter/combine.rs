//! The filter combinators and the constructors that need more than the plain criteria.
//!
//! A combination turns each operand into its program (plain criteria become tests) and
//! joins the programs. What the router indexes by stays a superset of what passes: the
//! types an `and` or `or` can pass, and the first operand's destination tap (else the
//! second's); `!` indexes every type.

use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::Failure;
use smallvec::SmallVec;

use crate::bus::Bus;
use crate::event::Header;
use crate::filter::error::FilterError;
use crate::filter::expr::Expression;
use crate::filter::program::{Cmp, Cond, Insn};
use crate::filter::wildcard::{Pattern, TypeSet};
use crate::names::{EventType, MetaKey};
use crate::subscription::Filter;

impl Filter {
    /// Parses a filter expression and resolves its names on `bus` (once: routing runs the
    /// compiled program). A bad expression or an unknown name is a typed error with its
    /// byte position.
    ///
    /// ```
    /// use dreamnet_bus::{Bus, Filter, FilterError};
    /// let (bus, _shards) = Bus::builder().build_polled()?;
    /// bus.register_meta_key("tenant")?;
    /// let f = Filter::parse(&bus, r#"type == "agent.task" && priority >= high && meta.tenant == 7"#)?;
    /// # let _ = f;
    /// let err = Filter::parse(&bus, r#"type == "agent.nope""#).unwrap_err();
    /// assert!(matches!(err, FilterError::UnknownName { position: 8, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse<const SLOT: usize>(bus: &Bus<SLOT>, text: &str) -> Result<Filter, FilterError> {
        Expression::parse(bus, text).map(Filter::from)
    }

    /// Events whose type name matches a NATS-style subject pattern: `*` is one token,
    /// `>` (last) one or more. Types registered on `bus` later match too.
    ///
    /// ```
    /// use dreamnet_bus::{Bus, Filter};
    /// let (bus, _shards) = Bus::builder().build_polled()?;
    /// let agents = Filter::wildcard(&bus, "agent.*")?;   // agent.task, agent.status, ...
    /// let system = Filter::wildcard(&bus, "system.>")?;  // system.health, system.a.b, ...
    /// # let _ = (agents, system);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wildcard<const SLOT: usize>(
        bus: &Bus<SLOT>,
        pattern: &str,
    ) -> Result<Filter, FilterError> {
        let pattern = Pattern::parse(pattern, 0)?;
        if !pattern.is_wildcard() {
            let ty = bus
                .event_type(pattern.as_str())
                .ok_or_else(|| FilterError::UnknownName {
                    position: 0,
                    kind: "event type",
                    name: pattern.as_str().to_owned(),
                })?;
            return Ok(Filter::of_type(ty));
        }
        let set = bus.with_filter_registry(|reg| {
            let all = reg.names.event_types();
            reg.wildcards.bind([], vec![pattern], all)
        });
        Ok(Filter::with_cond(Cond::test(Insn::Type(set))))
    }

    /// Events carrying metadata entry `key` with `value <cmp> ...`: `Filter::meta(tenant,
    /// Cmp::Eq, 7)`. An event without the entry fails (whatever `cmp` is).
    pub fn meta(key: MetaKey, cmp: Cmp, value: u64) -> Filter {
        Filter::with_cond(Cond::test(Insn::Meta { key, cmp, value }))
    }

    /// Events whose payload is a valid archive of `T` for which `test` holds; read zero
    /// copy, validated on every evaluation (an event without a payload, or with another
    /// type's, fails). Combine it after cheaper criteria: `&&` stops at the first failure.
    ///
    /// ```
    /// use dreamnet_bus::{EventType, Filter};
    /// #[derive(rkyv::Archive, rkyv::Serialize)]
    /// struct Task { id: u32 }
    /// let f = Filter::of_type(EventType::AGENT_TASK).and(Filter::payload::<Task>(|t| t.id > 100));
    /// # let _ = f;
    /// ```
    pub fn payload<T>(test: impl Fn(&T::Archived) -> bool + Send + Sync + 'static) -> Filter
    where
        T: rkyv::Archive + 'static,
        T::Archived: for<'b> CheckBytes<rkyv::api::low::LowValidator<'b, Failure>>,
    {
        Filter::with_cond(Cond::payload(Box::new(move |h: &Header, bytes: &[u8]| {
            h.has_payload()
                && rkyv::api::low::access::<T::Archived, Failure>(bytes).is_ok_and(&test)
        })))
    }

    /// Passes what both `self` and `other` pass.
    pub fn and(self, other: Filter) -> Filter {
        let types = match (self.types.is_empty(), other.types.is_empty()) {
            (true, _) => other.types.clone(),
            (_, true) => self.types.clone(),
            _ => {
                let both: SmallVec<[EventType; 4]> = self
                    .types
                    .iter()
                    .copied()
                    .filter(|t| other.types.contains(t))
                    .collect();
                // Nothing can pass; keep an index that finds nothing cheaply.
                if both.is_empty() {
                    self.types.clone()
                } else {
                    both
                }
            }
        };
        let tap = self.destination.or(other.destination);
        let mut f = Filter::with_cond(self.into_cond().and(other.into_cond()));
        f.types = types;
        f.destination = tap;
        f
    }

    /// Passes what `self` or `other` passes.
    pub fn or(self, other: Filter) -> Filter {
        let types = if self.types.is_empty() || other.types.is_empty() {
            SmallVec::new()
        } else {
            let mut all = self.types.clone();
            all.extend(
                other
                    .types
                    .iter()
                    .copied()
                    .filter(|t| !self.types.contains(t)),
            );
            all
        };
        let tap = self.destination.or(other.destination);
        let mut f = Filter::with_cond(self.into_cond().or(other.into_cond()));
        f.types = types;
        f.destination = tap;
        f
    }

    /// A filter of the program `cond` alone.
    pub(crate) fn with_cond(cond: Cond) -> Filter {
        Filter {
            cond: Some(Box::new(cond)),
            ..Filter::default()
        }
    }

    /// Every criterion as one program (the tap is not a criterion: it stays behind).
    fn into_cond(self) -> Cond {
        let mut parts: SmallVec<[Cond; 5]> = SmallVec::new();
        if !self.types.is_empty() {
            parts.push(Cond::test(Insn::Type(std::sync::Arc::new(TypeSet::fixed(
                self.types.iter().copied(),
            )))));
        }
        if let Some(s) = self.source {
            parts.push(Cond::test(Insn::Source(Box::new([s]))));
        }
        if self.priorities != 0 {
            parts.push(Cond::test(Insn::Priority(self.priorities)));
        }
        if let Some(p) = self.predicate {
            parts.push(Cond::predicate(p));
        }
        if let Some(c) = self.cond {
            parts.push(*c);
        }
        parts.into_iter().reduce(Cond::and).unwrap_or_default()
    }
}

impl core::ops::Not for Filter {
    type Output = Filter;

    /// Passes what `self` does not (every type is indexed; the tap stays).
    fn not(self) -> Filter {
        let tap = self.destination;
        let mut f = Filter::with_cond(self.into_cond().not());
        f.destination = tap;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::names::AgentId;
    use crate::priority::Priority;
    use proptest::prelude::*;

    /// Plain criteria as leaves, combined; the model is the recursive meaning.
    #[derive(Clone, Debug)]
    enum Tree {
        Types(Vec<u16>),
        Source(u32),
        Levels(u8),
        Meta(Cmp, u64),
        Not(Box<Tree>),
        And(Box<Tree>, Box<Tree>),
        Or(Box<Tree>, Box<Tree>),
    }

    fn tree() -> impl Strategy<Value = Tree> {
        let cmp =
            proptest::sample::select(&[Cmp::Eq, Cmp::Ne, Cmp::Lt, Cmp::Le, Cmp::Gt, Cmp::Ge][..]);
        prop_oneof![
            proptest::collection::vec(0u16..5, 0..3).prop_map(Tree::Types),
            (0u32..3).prop_map(Tree::Source),
            (0u8..16).prop_map(Tree::Levels),
            (cmp, 0u64..3).prop_map(|(c, v)| Tree::Meta(c, v)),
        ]
        .prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|t| Tree::Not(Box::new(t))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Tree::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Tree::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    const KEY: MetaKey = MetaKey(1);

    fn build(t: &Tree) -> Filter {
        match t {
            Tree::Types(ts) => {
                Filter::of_types(&ts.iter().map(|t| EventType(*t)).collect::<Vec<_>>())
            }
            Tree::Source(s) => Filter::any().from_source(AgentId(*s)),
            Tree::Levels(m) => Filter::any().priorities(
                &Priority::ALL
                    .into_iter()
                    .filter(|p| m & (1 << p.index()) != 0)
                    .collect::<Vec<_>>(),
            ),
            Tree::Meta(c, v) => Filter::meta(KEY, *c, *v),
            Tree::Not(a) => !build(a),
            Tree::And(a, b) => build(a).and(build(b)),
            Tree::Or(a, b) => build(a).or(build(b)),
        }
    }

    fn model(t: &Tree, e: &Event) -> bool {
        let h = e.header();
        match t {
            Tree::Types(ts) => ts.is_empty() || ts.contains(&h.event_type().raw()),
            Tree::Source(s) => h.source().raw() == *s,
            // No level set: every level (as `priorities(&[])`).
            Tree::Levels(m) => *m == 0 || m & (1 << h.priority().index()) != 0,
            Tree::Meta(c, v) => h.metadata(KEY).is_some_and(|x| c.holds(x, *v)),
            Tree::Not(a) => !model(a, e),
            Tree::And(a, b) => model(a, e) && model(b, e),
            Tree::Or(a, b) => model(a, e) || model(b, e),
        }
    }

    proptest! {
        /// Combinators over the plain criteria mean what the tree means, type index
        /// included (`matches` consults it first).
        #[test]
        fn combinations_match_the_recursive_model(
            t in tree(),
            ty in 0u16..5, src in 0u32..3, prio in 0u8..4, meta in proptest::option::of(0u64..3),
        ) {
            let mut e: Event = Event::new(EventType(ty)).with_priority(Priority::from_u8(prio).unwrap());
            e.stamp(1, AgentId(src), 0);
            if let Some(v) = meta {
                e.set_metadata(KEY, v).unwrap();
            }
            prop_assert_eq!(build(&t).matches(&e), model(&t, &e));
        }
    }

    #[test]
    fn payload_tests_read_the_archive_and_fail_without_one() {
        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct Job {
            seq: u32,
        }
        #[derive(rkyv::Archive, rkyv::Serialize)]
        struct Other {
            a: u8,
            b: u8,
        }
        let f = Filter::payload::<Job>(|j| j.seq == 7);
        let e = |seq| {
            Event::<256>::new(EventType(0))
                .with_payload(&Job { seq })
                .unwrap()
        };
        assert!(f.matches(&e(7)));
        assert!(!f.matches(&e(8)));
        assert!(!f.matches(&Event::<256>::new(EventType(0))));
        // Another type's archive: refused by validation (2 bytes are no `u32` archive).
        let other = Event::<256>::new(EventType(0))
            .with_payload(&Other { a: 7, b: 0 })
            .unwrap();
        assert!(!f.matches(&other));
        assert!((!f).matches(&other));
    }
}
