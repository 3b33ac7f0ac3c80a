//! Tokens of the filter-expression language, each with its byte position.

use crate::filter::error::FilterError;
use crate::filter::program::Cmp;

/// One token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Cmp(Cmp),
    AndAnd,
    OrOr,
    Bang,
    /// `[A-Za-z_][A-Za-z0-9_.:/-]*`: keywords, fields, `meta.KEY`, priority levels.
    Ident(&'a str),
    /// A decimal integer below 2^64.
    Int(u64),
    /// `"..."` (no escapes; the text between the quotes).
    Str(&'a str),
    End,
}

impl Tok<'_> {
    /// How an error message shows the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Cmp(c) => format!("`{}`", c.symbol()),
            Tok::AndAnd => "`&&`".into(),
            Tok::OrOr => "`||`".into(),
            Tok::Bang => "`!`".into(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(n) => format!("`{n}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::End => "end of input".into(),
        }
    }
}

/// A token and where it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub pos: usize,
}

/// Splits `text` into tokens, ending with `End`.
pub(crate) fn tokens(text: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let syntax = |pos: usize, expected: &'static str| {
        let found = text[pos..]
            .chars()
            .next()
            .map_or_else(|| "end of input".to_owned(), |c| format!("{c:?}"));
        FilterError::Syntax {
            position: pos,
            expected,
            found,
        }
    };
    while i < bytes.len() {
        let pos = i;
        let b = bytes[i];
        let two = |second: u8| bytes.get(i + 1) == Some(&second);
        let (tok, len) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'=' if two(b'=') => (Tok::Cmp(Cmp::Eq), 2),
            b'!' if two(b'=') => (Tok::Cmp(Cmp::Ne), 2),
            b'!' => (Tok::Bang, 1),
            b'<' if two(b'=') => (Tok::Cmp(Cmp::Le), 2),
            b'<' => (Tok::Cmp(Cmp::Lt), 1),
            b'>' if two(b'=') => (Tok::Cmp(Cmp::Ge), 2),
            b'>' => (Tok::Cmp(Cmp::Gt), 1),
            b'&' if two(b'&') => (Tok::AndAnd, 2),
            b'|' if two(b'|') => (Tok::OrOr, 2),
            b'=' => return Err(syntax(pos + 1, "`==`")),
            b'&' => return Err(syntax(pos + 1, "`&&`")),
            b'|' => return Err(syntax(pos + 1, "`||`")),
            b'"' => {
                let Some(end) = bytes[i + 1..].iter().position(|&c| c == b'"') else {
                    return Err(FilterError::Syntax {
                        position: bytes.len(),
                        expected: "a closing `\"`",
                        found: "end of input".into(),
                    });
                };
                (Tok::Str(&text[i + 1..i + 1 + end]), end + 2)
            }
            b'0'..=b'9' => {
                let len = bytes[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                let Ok(n) = text[i..i + len].parse::<u64>() else {
                    return Err(FilterError::Syntax {
                        position: pos,
                        expected: "an integer below 2^64",
                        found: text[i..i + len].to_owned(),
                    });
                };
                (Tok::Int(n), len)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = bytes[i..]
                    .iter()
                    .take_while(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'/' | b'-')
                    })
                    .count();
                (Tok::Ident(&text[i..i + len]), len)
            }
            _ => {
                return Err(syntax(
                    pos,
                    "a token: ( ) [ ] , == != < <= > >= && || ! a name, a number or a \"string\"",
                ))
            }
        };
        out.push(Token { tok, pos });
        i += len;
    }
    out.push(Token {
        tok: Tok::End,
        pos: bytes.len(),
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_lexes() {
        let toks: Vec<Tok<'_>> =
            tokens(r#"type == "agent.task" && priority >= high && meta.tenant == 7"#)
                .unwrap()
                .into_iter()
                .map(|t| t.tok)
                .collect();
        assert_eq!(
            toks,
            [
                Tok::Ident("type"),
                Tok::Cmp(Cmp::Eq),
                Tok::Str("agent.task"),
                Tok::AndAnd,
                Tok::Ident("priority"),
                Tok::Cmp(Cmp::Ge),
                Tok::Ident("high"),
                Tok::AndAnd,
                Tok::Ident("meta.tenant"),
                Tok::Cmp(Cmp::Eq),
                Tok::Int(7),
                Tok::End
            ]
        );
    }

    #[test]
    fn lexical_errors_have_positions() {
        let pos = |s: &str| tokens(s).unwrap_err().position();
        assert_eq!(pos("type = 1"), 6);
        assert_eq!(pos("a & b"), 3);
        assert_eq!(pos("a | b"), 3);
        assert_eq!(pos("type == \"abc"), 12);
        assert_eq!(pos("x == 99999999999999999999"), 5);
        assert_eq!(pos("x == é"), 5);
        assert_eq!(pos("x $"), 2);
    }
}
