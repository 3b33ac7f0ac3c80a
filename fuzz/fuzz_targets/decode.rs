//! Event slots and payloads from outside the process (a journal, a network bridge).
//!
//! Raw half: arbitrary bytes presented as a slot (`Event::<SLOT>::from_bytes`, for 128, 256
//! and 512-byte slots). Validation never panics and never reads out of bounds (run under
//! ASan, the default of `cargo fuzz`); it accepts exactly what the header rules (written
//! out here as a model, from the byte layout) allow, with the first failing rule's error;
//! an accepted slot re-encodes (`as_bytes`) to the same bytes (minus the local flag and
//! type tag) and decodes to the same event; the header accessors read what the bytes
//! say; reading the payload as several rkyv types returns `Ok` or `Err(Invalid | Missing)`.
//!
//! Structured half: an event built through the public API from arbitrary fields (type,
//! priority, destination, correlation, deadline, metadata, a payload of a small struct with
//! heap fields) survives the byte round trip with every field and the payload intact.
#![no_main]

use arbitrary::Arbitrary;
use dreamnet_bus::{
    AgentId, DecodeError, Event, EventType, MetaKey, MetadataFull, PayloadError, Priority,
    HEADER_SIZE, META_ENTRIES,
};
use libfuzzer_sys::fuzz_target;

/// A payload with fixed and out-of-line (relative pointer) parts.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Arbitrary, Debug, Clone, PartialEq)]
struct Task {
    id: u32,
    flags: [u8; 5],
    score: Option<u64>,
    name: String,
    parts: Vec<u16>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Arbitrary, Debug, Clone, PartialEq)]
struct Small {
    a: u8,
    b: i64,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Arbitrary, Debug, Clone, PartialEq)]
enum Tagged {
    None,
    Num(u32),
    Text(String),
    Pair(u16, Option<u8>),
}

// Header layout (see event.rs): the model of `from_bytes` reads these.
const OFF_FINGERPRINT: usize = 32;
const OFF_SOURCE: usize = 40;
const OFF_DEST: usize = 44;
const OFF_TYPE: usize = 48;
const OFF_PAYLOAD_LEN: usize = 50;
const OFF_PRIORITY: usize = 52;
const OFF_FLAGS: usize = 53;
const OFF_ATTEMPTS: usize = 54;
const OFF_META_LEN: usize = 56;
const OFF_META_KEYS: usize = 64;
const OFF_RESERVED2: usize = 70;
const OFF_META_VALUES: usize = 72;
const OFF_CAUSATION: usize = 96;
const OFF_RESERVED3: usize = 104;
const FLAG_HAS_PAYLOAD: u8 = 1;
const FLAG_LOCAL: u8 = 2;
const FLAG_SCHEDULED: u8 = 4;
const FLAG_REPLAYED: u8 = 8;
const KNOWN_FLAGS: u8 = FLAG_HAS_PAYLOAD | FLAG_LOCAL | FLAG_SCHEDULED | FLAG_REPLAYED;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// What `from_bytes` must say about `b`, rule by rule, in its documented order.
fn expected<const SLOT: usize>(b: &[u8]) -> Result<(), DecodeError> {
    if b.len() != SLOT {
        return Err(DecodeError::WrongLength {
            len: b.len(),
            expected: SLOT,
        });
    }
    let cap = SLOT - HEADER_SIZE;
    let (prio, flags, len) = (b[OFF_PRIORITY], b[OFF_FLAGS], u16_at(b, OFF_PAYLOAD_LEN));
    if prio > 3 {
        return Err(DecodeError::BadPriority(prio));
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnknownFlags(flags & !KNOWN_FLAGS));
    }
    if usize::from(len) > cap {
        return Err(DecodeError::BadPayloadLength {
            len: len.into(),
            capacity: cap,
        });
    }
    if flags & FLAG_HAS_PAYLOAD == 0 && len != 0 {
        return Err(DecodeError::BadPayloadLength {
            len: len.into(),
            capacity: 0,
        });
    }
    if usize::from(b[OFF_META_LEN]) > META_ENTRIES {
        return Err(DecodeError::BadMetadataCount {
            count: b[OFF_META_LEN].into(),
            max: META_ENTRIES,
        });
    }
    // Byte 57 is the hop count (any value); 58..64 are reserved.
    if b[58..64].iter().any(|x| *x != 0)
        || u16_at(b, OFF_RESERVED2) != 0
        || b[OFF_RESERVED3..HEADER_SIZE].iter().any(|x| *x != 0)
    {
        return Err(DecodeError::ReservedNotZero);
    }
    Ok(())
}

