//! Recursive descent over the tokens, into the syntax tree.
//!
//! ```text
//! expr    := and ("||" and)*
//! and     := unary ("&&" unary)*
//! unary   := "!" unary | "(" expr ")" | "true" | "false" | test
//! test    := field cmp value | field "in" "[" (value ("," value)*)? "]"
//! field   := "type" | "source" | "destination" | "priority" | "meta." KEY
//! value   := "\"name\"" (type, source, destination) | critical | high | normal | low
//!            (priority) | integer (meta)
//! ```
//! `&&` binds tighter than `||`; both associate to the left. `type`, `source` and
//! `destination` take `==`, `!=` and `in`; `priority` and `meta.KEY` every comparison.

use crate::filter::error::FilterError;
use crate::filter::expr::ast::{Expr, Field, Op, Test, Value, LEVELS};
use crate::filter::expr::lexer::{tokens, Tok, Token};
use crate::filter::program::Cmp;

/// The longest expression accepted, in bytes.
pub(crate) const MAX_LEN: usize = 1024;
/// The deepest nesting of `(` and `!` accepted (the parser recurses on them).
pub(crate) const MAX_DEPTH: usize = 32;

/// Parses `text` into a syntax tree (names not yet resolved).
pub(crate) fn parse(text: &str) -> Result<Expr, FilterError> {
    if text.len() > MAX_LEN {
        return Err(FilterError::TooLarge {
            position: MAX_LEN,
            limit: "1024 bytes",
        });
    }
    let tokens = tokens(text)?;
    let mut p = Parser {
        tokens: &tokens,
        at: 0,
        depth: 0,
    };
    let e = p.or()?;
    p.expect_end()?;
    Ok(e)
}

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    at: usize,
    depth: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Token<'a> {
        // `tokens` ends with `End`, and `at` never moves past it.
        self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.peek();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn error(&self, t: Token<'_>, expected: &'static str) -> FilterError {
        FilterError::Syntax {
            position: t.pos,
            expected,
            found: t.tok.describe(),
        }
    }

    fn expect_end(&mut self) -> Result<(), FilterError> {
        let t = self.peek();
        match t.tok {
            Tok::End => Ok(()),
            _ => Err(self.error(t, "`&&`, `||` or the end")),
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and()?;
        while self.peek().tok == Tok::OrOr {
            self.bump();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.peek().tok == Tok::AndAnd {
            self.bump();
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn deeper(&mut self, t: Token<'_>) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::TooLarge {
                position: t.pos,
                limit: "32 levels of nesting",
            });
        }
        Ok(())
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let t = self.bump();
        match t.tok {
            Tok::Bang => {
                self.deeper(t)?;
                let e = self.unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(e)))
            }
            Tok::LParen => {
                self.deeper(t)?;
                let e = self.or()?;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(self.error(close, "`)`, `&&` or `||`"));
                }
                self.depth -= 1;
                Ok(e)
            }
            Tok::Ident("true") => Ok(Expr::Bool(true)),
            Tok::Ident("false") => Ok(Expr::Bool(false)),
            Tok::Ident(word) => {
                let field = match word {
                    "type" => Field::Type,
                    "source" => Field::Source,
                    "destination" => Field::Destination,
                    "priority" => Field::Priority,
                    _ => match word.strip_prefix("meta.") {
                        Some(key) if !key.is_empty() => Field::Meta(key.to_owned()),
                        _ => return Err(self.error(t, FIELDS)),
                    },
                };
                self.test(field, t.pos).map(Expr::Test)
            }
            _ => Err(self.error(t, FIELDS)),
        }
    }

    fn test(&mut self, field: Field, pos: usize) -> Result<Test, FilterError> {
        let ordered = matches!(field, Field::Priority | Field::Meta(_));
        let t = self.bump();
        let op = match t.tok {
            Tok::Ident("in") => Op::In,
            Tok::Cmp(c @ (Cmp::Eq | Cmp::Ne)) => Op::Cmp(c),
            Tok::Cmp(c) if ordered => Op::Cmp(c),
            _ if ordered => return Err(self.error(t, "== != < <= > >= or in")),
            _ => return Err(self.error(t, "== != or in (names are not ordered)")),
        };
        let mut values = Vec::new();
        if op == Op::In {
            let open = self.bump();
            if open.tok != Tok::LBracket {
                return Err(self.error(open, "`[`"));
            }
            if self.peek().tok == Tok::RBracket {
                self.bump();
            } else {
                loop {
                    values.push(self.value(&field)?);
                    let t = self.bump();
                    match t.tok {
                        Tok::Comma => {}
                        Tok::RBracket => break,
                        _ => return Err(self.error(t, "`,` or `]`")),
                    }
                }
            }
        } else {
            values.push(self.value(&field)?);
        }
        Ok(Test {
            field,
            pos,
            op,
            values,
        })
    }

    fn value(&mut self, field: &Field) -> Result<Value, FilterError> {
        let t = self.bump();
        match (field, t.tok) {
            (Field::Type | Field::Source | Field::Destination, Tok::Str(s)) => {
                Ok(Value::Name(s.to_owned(), t.pos))
            }
            (Field::Type, _) => Err(self.error(t, "a quoted type name or pattern")),
            (Field::Source | Field::Destination, _) => Err(self.error(t, "a quoted agent name")),
            (Field::Priority, Tok::Ident(w)) => match LEVELS.iter().find(|(n, _)| *n == w) {
                Some((_, level)) => Ok(Value::Level(*level, t.pos)),
                None => Err(self.error(t, "critical, high, normal or low")),
            },
            (Field::Priority, _) => Err(self.error(t, "critical, high, normal or low")),
            (Field::Meta(_), Tok::Int(n)) => Ok(Value::Int(n, t.pos)),
            (Field::Meta(_), _) => Err(self.error(t, "an integer")),
        }
    }
}

