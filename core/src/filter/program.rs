//! The compiled form of a filter's criteria: a flat program over one boolean register.
//!
//! Every combination (`and`, `or`, `not`, a parsed expression) compiles to the same
//! representation, built once when the filter is made: a `Vec` of instructions where each
//! test overwrites the register, `Not` flips it, and `&&` / `||` are jumps that skip the
//! right operand when the left one decides (short-circuit). Evaluation is a loop over a
//! slice with a program counter and a `bool`: no stack, no allocation, no recursion, and no
//! string (types are bitsets, names are ids).

use std::sync::Arc;

use crate::event::Header;
use crate::filter::wildcard::TypeSet;
use crate::names::{AgentId, MetaKey};
use crate::subscription::Predicate;

/// A comparison between an event's value and a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    /// Whether `a <op> b` holds.
    #[inline]
    pub fn holds(self, a: u64, b: u64) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }

    /// The operator as the expression language writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// A test on the payload: the header (for its flags) and the payload bytes.
pub(crate) type PayloadTest = Box<dyn Fn(&Header, &[u8]) -> bool + Send + Sync>;

/// One instruction. Tests set the register; jumps are absolute program offsets.
#[derive(Debug)]
pub(crate) enum Insn {
    /// The register becomes this constant.
    Const(bool),
    /// The event's type is in the set.
    Type(Arc<TypeSet>),
    /// The source is one of these agents.
    Source(Box<[AgentId]>),
    /// The event is direct, to one of these agents.
    Destination(Box<[AgentId]>),
    /// Bit `p` set: priority index `p` passes.
    Priority(u8),
    /// Metadata entry `key` is present and compares so with `value`.
    Meta { key: MetaKey, cmp: Cmp, value: u64 },
    /// Metadata entry `key` is present and one of `values`.
    MetaIn { key: MetaKey, values: Box<[u64]> },
    /// A header closure (`Filter::matching`), by index into the side table.
    Predicate(u32),
    /// A payload closure (`Filter::payload`), by index into the side table.
    Payload(u32),
    /// The register flips.
    Not,
    /// If the register is false, go to the offset (it stays false: `&&` decided).
    JumpIfFalse(u32),
    /// If the register is true, go to the offset (it stays true: `||` decided).
    JumpIfTrue(u32),
}

impl PartialEq for Insn {
    fn eq(&self, other: &Insn) -> bool {
        use Insn::*;
        match (self, other) {
            (Const(a), Const(b)) => a == b,
            (Type(a), Type(b)) => a.same_as(b),
            (Source(a), Source(b)) | (Destination(a), Destination(b)) => a == b,
            (Priority(a), Priority(b)) => a == b,
            (
                Meta { key, cmp, value },
                Meta {
                    key: k,
                    cmp: c,
                    value: v,
                },
            ) => key == k && cmp == c && value == v,
            (MetaIn { key, values }, MetaIn { key: k, values: v }) => key == k && values == v,
            (Predicate(a), Predicate(b)) | (Payload(a), Payload(b)) => a == b,
            (Not, Not) => true,
            (JumpIfFalse(a), JumpIfFalse(b)) | (JumpIfTrue(a), JumpIfTrue(b)) => a == b,
            _ => false,
        }
    }
}

/// A compiled condition: the program and the closures it calls.
#[derive(Default)]
pub(crate) struct Cond {
    program: Vec<Insn>,
    predicates: Vec<Predicate>,
    payloads: Vec<PayloadTest>,
}

impl core::fmt::Debug for Cond {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cond")
            .field("program", &self.program)
            .field("predicates", &self.predicates.len())
            .field("payloads", &self.payloads.len())
            .finish()
    }
}

impl PartialEq for Cond {
    /// Same instructions (closures compare by position only).
    fn eq(&self, other: &Cond) -> bool {
        self.program == other.program
            && self.predicates.len() == other.predicates.len()
            && self.payloads.len() == other.payloads.len()
    }
}

impl Cond {
    /// A condition of one test.
    pub(crate) fn test(insn: Insn) -> Cond {
        Cond {
            program: vec![insn],
            ..Cond::default()
        }
    }

    /// A condition calling a header closure.
    pub(crate) fn predicate(p: Predicate) -> Cond {
        Cond {
            program: vec![Insn::Predicate(0)],
            predicates: vec![p],
            payloads: Vec::new(),
        }
    }

    /// A condition calling a payload closure.
    pub(crate) fn payload(p: PayloadTest) -> Cond {
        Cond {
            program: vec![Insn::Payload(0)],
            predicates: Vec::new(),
            payloads: vec![p],
        }
    }

    /// `self && other`.
    pub(crate) fn and(self, other: Cond) -> Cond {
        self.join(other, Insn::JumpIfFalse)
    }

    /// `self || other`.
    pub(crate) fn or(self, other: Cond) -> Cond {
        self.join(other, Insn::JumpIfTrue)
    }

    /// `!self`.
    pub(crate) fn not(mut self) -> Cond {
        if self.program.is_empty() {
            // The empty program passes everything.
            self.program.push(Insn::Const(true));
        }
        self.program.push(Insn::Not);
        self
    }

