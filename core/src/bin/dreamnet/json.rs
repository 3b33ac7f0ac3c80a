//! A small hand-written JSON writer: the CLI prints flat objects and arrays of them, so a
//! serde dependency would buy nothing but build time.

use std::fmt::Write as _;

/// One JSON object being built, field by field, in insertion order.
#[derive(Default)]
pub struct Obj(String);

impl Obj {
    pub fn new() -> Self {
        Obj(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        push_str(&mut self.0, k);
        self.0.push(':');
    }
    pub fn num(mut self, k: &str, v: impl Into<u128>) -> Self {
        self.key(k);
        let _ = write!(self.0, "{}", v.into());
        self
    }
    pub fn float(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{v}");
        } else {
            self.0.push_str("null");
        }
        self
    }
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(&mut self.0, v);
        self
    }
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }
    pub fn opt_num(self, k: &str, v: Option<u64>) -> Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }
    /// A value that is already JSON (a nested object or array).
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.0.push_str(json);
        self
    }
    pub fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON array of already-encoded values.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    let mut s = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&item);
    }
    s.push(']');
    s
}

/// Appends `v` as a JSON string literal (quotes, backslashes and control characters escaped).
pub fn push_str(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_orders_fields() {
        let s = Obj::new()
            .num("a", 1u64)
            .str("b", "x\"y\\z\n\u{1}")
            .opt_num("c", None)
            .bool("d", true)
            .raw("e", &array(["1".into(), "2".into()]))
            .done();
        assert_eq!(
            s,
            r#"{"a":1,"b":"x\"y\\z\n\u0001","c":null,"d":true,"e":[1,2]}"#
        );
    }
}
