//! The wire format: the event's validated slot bytes as the message body, and NATS
//! headers for everything that is interned per process or matters to the mesh.
//!
//! **Why headers, not a registry in a NATS KV bucket.** Agent, type and metadata-key ids
//! are interned per bus, so names must cross the wire. In headers, every message is
//! self-describing: a receiver maps names to its own ids with no extra round trip, no
//! shared mutable registry (whose updates race with the first messages that use a new
//! name), and no dependency on a KV bucket being reachable while the server is down or
//! a cluster has lost its quorum. The price is a few dozen bytes per message, small next
//! to the slot itself.
//!
//! ```text
//!  Dreamnet-Path         bus ids crossed, origin first ("b-1a2b,b-3c4d"): loop check
//!  Dreamnet-Hops         bridges crossed (1 after the first): the hop limit
//!  Dreamnet-Id           the event id on its origin bus
//!  Dreamnet-Type         the event type's name
//!  Dreamnet-Source       the source agent's name
//!  Dreamnet-Destination  the destination agent's name (absent: a broadcast)
//!  Dreamnet-Priority     critical | high | normal | low
//!  Dreamnet-Correlation  the correlation id (absent: 0)
//!  Dreamnet-Causation    the causation id: the id of the event that caused this one (absent: 0)
//!  Dreamnet-Deadline-In  nanoseconds left before the deadline (clocks differ per bus)
//!  Dreamnet-Meta         one value per metadata entry: "<key name>=<value>" (every entry
//!                        but the bridge's own mark and keys kept local by the builder)
//!  Nats-Msg-Id           JetStream only: "<bus id>.<event id>", the dedupe key
//! ```
//!
//! The body's own header (ids, flags) is checked by [`Event::from_bytes`] on arrival; its
//! type, destination and metadata ids are then replaced with this bus's ids for the
//! names above, and the source is the local id of the source's name.

use async_nats::header::HeaderName;
use async_nats::HeaderMap;

use crate::error::NameError;
use crate::event::Event;
use crate::names::validate_name;
use crate::priority::Priority;

/// Header: bus ids crossed, origin first.
pub const PATH: &str = "Dreamnet-Path";
/// Header: bridges crossed.
pub const HOPS: &str = "Dreamnet-Hops";
/// Header: the event id on its origin bus.
pub const ID: &str = "Dreamnet-Id";
/// Header: the type name.
pub const TYPE: &str = "Dreamnet-Type";
/// Header: the source agent's name.
pub const SOURCE: &str = "Dreamnet-Source";
/// Header: the destination agent's name.
pub const DESTINATION: &str = "Dreamnet-Destination";
/// Header: the priority's name.
pub const PRIORITY: &str = "Dreamnet-Priority";
/// Header: the correlation id.
pub const CORRELATION: &str = "Dreamnet-Correlation";
/// Header: the causation id (the id, on its origin bus, of the event that caused this one).
pub const CAUSATION: &str = "Dreamnet-Causation";
/// Header: nanoseconds left before the deadline.
pub const DEADLINE_IN: &str = "Dreamnet-Deadline-In";
/// Header: one `name=value` per metadata entry.
pub const META: &str = "Dreamnet-Meta";
/// The JetStream dedupe header.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// What goes into the headers of one outgoing event, names resolved.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Bus ids crossed so far, this bus last.
    pub path: &'a str,
    /// Bridges crossed once this message arrives.
    pub hops: u8,
    /// The event id on this bus.
    pub id: u64,
    /// The type's name.
    pub type_name: &'a str,
    /// The source's name.
    pub source: &'a str,
    /// The destination's name, `None` for a broadcast.
    pub destination: Option<&'a str>,
    /// The priority.
    pub priority: Priority,
    /// The correlation id.
    pub correlation: u64,
    /// The causation id.
    pub causation: u64,
    /// Nanoseconds left before the deadline, if the event has one.
    pub deadline_in_ns: Option<u64>,
    /// Metadata entries by key name.
    pub meta: &'a [(&'a str, u64)],
    /// JetStream: the dedupe id (`<bus id>.<event id>`).
    pub msg_id: Option<&'a str>,
}

/// The header names, built once: a name made from a `&str` at each insert or lookup is
/// checked and allocated every time.
mod names {
    use async_nats::header::HeaderName;