/// Reads the payload as `T`: never a panic, only `Ok`, `Invalid` or `Missing`.
fn read_as<T, const SLOT: usize>(e: &Event<SLOT>) -> Option<&T::Archived>
where
    T: rkyv::Archive + 'static,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<
        rkyv::api::low::LowValidator<'a, rkyv::rancor::Failure>,
    >,
{
    match e.payload::<T>() {
        Ok(v) => {
            assert!(e.header().has_payload());
            Some(v)
        }
        Err(PayloadError::Missing) => {
            assert!(!e.header().has_payload());
            None
        }
        Err(PayloadError::Invalid) => {
            assert!(e.header().has_payload());
            None
        }
        Err(other) => panic!("reading a payload returned {other:?}"),
    }
}

fn raw<const SLOT: usize>(b: &[u8]) {
    let got = Event::<SLOT>::from_bytes(b);
    let want = expected::<SLOT>(b);
    let e = match (got, want) {
        (Ok(e), Ok(())) => e,
        (Err(g), Err(w)) => {
            assert_eq!(g, w, "rejected for another reason");
            return;
        }
        (got, want) => panic!("from_bytes: {got:?}, model: {want:?}"),
    };
    // The header reads what the bytes say.
    let h = e.header();
    assert_eq!(h.id(), u64_at(b, 0));
    assert_eq!(h.timestamp_ns(), u64_at(b, 8));
    assert_eq!(h.correlation_id(), u64_at(b, 16));
    assert_eq!(h.causation_id(), u64_at(b, OFF_CAUSATION));
    let deadline = u64_at(b, 24);
    assert_eq!(h.deadline_ns(), (deadline != 0).then_some(deadline));
    assert_eq!(h.source().raw(), u32_at(b, OFF_SOURCE));
    let dest = u32_at(b, OFF_DEST);
    assert_eq!(
        h.destination().map(AgentId::raw),
        (dest != u32::MAX).then_some(dest)
    );
    assert_eq!(h.event_type().raw(), u16_at(b, OFF_TYPE));
    assert_eq!(h.priority() as u8, b[OFF_PRIORITY]);
    assert_eq!(h.attempts(), u16_at(b, OFF_ATTEMPTS));
    assert_eq!(h.has_payload(), b[OFF_FLAGS] & FLAG_HAS_PAYLOAD != 0);
    assert_eq!(h.is_scheduled(), b[OFF_FLAGS] & FLAG_SCHEDULED != 0);
    assert_eq!(h.is_replayed(), b[OFF_FLAGS] & FLAG_REPLAYED != 0);
    let len = usize::from(u16_at(b, OFF_PAYLOAD_LEN));
    assert_eq!(h.payload_len(), len);
    assert_eq!(e.payload_bytes(), &b[HEADER_SIZE..HEADER_SIZE + len]);
    let meta: Vec<(u16, u64)> = h.metadata_entries().map(|(k, v)| (k.raw(), v)).collect();
    let want_meta: Vec<(u16, u64)> = (0..usize::from(b[OFF_META_LEN]))
        .map(|i| {
            (
                u16_at(b, OFF_META_KEYS + 2 * i),
                u64_at(b, OFF_META_VALUES + 8 * i),
            )
        })
        .collect();
    assert_eq!(meta, want_meta);
    // Re-encodes to the same bytes, except that the local mark is never trusted.
    let out = e.as_bytes();
    for (i, (&o, &w)) in out.iter().zip(b).enumerate() {
        let w = match i {
            OFF_FLAGS => w & !FLAG_LOCAL,
            x if (OFF_FINGERPRINT..OFF_FINGERPRINT + 8).contains(&x) => 0,
            _ => w,
        };
        assert_eq!(o, w, "byte {i} changed in the round trip");
    }
    let again = Event::<SLOT>::from_bytes(out).expect("an accepted slot re-decodes");
    assert_eq!(again, e);
    // Payload reads: validated, never a panic, never out of bounds.
    if let Some(t) = read_as::<Task, SLOT>(&e) {
        // Touch every out-of-line byte the validator vouched for.
        let _ = t.name.as_str().len();
        let _: u64 = t.parts.iter().map(|p| u64::from(p.to_native())).sum();
    }
    if let Some(s) = read_as::<Tagged, SLOT>(&e) {
        if let ArchivedTagged::Text(t) = s {
            let _ = t.as_str().chars().count();
        }
    }
    let _ = read_as::<Small, SLOT>(&e);
    let _ = read_as::<u64, SLOT>(&e);
    let _ = read_as::<String, SLOT>(&e).map(|s| s.as_str().len());
    let _ = read_as::<Vec<u32>, SLOT>(&e).map(|v| v.iter().count());
    let _ = read_as::<Option<Box<[u8]>>, SLOT>(&e);
}

