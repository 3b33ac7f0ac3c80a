//! Subject naming: which NATS subject an event travels on, and what an import listens to.
//!
//! ```text
//!  core NATS   <namespace>.<type>.<destination or all>       (3 tokens)
//!  JetStream   <namespace>.js.<type>.<destination or all>    (4 tokens; the stream's subjects)
//! ```
//!
//! The two shapes never overlap (a core subject has three tokens, a JetStream one four),
//! so the namespace's stream (`<namespace>.js.*.*`) never captures core traffic.
//!
//! Names become tokens injectively: bus names are ASCII letters, digits and `. - _ : /`,
//! and NATS tokens may not hold `.`, so `.` is written `~d`; an agent called exactly
//! `all` is written `~a` so it cannot be mistaken for a broadcast. `~` never occurs in a
//! name, so no two names share a token. Tokens only route: the names themselves travel
//! in headers (see `wire`).

/// The token for broadcasts (no destination).
pub const ALL: &str = "all";

/// The subject token for a name (see the module documentation).
pub fn token(name: &str) -> String {
    if name == ALL {
        return "~a".to_owned();
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c == '.' {
            out.push_str("~d");
        } else {
            out.push(c);
        }
    }
    out
}

/// The destination token: the agent's token, or `all` for a broadcast.
pub fn destination_token(destination: Option<&str>) -> String {
    destination.map_or_else(|| ALL.to_owned(), token)
}

/// The subject an event goes out on.
pub fn subject(
    namespace: &str,
    jetstream: bool,
    type_name: &str,
    destination: Option<&str>,
) -> String {
    let js = if jetstream { ".js" } else { "" };
    format!(
        "{namespace}{js}.{}.{}",
        token(type_name),
        destination_token(destination)
    )
}

/// What an import listens to: every type, addressed to `destination` (or broadcasts).
pub fn listen(namespace: &str, jetstream: bool, destination: Option<&str>) -> String {
    let js = if jetstream { ".js" } else { "" };
    format!("{namespace}{js}.*.{}", destination_token(destination))
}

/// The subjects of the namespace's stream: JetStream subjects only.
pub fn stream_subjects(namespace: &str) -> String {
    format!("{namespace}.js.*.*")
}

/// The namespace's stream name.
pub fn stream_name(namespace: &str) -> String {
    format!("DREAMNET_{namespace}")
}

/// Whether `namespace` is usable as a subject prefix and in a stream name: 1 to 32 ASCII
/// letters, digits, `-` or `_`.
pub fn valid_namespace(namespace: &str) -> bool {
    (1..=32).contains(&namespace.len())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subjects_have_the_documented_shapes() {
        assert_eq!(
            subject("dreamnet", false, "agent.task", Some("beta")),
            "dreamnet.agent~dtask.beta"
        );
        assert_eq!(
            subject("dreamnet", false, "news", None),
            "dreamnet.news.all"
        );
        assert_eq!(subject("ns", true, "news", Some("all")), "ns.js.news.~a");
        assert_eq!(listen("ns", false, Some("a.b")), "ns.*.a~db");
        assert_eq!(listen("ns", true, None), "ns.js.*.all");
        assert_eq!(stream_subjects("ns"), "ns.js.*.*");
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(valid_namespace("dreamnet"));
        assert!(valid_namespace("a-b_C9"));
        for bad in ["", "a.b", "a*", "a>", "a b", &"x".repeat(33)] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:/-]{1,12}"
    }

    proptest! {
        /// Tokens are valid NATS tokens, and two names share a token only if they are the
        /// same name (the model: string equality).
        #[test]
        fn tokens_are_injective_and_valid(a in name(), b in name()) {
            let (ta, tb) = (token(&a), token(&b));
            prop_assert_eq!(ta == tb, a == b);
            prop_assert!(!ta.is_empty());
            prop_assert!(!ta.contains(['.', '*', '>', ' ']));
            prop_assert_ne!(ta.as_str(), ALL);
        }
    }
}