    pub(super) const PATH: HeaderName = HeaderName::from_static(super::PATH);
    pub(super) const HOPS: HeaderName = HeaderName::from_static(super::HOPS);
    pub(super) const ID: HeaderName = HeaderName::from_static(super::ID);
    pub(super) const TYPE: HeaderName = HeaderName::from_static(super::TYPE);
    pub(super) const SOURCE: HeaderName = HeaderName::from_static(super::SOURCE);
    pub(super) const DESTINATION: HeaderName = HeaderName::from_static(super::DESTINATION);
    pub(super) const PRIORITY: HeaderName = HeaderName::from_static(super::PRIORITY);
    pub(super) const CORRELATION: HeaderName = HeaderName::from_static(super::CORRELATION);
    pub(super) const CAUSATION: HeaderName = HeaderName::from_static(super::CAUSATION);
    pub(super) const DEADLINE_IN: HeaderName = HeaderName::from_static(super::DEADLINE_IN);
    pub(super) const META: HeaderName = HeaderName::from_static(super::META);
    pub(super) const MSG_ID: HeaderName = HeaderName::from_static(super::MSG_ID);
}

/// Builds the headers of one outgoing event (one allocation per value; the names are
/// static).
pub fn encode(out: &Outgoing<'_>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(names::PATH, out.path);
    h.insert(names::HOPS, u64::from(out.hops).to_string());
    h.insert(names::ID, out.id.to_string());
    h.insert(names::TYPE, out.type_name);
    h.insert(names::SOURCE, out.source);
    if let Some(d) = out.destination {
        h.insert(names::DESTINATION, d);
    }
    h.insert(names::PRIORITY, out.priority.name());
    if out.correlation != 0 {
        h.insert(names::CORRELATION, out.correlation.to_string());
    }
    if out.causation != 0 {
        h.insert(names::CAUSATION, out.causation.to_string());
    }
    if let Some(ns) = out.deadline_in_ns {
        h.insert(names::DEADLINE_IN, ns.to_string());
    }
    for (key, value) in out.meta {
        h.append(names::META, format!("{key}={value}"));
    }
    if let Some(id) = out.msg_id {
        h.insert(names::MSG_ID, id);
    }
    h
}

/// Why a message's headers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The message has no headers at all (it was not sent by a bridge).
    #[error("no headers: not a bridged event")]
    Missing,
    /// A required header is absent.
    #[error("header {0} is missing")]
    Absent(&'static str),
    /// A header's value does not parse.
    #[error("header {name} has a bad value {value:?}")]
    BadValue {
        /// Which header.
        name: &'static str,
        /// The value, handed back.
        value: String,
    },
    /// A name in a header is not a valid bus name.
    #[error("header {header}: {error}")]
    BadName {
        /// Which header.
        header: &'static str,
        /// Why.
        error: NameError,
    },
}

/// The headers of one arriving event, checked; the names borrow from the message's
/// headers (nothing is copied until a name is new to this bus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// Bus ids crossed, origin first, comma-separated (each checked as a bus name).
    pub path: &'a str,
    /// Bridges crossed.
    pub hops: u8,
    /// The id on the origin bus.
    pub id: u64,
    /// The type's name.
    pub type_name: &'a str,
    /// The source's name.
    pub source: &'a str,
    /// The destination's name (`None`: broadcast).
    pub destination: Option<&'a str>,
    /// The priority.
    pub priority: Priority,
    /// The correlation id.
    pub correlation: u64,
    /// The causation id (0: none).
    pub causation: u64,
    /// Nanoseconds left before the deadline.
    pub deadline_in_ns: Option<u64>,
    /// Metadata by key name.
    pub meta: Vec<(&'a str, u64)>,
}

impl Incoming<'_> {
    /// The bus ids on the path, origin first.
    pub fn path_ids(&self) -> impl Iterator<Item = &str> {
        self.path.split(',')
    }

    /// Whether the message comes straight from its origin (one bus on the path).
    pub fn is_direct(&self) -> bool {
        !self.path.contains(',')
    }
}

fn text(h: &HeaderMap, name: HeaderName) -> Option<&str> {
    h.get(name).map(|v| v.as_str())
}

fn required<'h>(
    h: &'h HeaderMap,
    name: HeaderName,
    label: &'static str,
) -> Result<&'h str, HeaderError> {
    text(h, name).ok_or(HeaderError::Absent(label))
}

fn number<T: core::str::FromStr>(name: &'static str, value: &str) -> Result<T, HeaderError> {
    value.parse().map_err(|_| HeaderError::BadValue {
        name,
        value: value.to_owned(),
    })
}

fn bus_name<'a>(header: &'static str, value: &'a str) -> Result<&'a str, HeaderError> {
    validate_name(value).map_err(|error| HeaderError::BadName { header, error })?;
    Ok(value)
}

