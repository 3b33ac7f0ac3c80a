//! Resolves the names of a syntax tree through the bus's registries and compiles it to a
//! [`Cond`]. Runs once, when the filter is made; an unknown name is a typed error.

use smallvec::SmallVec;

use crate::filter::error::FilterError;
use crate::filter::expr::ast::{urgency, Expr, Field, Op, Test, Value};
use crate::filter::program::{Cmp, Cond, Insn};
use crate::filter::wildcard::{Pattern, Wildcards};
use crate::names::{AgentId, EventType, Names};
use crate::priority::Priority;

/// The bus's registries, borrowed under its control-plane lock.
pub(crate) struct Registry<'a> {
    pub names: &'a Names,
    pub wildcards: &'a mut Wildcards,
}

/// What routing can learn from the top-level conjunction of an expression.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    /// A `type == "x"` / `type in [..]` conjunct without wildcards: the router can index
    /// the filter under these types (the program still checks them).
    pub types: Option<SmallVec<[EventType; 4]>>,
    /// A `destination == "x"` conjunct: the filter taps that agent's direct traffic.
    pub tap: Option<AgentId>,
}

/// Compiles `e`, resolving names in `reg`.
pub(crate) fn compile(e: &Expr, reg: &mut Registry<'_>) -> Result<(Cond, Hints), FilterError> {
    let mut hints = Hints::default();
    let cond = node(e, reg, Some(&mut hints))?;
    Ok((cond, hints))
}

/// `hints` is `Some` while `e` is on the top-level `&&` chain.
fn node(e: &Expr, reg: &mut Registry<'_>, hints: Option<&mut Hints>) -> Result<Cond, FilterError> {
    Ok(match e {
        Expr::Bool(b) => Cond::test(Insn::Const(*b)),
        Expr::Not(a) => node(a, reg, None)?.not(),
        Expr::Or(a, b) => node(a, reg, None)?.or(node(b, reg, None)?),
        Expr::And(a, b) => match hints {
            Some(h) => {
                let left = node(a, reg, Some(&mut *h))?;
                left.and(node(b, reg, Some(h))?)
            }
            None => node(a, reg, None)?.and(node(b, reg, None)?),
        },
        Expr::Test(t) => test(t, reg, hints)?,
    })
}

fn negate_if_ne(op: Op, cond: Cond) -> Cond {
    if op == Op::Cmp(Cmp::Ne) {
        cond.not()
    } else {
        cond
    }
}

fn test(t: &Test, reg: &mut Registry<'_>, hints: Option<&mut Hints>) -> Result<Cond, FilterError> {
    let positive = t.op != Op::Cmp(Cmp::Ne);
    Ok(match &t.field {
        Field::Type => {
            let mut fixed: SmallVec<[EventType; 4]> = SmallVec::new();
            let mut patterns = Vec::new();
            for v in &t.values {
                let Value::Name(name, pos) = v else { continue };
                let pattern = Pattern::parse(name, *pos + 1)?;
                if pattern.is_wildcard() {
                    patterns.push(pattern);
                } else {
                    let ty =
                        reg.names
                            .event_type(name)
                            .ok_or_else(|| FilterError::UnknownName {
                                position: *pos,
                                kind: "event type",
                                name: name.clone(),
                            })?;
                    fixed.push(ty);
                }
            }
            if let Some(h) = hints {
                if positive && patterns.is_empty() && h.types.is_none() {
                    h.types = Some(fixed.clone());
                }
            }
            let all = reg.names.event_types();
            let set = reg.wildcards.bind(fixed, patterns, all);
            negate_if_ne(t.op, Cond::test(Insn::Type(set)))
        }
        Field::Source | Field::Destination => {
            let mut agents: SmallVec<[AgentId; 4]> = SmallVec::new();
            for v in &t.values {
                let Value::Name(name, pos) = v else { continue };
                agents.push(
                    reg.names
                        .agent(name)
                        .ok_or_else(|| FilterError::UnknownName {
                            position: *pos,
                            kind: "agent",
                            name: name.clone(),
                        })?,
                );
            }
            let is_dest = t.field == Field::Destination;
            if let (Some(h), true, true, [one]) = (hints, is_dest, positive, agents.as_slice()) {
                if h.tap.is_none() {
                    h.tap = Some(*one);
                }
            }
            let list = agents.into_vec().into_boxed_slice();
            let insn = if is_dest {
                Insn::Destination(list)
            } else {
                Insn::Source(list)
            };
            negate_if_ne(t.op, Cond::test(insn))
        }
        Field::Priority => {
            let mut mask = 0u8;
            for v in &t.values {
                let Value::Level(level, _) = v else { continue };
                for p in Priority::ALL {
                    let passes = match t.op {
                        Op::In => p == *level,
                        Op::Cmp(c) => c.holds(urgency(p), urgency(*level)),
                    };
                    if passes {
                        mask |= 1 << p.index();
                    }
                }
            }
            Cond::test(Insn::Priority(mask))
        }
        Field::Meta(key_name) => {
            let key = reg
                .names
                .meta_key(key_name)
                .ok_or_else(|| FilterError::UnknownName {
                    position: t.pos + "meta.".len(),
                    kind: "metadata key",
                    name: key_name.clone(),
                })?;
            let ints = t.values.iter().filter_map(|v| match v {
                Value::Int(n, _) => Some(*n),
                _ => None,
            });
            match t.op {
                Op::In => Cond::test(Insn::MetaIn {
                    key,
                    values: ints.collect(),
                }),
                Op::Cmp(cmp) => Cond::test(Insn::Meta {
                    key,
                    cmp,
                    value: ints.take(1).sum(),
                }),
            }
        }
    })
}
