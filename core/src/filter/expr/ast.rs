//! The syntax tree of a filter expression, as written (names are strings). It is printed
//! back in a canonical form (every binary operation in parentheses) and evaluated
//! naively by [`Expr::eval_model`], the reference the compiled program is tested against.

use core::fmt;

use crate::event::Header;
use crate::filter::program::Cmp;
use crate::filter::wildcard::Pattern;
use crate::names::{AgentId, EventType, MetaKey};
use crate::priority::Priority;

/// What a test looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    Type,
    Source,
    Destination,
    Priority,
    /// `meta.KEY`: a metadata entry.
    Meta(String),
}

/// A test's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Cmp(Cmp),
    In,
}

/// A constant in a test, with its byte position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A type name or pattern, or an agent name.
    Name(String, usize),
    Level(Priority, usize),
    Int(u64, usize),
}

/// `field op value` or `field in [values]` (then `values` may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Test {
    pub field: Field,
    /// Where the field is written.
    pub pos: usize,
    pub op: Op,
    pub values: Vec<Value>,
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expr {
    Bool(bool),
    Test(Test),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// The words for priority levels.
pub(crate) const LEVELS: [(&str, Priority); 4] = [
    ("critical", Priority::Critical),
    ("high", Priority::High),
    ("normal", Priority::Normal),
    ("low", Priority::Low),
];

/// How urgent a level is, for `<`/`>`: `low` < `normal` < `high` < `critical`.
pub(crate) fn urgency(p: Priority) -> u64 {
    (Priority::COUNT - 1 - p.index()) as u64
}

fn level_name(p: Priority) -> &'static str {
    LEVELS[p.index()].0
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Name(s, _) => write!(f, "\"{s}\""),
            Value::Level(p, _) => f.write_str(level_name(*p)),
            Value::Int(n, _) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Field::Type => f.write_str("type")?,
            Field::Source => f.write_str("source")?,
            Field::Destination => f.write_str("destination")?,
            Field::Priority => f.write_str("priority")?,
            Field::Meta(key) => write!(f, "meta.{key}")?,
        }
        match self.op {
            Op::Cmp(c) => write!(f, " {} ", c.symbol())?,
            Op::In => f.write_str(" in [")?,
        }
        for (i, v) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        if self.op == Op::In {
            f.write_str("]")?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Test(t) => write!(f, "{t}"),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::And(a, b) => write!(f, "({a} && {b})"),
            Expr::Or(a, b) => write!(f, "({a} || {b})"),
        }
    }
}

/// What the reference evaluator needs from the bus: names for ids.
pub(crate) trait ModelNames {
    fn type_name(&self, ty: EventType) -> Option<String>;
    fn agent_name(&self, agent: AgentId) -> Option<String>;
    fn meta_key(&self, name: &str) -> Option<MetaKey>;
}

impl Expr {
    /// The reference meaning: a recursive walk that compares names as strings.
    pub(crate) fn eval_model(&self, names: &dyn ModelNames, h: &Header) -> bool {
        match self {
            Expr::Bool(b) => *b,
            Expr::Not(e) => !e.eval_model(names, h),
            Expr::And(a, b) => a.eval_model(names, h) && b.eval_model(names, h),
            Expr::Or(a, b) => a.eval_model(names, h) || b.eval_model(names, h),
            Expr::Test(t) => t.eval_model(names, h),
        }
    }
}

impl Test {
    fn eval_model(&self, names: &dyn ModelNames, h: &Header) -> bool {
        // `!=` is the negation of `==` for names and levels; a missing metadata entry
        // fails every comparison (below).
        let any = |f: &dyn Fn(&Value) -> bool| self.values.iter().any(f);
        let named = |actual: Option<String>| {
            let hit = any(&|v| match (v, &actual) {
                (Value::Name(n, _), Some(a)) => Pattern::parse(n, 0).is_ok_and(|p| p.matches(a)),
                _ => false,
            });
            if self.op == Op::Cmp(Cmp::Ne) {
                !hit
            } else {
                hit
            }
        };
        match &self.field {
            Field::Type => named(names.type_name(h.event_type())),
            Field::Source => named(names.agent_name(h.source())),
            Field::Destination => named(h.destination().and_then(|d| names.agent_name(d))),
            Field::Priority => any(&|v| match (v, self.op) {
                (Value::Level(l, _), Op::In) => *l == h.priority(),
                (Value::Level(l, _), Op::Cmp(c)) => c.holds(urgency(h.priority()), urgency(*l)),
                _ => false,
            }),
            Field::Meta(key) => {
                let Some(actual) = names.meta_key(key).and_then(|k| h.metadata(k)) else {
                    return false;
                };
                any(&|v| match (v, self.op) {
                    (Value::Int(n, _), Op::In) => actual == *n,
                    (Value::Int(n, _), Op::Cmp(c)) => c.holds(actual, *n),
                    _ => false,
                })
            }
        }
    }
}