const FIELDS: &str =
    "a test (type, source, destination, priority, meta.KEY), true, false, `!` or `(`";

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (usize, &'static str) {
        match parse(text) {
            Err(FilterError::Syntax {
                position, expected, ..
            }) => (position, expected),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn precedence_and_canonical_print() {
        let e = parse(r#"type == "a" || !priority >= high && meta.k in [1, 2]"#).unwrap();
        assert_eq!(
            e.to_string(),
            r#"(type == "a" || (!priority >= high && meta.k in [1, 2]))"#
        );
        assert_eq!(parse(&e.to_string()).unwrap().to_string(), e.to_string());
        assert_eq!(parse("(((true)))").unwrap(), Expr::Bool(true));
        assert_eq!(parse("type in []").unwrap().to_string(), "type in []");
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        assert_eq!(err(""), (0, FIELDS));
        assert_eq!(err("type"), (4, "== != or in (names are not ordered)"));
        assert_eq!(
            err("type < \"a\""),
            (5, "== != or in (names are not ordered)")
        );
        assert_eq!(err("type == agent"), (8, "a quoted type name or pattern"));
        assert_eq!(
            err("priority == urgent"),
            (12, "critical, high, normal or low")
        );
        assert_eq!(err("meta.k == \"7\""), (10, "an integer"));
        assert_eq!(err("(true"), (5, "`)`, `&&` or `||`"));
        assert_eq!(err("true false"), (5, "`&&`, `||` or the end"));
        assert_eq!(err("meta. == 1"), (0, FIELDS));
        assert_eq!(err("source in [\"a\" \"b\"]"), (15, "`,` or `]`"));
        assert_eq!(err("source in \"a\""), (10, "`[`"));
        assert_eq!(err("true && "), (8, FIELDS));
    }

    #[test]
    fn size_limits_are_typed_errors() {
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        assert!(matches!(
            parse(&deep),
            Err(FilterError::TooLarge { position: 32, .. })
        ));
        let nots = format!("{}true", "!".repeat(33));
        assert!(matches!(parse(&nots), Err(FilterError::TooLarge { .. })));
        let long = "true && ".repeat(200) + "true";
        assert!(matches!(
            parse(&long),
            Err(FilterError::TooLarge { position: 1024, .. })
        ));
        assert!(parse(&format!("{}true{}", "(".repeat(32), ")".repeat(32))).is_ok());
    }
}
