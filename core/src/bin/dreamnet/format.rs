//! How one record is printed: a text line or a JSON object. Types are shown by their
//! built-in name (`agent.task`) or `#id` for custom types: a journal holds ids, not the
//! bus's name table.

use dreamnet_bus::journal::Record;
use dreamnet_bus::EventType;

use crate::json::Obj;

/// The built-in name of a type id, if it has one.
pub fn type_name(raw: u16) -> Option<&'static str> {
    EventType::BUILT_IN
        .iter()
        .find(|(t, _)| t.raw() == raw)
        .map(|(_, n)| *n)
}

/// `agent.task` or `#42`.
pub fn type_label(raw: u16) -> String {
    type_name(raw).map_or_else(|| format!("#{raw}"), str::to_owned)
}

/// Parses `--type`: a built-in name or a numeric id.
pub fn parse_type(s: &str) -> Option<u16> {
    if let Some((t, _)) = EventType::BUILT_IN.iter().find(|(_, n)| *n == s) {
        return Some(t.raw());
    }
    s.strip_prefix('#').unwrap_or(s).parse().ok()
}

/// One record as a text line.
pub fn text(r: &Record<'_>) -> String {
    let h = r.event().header();
    let dst = h
        .destination()
        .map_or_else(|| "*".to_owned(), |d| d.raw().to_string());
    format!(
        "{} ts={} type={} src={} dst={} id={} corr={} cause={} prio={:?} len={}",
        r.seq(),
        h.timestamp_ns(),
        type_label(h.event_type().raw()),
        h.source().raw(),
        dst,
        h.id(),
        h.correlation_id(),
        h.causation_id(),
        h.priority(),
        h.payload_len()
    )
}

/// One record as a JSON object.
pub fn json(r: &Record<'_>) -> Obj {
    let h = r.event().header();
    Obj::new()
        .num("seq", r.seq())
        .num("ts", h.timestamp_ns())
        .str("type", &type_label(h.event_type().raw()))
        .num("type_id", h.event_type().raw())
        .num("source", h.source().raw())
        .opt_num("destination", h.destination().map(|d| u64::from(d.raw())))
        .num("id", h.id())
        .num("correlation", h.correlation_id())
        .num("causation", h.causation_id())
        .str("priority", &format!("{:?}", h.priority()))
        .num("payload_len", h.payload_len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_name_or_id() {
        assert_eq!(parse_type("agent.response"), Some(1));
        assert_eq!(parse_type("42"), Some(42));
        assert_eq!(parse_type("#42"), Some(42));
        assert_eq!(parse_type("no.such"), None);
        assert_eq!(type_label(5), "system.health");
        assert_eq!(type_label(300), "#300");
    }
}
