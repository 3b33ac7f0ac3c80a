//! The filter-expression language: text -> tokens -> syntax tree -> names resolved through
//! the bus's registries -> a compiled [`Cond`](crate::filter::program::Cond). All of it
//! happens once, when the filter is made; a routed event only runs the program.
//!
//! ```text
//! type == "agent.task" && priority >= high && meta.tenant == 7
//! type in ["agent.*", "system.>"] || !(source == "dreamnet-lucid")
//! ```
//!
//! Semantics: `type`, `source`, `destination` compare names (`==`, `!=`, `in`); a type name
//! with a `*` or `>` token is a subject pattern. `destination` is absent on a broadcast:
//! `==`/`in` fail, `!=` passes. `priority` compares urgency: `low < normal < high <
//! critical`. `meta.KEY` compares the entry's integer; a missing entry fails every
//! comparison, `!=` included. `!` is plain negation.
//!
//! Routing: a top-level `type == "x"` / `type in [..]` conjunct without wildcards indexes
//! the route under those types, and a top-level `destination == "x"` conjunct makes the
//! filter a tap on x's direct traffic (as `Filter::to_destination`). Elsewhere, a
//! `destination` test sees what the subscription receives anyway: broadcasts, and direct
//! traffic to the agent it subscribed for. Names resolve to ids of the bus given to
//! `parse`: a filter is valid on that bus only.

mod ast;
mod compile;
mod lexer;
mod parser;

use core::fmt;

use crate::bus::Bus;
use crate::event::Event;
use crate::filter::error::FilterError;
use crate::filter::program::Cond;
use crate::names::{AgentId, EventType, MetaKey};
use crate::subscription::Filter;

pub(crate) use compile::{Hints, Registry};

/// A parsed, resolved and compiled filter expression. Public for the `filter_expr` fuzz
/// target and the tests only (no semver promise): use [`Filter::parse`].
pub struct Expression {
    ast: ast::Expr,
    cond: Cond,
    hints: Hints,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expression")
            .field("text", &self.ast.to_string())
            .field("program", &self.cond)
            .finish()
    }
}

impl fmt::Display for Expression {
    /// The canonical text (every binary operation in parentheses); it parses back to an
    /// equal program.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ast.fmt(f)
    }
}

impl PartialEq for Expression {
    /// The same compiled program.
    fn eq(&self, other: &Expression) -> bool {
        self.cond == other.cond
    }
}

impl Expression {
    /// Parses `text` and resolves its names on `bus`.
    pub fn parse<const SLOT: usize>(
        bus: &Bus<SLOT>,
        text: &str,
    ) -> Result<Expression, FilterError> {
        let ast = parser::parse(text)?;
        let (cond, hints) = bus.with_filter_registry(|reg| compile::compile(&ast, reg))?;
        Ok(Expression { ast, cond, hints })
    }

    /// Whether the compiled program passes `event`.
    pub fn matches<const SLOT: usize>(&self, event: &Event<SLOT>) -> bool {
        self.cond.eval(event.header(), event.payload_bytes())
    }

    /// Whether the reference evaluator (a walk of the syntax tree comparing names as
    /// strings, through `bus`) passes `event`. For tests: it locks and allocates.
    pub fn matches_model<const SLOT: usize>(&self, bus: &Bus<SLOT>, event: &Event<SLOT>) -> bool {
        self.ast.eval_model(&BusNames(bus), event.header())
    }

    /// How many instructions the compiled program has.
    pub fn program_len(&self) -> usize {
        self.cond.len()
    }
}

struct BusNames<'a, const SLOT: usize>(&'a Bus<SLOT>);

impl<const SLOT: usize> ast::ModelNames for BusNames<'_, SLOT> {
    fn type_name(&self, ty: EventType) -> Option<String> {
        self.0.event_type_name(ty)
    }
    fn agent_name(&self, agent: AgentId) -> Option<String> {
        self.0.agent_name(agent)
    }
    fn meta_key(&self, name: &str) -> Option<MetaKey> {
        self.0.with_filter_registry(|reg| reg.names.meta_key(name))
    }
}

impl From<Expression> for Filter {
    /// A filter that passes what the expression passes. A top-level `type == / in`
    /// conjunct without wildcards becomes the route's type index, a top-level
    /// `destination == "x"` conjunct its tap; the program still checks everything.
    fn from(e: Expression) -> Filter {
        let mut f = Filter::with_cond(e.cond);
        if let Some(types) = e.hints.types {
            f.types = types;
        }
        f.destination = e.hints.tap;
        f
    }
}

#[cfg(test)]
mod tests;