/// Reads and checks the headers of an arriving event.
pub fn decode(headers: Option<&HeaderMap>) -> Result<Incoming<'_>, HeaderError> {
    let h = headers.ok_or(HeaderError::Missing)?;
    let path = required(h, names::PATH, PATH)?;
    for id in path.split(',') {
        bus_name(PATH, id)?;
    }
    let priority_text = required(h, names::PRIORITY, PRIORITY)?;
    let priority = Priority::ALL
        .into_iter()
        .find(|p| p.name() == priority_text)
        .ok_or_else(|| HeaderError::BadValue {
            name: PRIORITY,
            value: priority_text.to_owned(),
        })?;
    let mut meta = Vec::new();
    for entry in h.get_all(names::META) {
        let entry = entry.as_str();
        let (key, value) = entry.split_once('=').ok_or_else(|| HeaderError::BadValue {
            name: META,
            value: entry.to_owned(),
        })?;
        meta.push((bus_name(META, key)?, number(META, value)?));
    }
    Ok(Incoming {
        path,
        hops: number(HOPS, required(h, names::HOPS, HOPS)?)?,
        id: number(ID, required(h, names::ID, ID)?)?,
        type_name: bus_name(TYPE, required(h, names::TYPE, TYPE)?)?,
        source: bus_name(SOURCE, required(h, names::SOURCE, SOURCE)?)?,
        destination: text(h, names::DESTINATION)
            .map(|d| bus_name(DESTINATION, d))
            .transpose()?,
        priority,
        correlation: text(h, names::CORRELATION)
            .map(|c| number(CORRELATION, c))
            .transpose()?
            .unwrap_or(0),
        causation: text(h, names::CAUSATION)
            .map(|c| number(CAUSATION, c))
            .transpose()?
            .unwrap_or(0),
        deadline_in_ns: text(h, names::DEADLINE_IN)
            .map(|d| number(DEADLINE_IN, d))
            .transpose()?,
        meta,
    })
}

/// The body: the slot's bytes exactly as the bus holds them.
pub fn body<const SLOT: usize>(event: &Event<SLOT>) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(event.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._:/-]{1,16}"
    }

    proptest! {
        /// decode(encode(x)) == x, field by field (the model: the input itself).
        #[test]
        fn headers_round_trip(
            path in proptest::collection::vec("[a-z0-9-]{1,8}", 1..4),
            hops: u8, id: u64, ty in name(), source in name(),
            destination in proptest::option::of(name()),
            p in 0u8..4, correlation: u64, causation: u64,
            deadline in proptest::option::of(any::<u64>()),
            meta in proptest::collection::vec((name(), any::<u64>()), 0..3),
        ) {
            let path_text = path.join(",");
            let meta_refs: Vec<(&str, u64)> = meta.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let priority = Priority::from_u8(p).unwrap_or(Priority::Low);
            let headers = encode(&Outgoing {
                path: &path_text, hops, id, type_name: &ty, source: &source,
                destination: destination.as_deref(), priority, correlation, causation,
                deadline_in_ns: deadline, meta: &meta_refs, msg_id: None,
            });
            let got = decode(Some(&headers)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let meta_refs: Vec<(&str, u64)> = meta.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            prop_assert_eq!(got, Incoming {
                path: &path_text, hops, id, type_name: &ty, source: &source,
                destination: destination.as_deref(), priority, correlation,
                causation, deadline_in_ns: deadline, meta: meta_refs,
            });
        }
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        assert_eq!(decode(None), Err(HeaderError::Missing));
        let mut h = HeaderMap::new();
        h.insert(PATH, "b1");
        assert_eq!(decode(Some(&h)), Err(HeaderError::Absent(PRIORITY)));
        h.insert(PRIORITY, "urgent");
        assert_eq!(
            decode(Some(&h)),
            Err(HeaderError::BadValue {
                name: PRIORITY,
                value: "urgent".into()
            })
        );
        h.insert(PRIORITY, "high");
        h.insert(HOPS, "300");
        h.insert(ID, "1");
        h.insert(TYPE, "news");
        h.insert(SOURCE, "alpha");
        assert!(matches!(
            decode(Some(&h)),
            Err(HeaderError::BadValue { name: HOPS, .. })
        ));
        h.insert(HOPS, "1");
        h.insert(SOURCE, "al pha");
        assert!(matches!(
            decode(Some(&h)),
            Err(HeaderError::BadName { header: SOURCE, .. })
        ));
        h.insert(SOURCE, "alpha");
        assert!(decode(Some(&h)).is_ok());
    }
}