/// An `AgentId` / `EventType` / `MetaKey` with a chosen raw value, obtained the way a
/// bridge would: from a decoded slot (their constructors are the bus's).
fn ids(ty: u16, dest: u32, key: u16) -> (EventType, Option<AgentId>, MetaKey) {
    let mut b = [0u8; 256];
    b[OFF_TYPE..OFF_TYPE + 2].copy_from_slice(&ty.to_ne_bytes());
    b[OFF_DEST..OFF_DEST + 4].copy_from_slice(&dest.to_ne_bytes());
    b[OFF_META_LEN] = 1;
    b[OFF_META_KEYS..OFF_META_KEYS + 2].copy_from_slice(&key.to_ne_bytes());
    let e = Event::<256>::from_bytes(&b).unwrap();
    let h = e.header();
    let key = h.metadata_entries().next().map(|(k, _)| k);
    (h.event_type(), h.destination(), key.unwrap())
}

#[derive(Arbitrary, Debug)]
enum Payload {
    None,
    Task(Task),
    Small(Small),
    Tagged(Tagged),
    /// Set one payload, then replace it with another.
    Replaced(Small, Task),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    ty: u16,
    priority: u8,
    destination: u32,
    correlation: u64,
    deadline: u64,
    meta: Vec<(u8, u64)>,
    payload: Payload,
}

fn check_round_trip<T>(e: &Event<256>, want: Option<&T>)
where
    T: rkyv::Archive + PartialEq + core::fmt::Debug + 'static,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::low::LowValidator<'a, rkyv::rancor::Failure>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    let d = Event::<256>::from_bytes(e.as_bytes()).expect("a built event decodes");
    let (a, b) = (e.header(), d.header());
    assert_eq!(a.id(), b.id());
    assert_eq!(a.event_type(), b.event_type());
    assert_eq!(a.priority(), b.priority());
    assert_eq!(a.destination(), b.destination());
    assert_eq!(a.correlation_id(), b.correlation_id());
    assert_eq!(a.causation_id(), b.causation_id());
    assert_eq!(a.deadline_ns(), b.deadline_ns());
    assert_eq!(a.attempts(), b.attempts());
    assert_eq!(a.has_payload(), b.has_payload());
    assert_eq!(a.payload_len(), b.payload_len());
    assert!(a.metadata_entries().eq(b.metadata_entries()));
    assert_eq!(e.payload_bytes(), d.payload_bytes());
    assert_eq!(Event::<256>::from_bytes(d.as_bytes()).unwrap(), d);
    let deser = |arch: &T::Archived| -> T {
        rkyv::deserialize::<T, rkyv::rancor::Error>(arch).expect("deserialize")
    };
    match want {
        Some(w) => {
            // Local (unchecked) read and decoded (validated) read both give the value.
            assert_eq!(&deser(e.payload::<T>().expect("local read")), w);
            assert_eq!(&deser(d.payload::<T>().expect("validated read")), w);
        }
        None => {
            assert!(!d.header().has_payload());
            assert!(d.payload_bytes().is_empty());
        }
    }
    // Reading as other types: validated, never a panic.
    let _ = read_as::<Task, 256>(&d);
    let _ = read_as::<Small, 256>(&d);
    let _ = read_as::<Tagged, 256>(&d);
    let _ = read_as::<Task, 256>(e);
    let _ = read_as::<Small, 256>(e);
    let _ = read_as::<Tagged, 256>(e);
}

/// Sets `value` as the payload; if it does not fit, checks the error and that the event
/// has no payload afterwards. Returns whether it was set.
fn set<T: dreamnet_bus::WritePayload>(e: &mut Event<256>, value: &T) -> bool {
    match e.set_payload(value) {
        Ok(()) => {
            assert!(e.header().has_payload());
            assert!(e.payload_bytes().len() <= Event::<256>::PAYLOAD_CAPACITY);
            true
        }
        Err(PayloadError::TooLarge { needed, capacity }) => {
            assert_eq!(capacity, Event::<256>::PAYLOAD_CAPACITY);
            assert!(needed > capacity);
            assert!(!e.header().has_payload());
            assert_eq!(e.payload_bytes().len(), 0);
            false
        }
        Err(PayloadError::ScratchExhausted { .. }) => {
            assert!(!e.header().has_payload());
            false
        }
        Err(other) => panic!("set_payload: {other:?}"),
    }
}