    /// `left; jump(end); right` with `right`'s jumps and closure indices moved past
    /// `left`'s.
    fn join(mut self, other: Cond, jump: fn(u32) -> Insn) -> Cond {
        if self.program.is_empty() {
            self.program.push(Insn::Const(true));
        }
        let jump_at = self.program.len();
        self.program.push(Insn::Const(false)); // placeholder, patched below
        let base = self.program.len() as u32;
        let (preds, pays) = (self.predicates.len() as u32, self.payloads.len() as u32);
        let mut right = other.program;
        if right.is_empty() {
            right.push(Insn::Const(true));
        }
        for insn in right {
            self.program.push(match insn {
                Insn::JumpIfFalse(t) => Insn::JumpIfFalse(t + base),
                Insn::JumpIfTrue(t) => Insn::JumpIfTrue(t + base),
                Insn::Predicate(i) => Insn::Predicate(i + preds),
                Insn::Payload(i) => Insn::Payload(i + pays),
                other => other,
            });
        }
        self.program[jump_at] = jump(self.program.len() as u32);
        self.predicates.extend(other.predicates);
        self.payloads.extend(other.payloads);
        self
    }

    /// How many instructions.
    pub(crate) fn len(&self) -> usize {
        self.program.len()
    }

    /// Runs the program on an event's header and payload bytes.
    #[inline]
    pub(crate) fn eval(&self, h: &Header, payload: &[u8]) -> bool {
        let program = self.program.as_slice();
        let mut acc = true;
        let mut pc = 0;
        while let Some(insn) = program.get(pc) {
            pc += 1;
            acc = match insn {
                Insn::Const(b) => *b,
                Insn::Type(set) => set.contains(h.event_type()),
                Insn::Source(agents) => agents.contains(&h.source()),
                Insn::Destination(agents) => h.destination().is_some_and(|d| agents.contains(&d)),
                Insn::Priority(mask) => mask & (1 << h.priority().index()) != 0,
                Insn::Meta { key, cmp, value } => {
                    h.metadata(*key).is_some_and(|v| cmp.holds(v, *value))
                }
                Insn::MetaIn { key, values } => {
                    h.metadata(*key).is_some_and(|v| values.contains(&v))
                }
                Insn::Predicate(i) => self.predicates.get(*i as usize).is_some_and(|p| p(h)),
                Insn::Payload(i) => self
                    .payloads
                    .get(*i as usize)
                    .is_some_and(|p| p(h, payload)),
                Insn::Not => !acc,
                Insn::JumpIfFalse(t) => {
                    if !acc {
                        pc = *t as usize;
                    }
                    acc
                }
                Insn::JumpIfTrue(t) => {
                    if acc {
                        pc = *t as usize;
                    }
                    acc
                }
            };
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::names::EventType;
    use crate::priority::Priority;
    use proptest::prelude::*;

    /// A tiny boolean tree over the event's priority bits, and its recursive meaning.
    #[derive(Clone, Debug)]
    enum Tree {
        Level(u8),
        Not(Box<Tree>),
        And(Box<Tree>, Box<Tree>),
        Or(Box<Tree>, Box<Tree>),
    }

    fn tree() -> impl Strategy<Value = Tree> {
        (0u8..16)
            .prop_map(Tree::Level)
            .prop_recursive(5, 32, 2, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|t| Tree::Not(Box::new(t))),
                    (inner.clone(), inner.clone())
                        .prop_map(|(a, b)| Tree::And(Box::new(a), Box::new(b))),
                    (inner.clone(), inner).prop_map(|(a, b)| Tree::Or(Box::new(a), Box::new(b))),
                ]
            })
    }

    fn model(t: &Tree, p: usize) -> bool {
        match t {
            Tree::Level(m) => m & (1 << p) != 0,
            Tree::Not(a) => !model(a, p),
            Tree::And(a, b) => model(a, p) && model(b, p),
            Tree::Or(a, b) => model(a, p) || model(b, p),
        }
    }

    fn compile(t: &Tree) -> Cond {
        match t {
            Tree::Level(m) => Cond::test(Insn::Priority(*m)),
            Tree::Not(a) => compile(a).not(),
            Tree::And(a, b) => compile(a).and(compile(b)),
            Tree::Or(a, b) => compile(a).or(compile(b)),
        }
    }

    proptest! {
        /// Jumps and relocation: the flat program means what the tree means.
        #[test]
        fn program_equals_the_recursive_meaning(t in tree(), p in 0u8..4) {
            let e: Event = Event::new(EventType(0)).with_priority(Priority::from_u8(p).unwrap());
            prop_assert_eq!(compile(&t).eval(e.header(), &[]), model(&t, p as usize));
        }
    }

    #[test]
    fn closures_are_renumbered_when_joined() {
        let e: Event = Event::new(EventType(3));
        let yes = Cond::predicate(Box::new(|h: &Header| h.event_type() == EventType(3)));
        let no = Cond::predicate(Box::new(|_: &Header| false));
        assert!(!yes.and(no).eval(e.header(), &[]));
        let no = Cond::predicate(Box::new(|_: &Header| false));
        let yes = Cond::predicate(Box::new(|h: &Header| h.event_type() == EventType(3)));
        assert!(no.or(yes).eval(e.header(), &[]));
        assert!(Cond::default().eval(e.header(), &[]));
        assert!(!Cond::default().not().eval(e.header(), &[]));
    }
}