fn structured(s: &Structured) {
    let (ty, dest, _) = ids(s.ty, s.destination, 0);
    let priority = Priority::ALL[usize::from(s.priority % 4)];
    let mut e = Event::<256>::new(ty)
        .with_priority(priority)
        .with_correlation_id(s.correlation)
        // Not a field of its own, so the committed corpus keeps decoding as before.
        .with_causation_id(s.correlation.rotate_left(17))
        .with_deadline_ns(s.deadline);
    e.set_destination(dest);
    let h = e.header();
    assert_eq!(h.event_type(), ty);
    assert_eq!(h.priority(), priority);
    assert_eq!(h.destination(), dest);
    assert_eq!(h.correlation_id(), s.correlation);
    assert_eq!(h.causation_id(), s.correlation.rotate_left(17));
    assert_eq!(h.deadline_ns(), (s.deadline != 0).then_some(s.deadline));
    // Metadata: at most META_ENTRIES distinct keys, a known key is replaced.
    let mut model: Vec<(u16, u64)> = Vec::new();
    for &(k, v) in s.meta.iter().take(16) {
        let key = ids(0, 0, u16::from(k % 6)).2;
        let r = e.set_metadata(key, v);
        if let Some(slot) = model.iter_mut().find(|(mk, _)| *mk == key.raw()) {
            assert!(r.is_ok());
            slot.1 = v;
        } else if model.len() < META_ENTRIES {
            assert!(r.is_ok());
            model.push((key.raw(), v));
        } else {
            assert_eq!(
                r,
                Err(MetadataFull {
                    key,
                    value: v,
                    max: META_ENTRIES
                })
            );
        }
        let got: Vec<(u16, u64)> = e
            .header()
            .metadata_entries()
            .map(|(k, v)| (k.raw(), v))
            .collect();
        assert_eq!(got, model);
        assert_eq!(
            e.header().metadata(key),
            model.iter().find(|m| m.0 == key.raw()).map(|m| m.1)
        );
    }
    match &s.payload {
        Payload::None => {
            assert!(matches!(e.payload::<Small>(), Err(PayloadError::Missing)));
            check_round_trip::<Small>(&e, None);
        }
        Payload::Task(t) => {
            let ok = set(&mut e, t);
            check_round_trip::<Task>(&e, ok.then_some(t));
        }
        Payload::Small(t) => {
            assert!(set(&mut e, t), "a Small always fits");
            check_round_trip::<Small>(&e, Some(t));
        }
        Payload::Tagged(t) => {
            let ok = set(&mut e, t);
            check_round_trip::<Tagged>(&e, ok.then_some(t));
        }
        Payload::Replaced(a, b) => {
            assert!(set(&mut e, a));
            let ok = set(&mut e, b);
            if ok {
                check_round_trip::<Task>(&e, Some(b));
            } else {
                // A failed set leaves no payload (not the old one).
                assert!(matches!(e.payload::<Small>(), Err(PayloadError::Missing)));
                check_round_trip::<Small>(&e, None);
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a [u8]),
    /// A valid header with arbitrary payload bytes and length (the bridge case).
    Patched {
        header: Structured,
        len: u8,
        bytes: &'a [u8],
    },
    Structured(Structured),
}

fuzz_target!(|data: &[u8]| {
    // The plain bytes, as they are, at every slot size.
    raw::<128>(data);
    raw::<256>(data);
    raw::<512>(data);
    let Ok(input) = arbitrary::Unstructured::new(data).arbitrary::<Input>() else {
        return;
    };
    match input {
        Input::Raw(b) => {
            raw::<256>(b);
        }
        Input::Patched { header, len, bytes } => {
            let (ty, dest, _) = ids(header.ty, header.destination, 0);
            let mut e = Event::<256>::new(ty).with_correlation_id(header.correlation);
            e.set_destination(dest);
            let mut b = *e.as_bytes();
            let len = usize::from(len) % (Event::<256>::PAYLOAD_CAPACITY + 1);
            b[OFF_FLAGS] = FLAG_HAS_PAYLOAD | (header.priority & FLAG_LOCAL);
            b[OFF_PAYLOAD_LEN..OFF_PAYLOAD_LEN + 2].copy_from_slice(&(len as u16).to_ne_bytes());
            let n = bytes.len().min(Event::<256>::PAYLOAD_CAPACITY);
            b[HEADER_SIZE..HEADER_SIZE + n].copy_from_slice(&bytes[..n]);
            raw::<256>(&b);
        }
        Input::Structured(s) => structured(&s),
    }
});
