//! The event slot: one fixed-size, cache-line-aligned value that holds a header and an
//! inline payload area. Moving an event never allocates; rings hold slots by value.
//!
//! ```text
//!  offset  0 ........................ 112 ............................... SLOT
//!          | Header (112 B, no padding) | payload area: one rkyv archive   |
//! ```
//!
//! The payload offset (112) is a multiple of 16, and the slot is 64-byte aligned, so archived
//! roots written at the start of the payload area are aligned for every rkyv type.
//!
//! Payloads are written with rkyv's low-level API straight into the payload area, with a
//! fixed scratch area on the stack: nothing touches the heap. A payload that does not fit
//! is [`PayloadError::TooLarge`], never a truncation.
//!
//! Reading: [`Event::payload`] returns `&Archived<T>` with zero copy. Bytes that this
//! process's own [`Event::set_payload`] wrote for the same `T` are read without validation;
//! every other case (bytes from [`Event::from_bytes`], a different `T`) is validated with
//! bytecheck first.

use core::mem::MaybeUninit;

use rkyv::api::low::{to_bytes_in_with_alloc, LowSerializer, LowValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::Failure;
use rkyv::ser::allocator::SubAllocator;
use rkyv::ser::writer::{Buffer, Positional};
use rkyv::ser::Writer;
use rkyv::{Archive, Serialize};

use crate::error::{DecodeError, MetadataFull, PayloadError};
use crate::names::{AgentId, EventType, MetaKey};
use crate::priority::Priority;
use crate::type_tag;

/// The header size in bytes; the payload area starts here.
pub const HEADER_SIZE: usize = 112;
/// The default slot size: four cache lines, 144 bytes of payload.
pub const DEFAULT_SLOT: usize = 256;
/// How many inline metadata entries a header holds.
pub const META_ENTRIES: usize = 3;
/// Bytes of stack scratch space a payload serialisation may use (for rkyv's allocator).
pub const SCRATCH_SIZE: usize = 512;

/// Sentinel for "no agent" in the header's destination field (a broadcast).
const NO_AGENT: u32 = u32::MAX;

/// Header flag: the payload area holds an archive.
const FLAG_HAS_PAYLOAD: u8 = 1 << 0;
/// Header flag: the payload was written by `set_payload` in this process, and
/// `payload_tag` names the type it was written from (see `type_tag`). Cleared by
/// `from_bytes`.
const FLAG_LOCAL: u8 = 1 << 1;
/// Header flag: a scheduled event (`publish_at`); `timestamp_ns` is its due time.
const FLAG_SCHEDULED: u8 = 1 << 2;
/// Header flag: published again from a journal by a `Replayer` (keeps its original id,
/// source and timestamp). Cleared by every live publish, so only a replay sets it.
const FLAG_REPLAYED: u8 = 1 << 3;
const KNOWN_FLAGS: u8 = FLAG_HAS_PAYLOAD | FLAG_LOCAL | FLAG_SCHEDULED | FLAG_REPLAYED;

/// An event's fixed header. Every field is an integer and the layout has no padding, so any
/// 112 bytes are a `Header` (validity of the *values* is checked by [`Event::from_bytes`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Unique across the bus; 0 until a publisher stamps it.
    id: u64,
    /// Nanoseconds on the bus clock at publish.
    timestamp_ns: u64,
    correlation_id: u64,
    /// Nanoseconds on the bus clock; 0 means no deadline.
    deadline_ns: u64,
    /// The `type_tag` of the Rust type the payload was archived from (meaningful with
    /// FLAG_LOCAL).
    payload_tag: u64,
    source: u32,
    /// `NO_AGENT` for a broadcast.
    destination: u32,
    event_type: u16,
    /// In `0..=payload capacity` (checked by every writer and by `from_bytes`).
    payload_len: u16,
    /// A valid `Priority` discriminant (checked by every writer and by `from_bytes`).
    priority: u8,
    flags: u8,
    attempts: u16,
    /// In `0..=META_ENTRIES`.
    meta_len: u8,
    /// Causal depth: how many `caused_by` links lead back to a root event (0 for a root).
    /// A transform stage refuses an input past its maximum (a cycle: `LoopDetected`).
    /// Any value is valid.
    hops: u8,
    reserved: [u8; 6],
    meta_keys: [u16; META_ENTRIES],
    reserved2: u16,
    meta_values: [u64; META_ENTRIES],
    /// The id of the event that caused this one (0: none); with the correlation id it
    /// makes conversations into trees (a journal's `thread`).
    causation_id: u64,
    reserved3: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(HEADER_SIZE % 16 == 0);

impl Header {
    /// The event id, unique across the bus (0 before publish).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The event type.
    pub fn event_type(&self) -> EventType {
        EventType(self.event_type)
    }
    /// The publishing agent (stamped by the publisher handle).
    pub fn source(&self) -> AgentId {
        AgentId(self.source)
    }
    /// The destination agent, or `None` for a broadcast.
    pub fn destination(&self) -> Option<AgentId> {
        (self.destination != NO_AGENT).then_some(AgentId(self.destination))
    }
    /// The priority level.
    pub fn priority(&self) -> Priority {
        // Every writer stores a valid discriminant and `from_bytes` checks it.
        Priority::from_u8(self.priority).unwrap_or(Priority::Low)
    }
    /// Publish time, nanoseconds on the bus clock.
    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    /// The correlation id (0 if none was set).
    pub fn correlation_id(&self) -> u64 {
        self.correlation_id
    }
    /// The id of the event that caused this one (0 if none was set): see
    /// [`Event::caused_by`].
    pub fn causation_id(&self) -> u64 {
        self.causation_id
    }
    /// The hop count: how many `caused_by` links lead back to a root event (0 for an
    /// event caused by nothing; a derived event has its cause's count plus one). Transform
    /// stages use it to stop cycles.
    pub fn hops(&self) -> u8 {
        self.hops
    }
    /// The deadline on the bus clock, if one was set.
    pub fn deadline_ns(&self) -> Option<u64> {
        (self.deadline_ns != 0).then_some(self.deadline_ns)
    }
    /// How many delivery attempts were made before this one (0 on first delivery).
    pub fn attempts(&self) -> u16 {
        self.attempts
    }
    /// Length of the archived payload in bytes (0 without payload).
    pub fn payload_len(&self) -> usize {
        usize::from(self.payload_len)
    }
    /// Whether the event was published with `publish_at` / `publish_after` (its timestamp
    /// is then the time it was scheduled for).
    pub fn is_scheduled(&self) -> bool {
        self.flags & FLAG_SCHEDULED != 0
    }
    /// Whether the event was replayed from a journal (`journal::Replayer`) rather than
    /// published live: its id, source and timestamp are those of the original publish.
    pub fn is_replayed(&self) -> bool {
        self.flags & FLAG_REPLAYED != 0
    }
    /// Whether the event carries a payload.
    pub fn has_payload(&self) -> bool {
        self.flags & FLAG_HAS_PAYLOAD != 0
    }
    /// The value of metadata `key`, if present.
    pub fn metadata(&self, key: MetaKey) -> Option<u64> {
        self.metadata_entries()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
    /// All metadata entries, in insertion order.
    pub fn metadata_entries(&self) -> impl Iterator<Item = (MetaKey, u64)> + '_ {
        let n = usize::from(self.meta_len).min(META_ENTRIES);
        (0..n).map(move |i| (MetaKey(self.meta_keys[i]), self.meta_values[i]))
    }
}

/// One event: a fixed-size, 64-byte-aligned slot of `SLOT` bytes (header + payload area).
///
/// `SLOT` must be a multiple of 64 and at least 128 (checked at compile time).
///
/// ```
/// use dreamnet_bus::{Event, EventType, Priority};
///
/// #[derive(rkyv::Archive, rkyv::Serialize)]
/// struct Task { id: u32, prompt: [u8; 8] }
///
/// let event: Event = Event::new(EventType::AGENT_TASK)
///     .with_priority(Priority::High)
///     .with_payload(&Task { id: 7, prompt: *b"generate" })?;
/// let task = event.payload::<Task>()?;
/// assert_eq!(task.id, 7);
/// # Ok::<(), dreamnet_bus::PayloadError>(())
/// ```
#[repr(C, align(64))]
#[derive(Clone, PartialEq, Eq)]
pub struct Event<const SLOT: usize = DEFAULT_SLOT> {
    /// Header (first `HEADER_SIZE` bytes) then payload area. Always fully initialised.
    bytes: [u8; SLOT],
}

impl<const SLOT: usize> core::fmt::Debug for Event<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Event")
            .field("header", self.header())
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> Event<SLOT> {
    const VALID_SLOT: () = assert!(
        SLOT % 64 == 0 && SLOT >= 128 && SLOT - HEADER_SIZE <= u16::MAX as usize,
        "SLOT must be a multiple of 64, at least 128"
    );

    /// Bytes available for the archived payload.
    pub const PAYLOAD_CAPACITY: usize = SLOT - HEADER_SIZE;

    /// A new event of type `event_type`: normal priority, broadcast, no payload.
    pub fn new(event_type: EventType) -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID_SLOT;
        let mut event = Event { bytes: [0; SLOT] };
        let h = event.header_mut();
        h.event_type = event_type.0;
        h.destination = NO_AGENT;
        h.priority = Priority::Normal as u8;
        event
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: `bytes` is the first field of a `repr(C, align(64))` struct, so its start is
        // 64-aligned (>= align_of::<Header>() == 8); SLOT >= 128 > HEADER_SIZE (VALID_SLOT,
        // evaluated in `new`, the only constructor besides `from_bytes`, which checks the
        // length); `Header` is `repr(C)`, integers only, without padding, so every byte
        // pattern is a valid `Header`.
        unsafe { &*self.bytes.as_ptr().cast::<Header>() }
    }

    pub(crate) fn header_mut(&mut self) -> &mut Header {
        // SAFETY: as in `header`; and because `Header` has no padding, writes through this
        // reference only ever store initialised bytes into `bytes`.
        unsafe { &mut *self.bytes.as_mut_ptr().cast::<Header>() }
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.header_mut().priority = priority as u8;
        self
    }

    /// Addresses the event to one agent (direct routing). Without it, the event is a broadcast.
    pub fn to(mut self, destination: AgentId) -> Self {
        self.header_mut().destination = destination.0;
        self
    }

    /// Makes the event a broadcast again.
    pub fn to_all(mut self) -> Self {
        self.header_mut().destination = NO_AGENT;
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: u64) -> Self {
        self.header_mut().correlation_id = id;
        self
    }

    /// Sets the causation id: the id of the event that caused this one.
    pub fn with_causation_id(mut self, id: u64) -> Self {
        self.header_mut().causation_id = id;
        self
    }

    /// Marks this event as caused by the one with header `cause` (in a handler:
    /// `Event::new(t).caused_by(delivery.header())`): the causation id becomes the cause's
    /// id, and the correlation id the cause's correlation id, or the cause's own id when it
    /// had none (the cause then starts the conversation). The hop count becomes the
    /// cause's plus one (saturating).
    pub fn caused_by(mut self, cause: &Header) -> Self {
        let h = self.header_mut();
        h.causation_id = cause.id;
        h.hops = cause.hops.saturating_add(1);
        h.correlation_id = if cause.correlation_id != 0 {
            cause.correlation_id
        } else {
            cause.id
        };
        self
    }

    /// Sets a deadline on the bus clock (nanoseconds; see `Bus::now_ns`). 0 clears it.
    pub fn with_deadline_ns(mut self, deadline_ns: u64) -> Self {
        self.header_mut().deadline_ns = deadline_ns;
        self
    }

    /// Archives `value` into the payload area (see [`Event::set_payload`]).
    pub fn with_payload<T: WritePayload>(mut self, value: &T) -> Result<Self, PayloadError> {
        self.set_payload(value)?;
        Ok(self)
    }

    /// Adds or replaces a metadata entry (see [`Event::set_metadata`]).
    pub fn with_metadata(mut self, key: MetaKey, value: u64) -> Result<Self, MetadataFull> {
        self.set_metadata(key, value)?;
        Ok(self)
    }

    /// Sets the priority in place.
    pub fn set_priority(&mut self, priority: Priority) {
        self.header_mut().priority = priority as u8;
    }

    /// Sets the correlation id in place.
    pub fn set_correlation_id(&mut self, id: u64) {
        self.header_mut().correlation_id = id;
    }

    /// Sets (or with `None` clears) the destination in place.
    pub fn set_destination(&mut self, destination: Option<AgentId>) {
        self.header_mut().destination = destination.map_or(NO_AGENT, |a| a.0);
    }

    /// Sets the event type in place (a bridge maps a remote type to this bus's id by name).
    pub fn set_event_type(&mut self, event_type: EventType) {
        self.header_mut().event_type = event_type.0;
    }

    /// Removes every metadata entry (a bridge replaces remote key ids with local ones).
    pub fn clear_metadata(&mut self) {
        let h = self.header_mut();
        h.meta_len = 0;
        h.meta_keys = [0; META_ENTRIES];
        h.meta_values = [0; META_ENTRIES];
    }

    /// Adds or replaces a metadata entry. At most [`META_ENTRIES`] distinct keys.
    pub fn set_metadata(&mut self, key: MetaKey, value: u64) -> Result<(), MetadataFull> {
        let h = self.header_mut();
        let n = usize::from(h.meta_len).min(META_ENTRIES);
        if let Some(i) = h.meta_keys[..n].iter().position(|k| *k == key.0) {
            h.meta_values[i] = value;
            return Ok(());
        }
        if n == META_ENTRIES {
            return Err(MetadataFull {
                key,
                value,
                max: META_ENTRIES,
            });
        }
        h.meta_keys[n] = key.0;
        h.meta_values[n] = value;
        h.meta_len = n as u8 + 1;
        Ok(())
    }

    /// Archives `value` straight into the payload area, replacing any payload.
    ///
    /// Nothing is allocated: rkyv writes into the slot and uses a fixed stack scratch area
    /// of [`SCRATCH_SIZE`] bytes. On error the event has no payload.
    pub fn set_payload<T: WritePayload>(&mut self, value: &T) -> Result<(), PayloadError> {
        {
            let h = self.header_mut();
            h.flags &= !(FLAG_HAS_PAYLOAD | FLAG_LOCAL);
            h.payload_len = 0;
            h.payload_tag = 0;
        }
        let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH_SIZE];
        let area = &mut self.bytes[HEADER_SIZE..];
        let written = to_bytes_in_with_alloc::<_, _, Failure>(
            value,
            Buffer::from(area),
            SubAllocator::new(&mut scratch),
        )
        .map(|buffer| buffer.pos());
        match written {
            Ok(len) => {
                let h = self.header_mut();
                // `len <= PAYLOAD_CAPACITY <= u16::MAX` (VALID_SLOT).
                h.payload_len = len as u16;
                h.payload_tag = type_tag::tag_of::<T>();
                h.flags |= FLAG_HAS_PAYLOAD | FLAG_LOCAL;
                Ok(())
            }
            Err(Failure) => Err(classify_failure(value, Self::PAYLOAD_CAPACITY)),
        }
    }

    /// The payload bytes (the archive), empty without payload.
    pub fn payload_bytes(&self) -> &[u8] {
        let len = self.header().payload_len().min(Self::PAYLOAD_CAPACITY);
        &self.bytes[HEADER_SIZE..HEADER_SIZE + len]
    }

    /// The payload as `&Archived<T>`, with zero copy.
    ///
    /// Bytes written by this process's `set_payload::<T>` are read directly; anything else
    /// (another `T`, bytes from [`Event::from_bytes`]) is validated first and refused with
    /// [`PayloadError::Invalid`] if it is not a valid `Archived<T>`.
    pub fn payload<T>(&self) -> Result<&T::Archived, PayloadError>
    where
        T: Archive + 'static,
        T::Archived: for<'a> CheckBytes<LowValidator<'a, Failure>>,
    {
        let h = self.header();
        if !h.has_payload() {
            return Err(PayloadError::Missing);
        }
        let bytes = self.payload_bytes();
        if h.flags & FLAG_LOCAL != 0 && type_tag::is::<T>(h.payload_tag) {
            // SAFETY: FLAG_LOCAL is set only by `set_payload::<U>`, right after rkyv wrote a
            // complete archive of a `U` of exactly `payload_len` bytes into the payload area,
            // together with `payload_tag = tag_of::<U>()`. Every other way of changing those
            // bytes or that tag clears the flag (`set_payload` clears it before writing,
            // `from_bytes` clears it; no other method writes the payload area, the flags or
            // the tag, and `Clone` copies all of them together). A tag names a slot of the
            // process-wide type table, and slots are written once, so the slot still holds
            // `TypeId::of::<U>()`; `type_tag::is::<T>` compared it in full with
            // `TypeId::of::<T>()` (no hash, no truncation), so `U` is `T` — the guarantee
            // `Any::downcast_ref` rests on. Hence the bytes are a valid `Archived<T>` whose
            // root sits at the end, as `access_unchecked` requires. The payload area is
            // 16-aligned (offset 112 in a 64-aligned slot).
            Ok(unsafe { rkyv::api::access_unchecked::<T::Archived>(bytes) })
        } else {
            rkyv::api::low::access::<T::Archived, Failure>(bytes).map_err(|_| PayloadError::Invalid)
        }
    }

    /// The raw slot bytes, for a journal or a bridge. [`Event::from_bytes`] reads them back.
    pub fn as_bytes(&self) -> &[u8; SLOT] {
        &self.bytes
    }

    /// Validates bytes from outside the process and copies them into an event.
    ///
    /// Checks the length, the priority, the payload length, the metadata count, the flags
    /// and the reserved bytes. The payload itself is validated when it is read
    /// ([`Event::payload`] validates because the result is never marked local). Type and
    /// agent ids are checked against a bus when the event is published there.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID_SLOT;
        let Ok(array) = <[u8; SLOT]>::try_from(bytes) else {
            return Err(DecodeError::WrongLength {
                len: bytes.len(),
                expected: SLOT,
            });
        };
        let mut event = Event { bytes: array };
        check_header(event.header(), Self::PAYLOAD_CAPACITY)?;
        let h = event.header_mut();
        // Bytes from outside are never trusted for unchecked reads.
        h.flags &= !FLAG_LOCAL;
        h.payload_tag = 0;
        Ok(event)
    }

    /// Validates a slot in place (a journal record in a memory map) and views it as an
    /// event, without copying.
    ///
    /// The same checks as [`Event::from_bytes`], and two more because nothing can be
    /// cleared in place: the bytes must be 64-byte aligned, and must not carry the
    /// process-local payload flag (so [`Event::payload`] always validates what it reads).
    #[cfg_attr(not(feature = "journal"), allow(dead_code))]
    pub(crate) fn view(bytes: &[u8]) -> Result<&Self, DecodeError> {
        #[allow(clippy::let_unit_value)]
        let () = Self::VALID_SLOT;
        if bytes.len() != SLOT {
            return Err(DecodeError::WrongLength {
                len: bytes.len(),
                expected: SLOT,
            });
        }
        if bytes.as_ptr().align_offset(core::mem::align_of::<Self>()) != 0 {
            return Err(DecodeError::Misaligned);
        }
        // SAFETY: `bytes` is SLOT bytes long and 64-aligned (both checked above), and
        // `Event<SLOT>` is `repr(C, align(64))` around `[u8; SLOT]`, so its size is SLOT
        // and every byte pattern is a valid `Event` value. The reference borrows `bytes`,
        // so it lives no longer than they do and shares their immutability.
        let event = unsafe { &*bytes.as_ptr().cast::<Self>() };
        check_header(event.header(), Self::PAYLOAD_CAPACITY)?;
        if event.header().flags & FLAG_LOCAL != 0 {
            return Err(DecodeError::LocalFlag);
        }
        Ok(event)
    }

    /// Copies the slot into `dst` as bytes for outside the process: the process-local
    /// payload flag and the type tag are cleared in the copy, so a reader (another
    /// process, another build) always validates the payload.
    #[cfg_attr(not(feature = "journal"), allow(dead_code))]
    pub(crate) fn write_foreign(&self, dst: &mut [u8]) {
        dst[..SLOT].copy_from_slice(&self.bytes);
        let flags = core::mem::offset_of!(Header, flags);
        dst[flags] &= !FLAG_LOCAL;
        let tag = core::mem::offset_of!(Header, payload_tag);
        dst[tag..tag + 8].fill(0);
    }

    pub(crate) fn stamp(&mut self, id: u64, source: AgentId, timestamp_ns: u64) {
        let h = self.header_mut();
        h.id = id;
        h.source = source.0;
        h.timestamp_ns = timestamp_ns;
        h.attempts = 0;
        // A live publish is never a replay, whatever the bytes said.
        h.flags &= !FLAG_REPLAYED;
    }

    /// Marks the event replayed (see [`Header::is_replayed`]); only a replay does this.
    #[cfg_attr(not(feature = "journal"), allow(dead_code))]
    pub(crate) fn set_replayed(&mut self) {
        self.header_mut().flags |= FLAG_REPLAYED;
    }

    /// Marks the event scheduled (or not); a scheduled event's timestamp is its due time.
    pub(crate) fn set_scheduled(&mut self, scheduled: bool) {
        let h = self.header_mut();
        if scheduled {
            h.flags |= FLAG_SCHEDULED;
        } else {
            h.flags &= !FLAG_SCHEDULED;
        }
    }

    /// Sets the causation id and hop count (a draft written in place: see
    /// `Draft::caused_by`).
    pub(crate) fn set_cause(&mut self, causation_id: u64, hops: u8) {
        let h = self.header_mut();
        h.causation_id = causation_id;
        h.hops = hops;
    }

    pub(crate) fn set_attempts(&mut self, attempts: u16) {
        self.header_mut().attempts = attempts;
    }
}

/// The header checks every reader of outside bytes makes (`from_bytes`, `view`).
fn check_header(h: &Header, capacity: usize) -> Result<(), DecodeError> {
    if Priority::from_u8(h.priority).is_none() {
        return Err(DecodeError::BadPriority(h.priority));
    }
    if h.flags & !KNOWN_FLAGS != 0 {
        return Err(DecodeError::UnknownFlags(h.flags & !KNOWN_FLAGS));
    }
    if usize::from(h.payload_len) > capacity {
        return Err(DecodeError::BadPayloadLength {
            len: usize::from(h.payload_len),
            capacity,
        });
    }
    if h.flags & FLAG_HAS_PAYLOAD == 0 && h.payload_len != 0 {
        return Err(DecodeError::BadPayloadLength {
            len: usize::from(h.payload_len),
            capacity: 0,
        });
    }
    if usize::from(h.meta_len) > META_ENTRIES {
        return Err(DecodeError::BadMetadataCount {
            count: usize::from(h.meta_len),
            max: META_ENTRIES,
        });
    }
    if h.reserved != [0; 6] || h.reserved2 != 0 || h.reserved3 != [0; 8] {
        return Err(DecodeError::ReservedNotZero);
    }
    Ok(())
}

/// What a payload type must implement to be archived into a slot: rkyv's `Serialize` for
/// the allocation-free serialisers used here. Every `#[derive(rkyv::Archive,
/// rkyv::Serialize)]` type without shared pointers qualifies; it is implemented for them
/// automatically.
pub trait WritePayload:
    'static
    + for<'a> Serialize<LowSerializer<Buffer<'a>, SubAllocator<'a>, Failure>>
    + for<'a> Serialize<LowSerializer<SizeCounter, SubAllocator<'a>, Failure>>
{
}

impl<T> WritePayload for T where
    T: 'static
        + for<'a> Serialize<LowSerializer<Buffer<'a>, SubAllocator<'a>, Failure>>
        + for<'a> Serialize<LowSerializer<SizeCounter, SubAllocator<'a>, Failure>>
{
}

/// An rkyv writer that only counts bytes: used on the error path to tell how many bytes a
/// payload that did not fit would need.
#[derive(Debug, Default)]
pub struct SizeCounter {
    len: usize,
}

impl Positional for SizeCounter {
    fn pos(&self) -> usize {
        self.len
    }
}

impl<E> Writer<E> for SizeCounter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.len += bytes.len();
        Ok(())
    }
}

/// Tells a payload too large for the slot from one that exhausted the scratch area.
#[cold]
fn classify_failure<T: WritePayload>(value: &T, capacity: usize) -> PayloadError {
    let mut scratch = [MaybeUninit::<u8>::uninit(); SCRATCH_SIZE];
    match to_bytes_in_with_alloc::<_, _, Failure>(
        value,
        SizeCounter::default(),
        SubAllocator::new(&mut scratch),
    ) {
        Ok(counter) if counter.len > capacity => PayloadError::TooLarge {
            needed: counter.len,
            capacity,
        },
        _ => PayloadError::ScratchExhausted {
            scratch: SCRATCH_SIZE,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(rkyv::Archive, rkyv::Serialize, Debug, PartialEq)]
    #[rkyv(derive(Debug))]
    struct Task {
        id: u32,
        name: [u8; 8],
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Big {
        bytes: [u8; 400],
    }

    #[test]
    fn slot_is_cache_aligned_and_sized() {
        assert_eq!(core::mem::align_of::<Event>(), 64);
        assert_eq!(core::mem::size_of::<Event>(), 256);
        assert_eq!(core::mem::size_of::<Event<512>>(), 512);
        assert_eq!(Event::<256>::PAYLOAD_CAPACITY, 144);
    }

    #[test]
    fn payload_round_trips_with_zero_copy() {
        let e: Event = Event::new(EventType::AGENT_TASK)
            .with_payload(&Task {
                id: 9,
                name: *b"abcdefgh",
            })
            .unwrap();
        let t = e.payload::<Task>().unwrap();
        assert_eq!(t.id, 9);
        assert_eq!(&t.name, b"abcdefgh");
        // The archived value lives inside the slot.
        let range = e.as_bytes().as_ptr_range();
        assert!(range.contains(&(t as *const ArchivedTask as *const u8)));
    }

    #[test]
    fn oversized_payload_is_an_error_with_sizes() {
        let err = Event::<256>::new(EventType::AGENT_TASK)
            .with_payload(&Big { bytes: [1; 400] })
            .unwrap_err();
        assert_eq!(
            err,
            PayloadError::TooLarge {
                needed: 400,
                capacity: 144
            }
        );
        assert!(Event::<512>::new(EventType::AGENT_TASK)
            .with_payload(&Big { bytes: [1; 400] })
            .is_ok());
    }

    #[test]
    fn missing_payload_is_an_error() {
        let e: Event = Event::new(EventType::AGENT_TASK);
        assert_eq!(e.payload::<Task>().unwrap_err(), PayloadError::Missing);
    }

    #[test]
    fn decoded_bytes_are_validated_before_access() {
        let e: Event = Event::new(EventType::SYSTEM_EVENT)
            .with_payload(&Task {
                id: 3,
                name: [0; 8],
            })
            .unwrap();
        let d = Event::<256>::from_bytes(e.as_bytes()).unwrap();
        assert_eq!(d.payload::<Task>().unwrap().id, 3);
        assert_eq!(d.header().id(), e.header().id());
        // A u64 payload read as Task: 8 bytes, Task needs 12 -> invalid, not UB.
        let e: Event = Event::new(EventType::SYSTEM_EVENT)
            .with_payload(&7u64)
            .unwrap();
        assert_eq!(e.payload::<Task>().unwrap_err(), PayloadError::Invalid);
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    #[rkyv(derive(Debug))]
    struct Byte {
        v: u8,
    }
    #[derive(rkyv::Archive, rkyv::Serialize)]
    #[rkyv(derive(Debug))]
    struct Flag {
        v: bool,
    }

    /// A local payload read as another type with the same layout is validated, not read
    /// unchecked: a byte of 7 is no `bool`, so treating `Byte` as `Flag` would be UB.
    #[test]
    fn local_payload_read_as_another_type_is_validated() {
        let e: Event = Event::new(EventType::SYSTEM_EVENT)
            .with_payload(&Byte { v: 7 })
            .unwrap();
        assert_eq!(e.payload::<Flag>().unwrap_err(), PayloadError::Invalid);
        assert_eq!(e.payload::<Byte>().unwrap().v, 7);
        let copy = e.clone();
        assert_eq!(copy.payload::<Byte>().unwrap().v, 7);
        assert_eq!(copy.payload::<Flag>().unwrap_err(), PayloadError::Invalid);
        let ok: Event = Event::new(EventType::SYSTEM_EVENT)
            .with_payload(&Flag { v: true })
            .unwrap();
        assert!(ok.payload::<Flag>().unwrap().v);
        assert_eq!(
            ok.payload::<Byte>().unwrap().v,
            1,
            "a valid bool is a valid u8"
        );
    }

    #[test]
    fn decode_refuses_bad_headers() {
        let good: Event = Event::new(EventType::AGENT_TASK);
        assert_eq!(
            Event::<256>::from_bytes(&[0u8; 10]).unwrap_err(),
            DecodeError::WrongLength {
                len: 10,
                expected: 256
            }
        );
        let mut b = *good.as_bytes();
        b[52] = 9;
        assert_eq!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::BadPriority(9)
        );
        let mut b = *good.as_bytes();
        b[53] = 0x80;
        assert_eq!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::UnknownFlags(0x80)
        );
        let mut b = *good.as_bytes();
        b[53] = FLAG_HAS_PAYLOAD;
        b[50..52].copy_from_slice(&500u16.to_ne_bytes());
        assert!(matches!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::BadPayloadLength { len: 500, .. }
        ));
        let mut b = *good.as_bytes();
        b[56] = 4;
        assert!(matches!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::BadMetadataCount { count: 4, .. }
        ));
        let mut b = *good.as_bytes();
        b[60] = 1;
        assert_eq!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::ReservedNotZero
        );
        let mut b = *good.as_bytes();
        b[HEADER_SIZE - 1] = 1;
        assert_eq!(
            Event::<256>::from_bytes(&b).unwrap_err(),
            DecodeError::ReservedNotZero
        );
    }

    #[test]
    fn caused_by_links_to_the_cause_and_keeps_its_conversation() {
        let mut root: Event = Event::new(EventType::AGENT_TASK);
        root.stamp(7, AgentId(1), 0);
        let reply: Event = Event::new(EventType::AGENT_STATUS).caused_by(root.header());
        assert_eq!(reply.header().causation_id(), 7);
        assert_eq!(
            reply.header().correlation_id(),
            7,
            "the root starts the conversation"
        );
        let mut reply = reply;
        reply.stamp(8, AgentId(2), 1);
        let next: Event = Event::new(EventType::AGENT_STATUS).caused_by(reply.header());
        assert_eq!(next.header().causation_id(), 8);
        assert_eq!(next.header().correlation_id(), 7);
        assert_eq!(
            (root.header().hops(), next.header().hops()),
            (0, 2),
            "each link adds a hop"
        );
        let back = Event::<256>::from_bytes(next.as_bytes()).unwrap();
        assert_eq!(back.header().causation_id(), 8);
        assert_eq!(
            back.header().hops(),
            2,
            "any hop count is valid on the wire"
        );
    }

    #[test]
    fn metadata_holds_three_keys_and_replaces() {
        let mut e: Event = Event::new(EventType::AGENT_TASK);
        for k in 0..3 {
            e.set_metadata(MetaKey(k), u64::from(k) * 10).unwrap();
        }
        e.set_metadata(MetaKey(1), 99).unwrap();
        assert_eq!(e.header().metadata(MetaKey(1)), Some(99));
        assert_eq!(
            e.set_metadata(MetaKey(7), 1),
            Err(MetadataFull {
                key: MetaKey(7),
                value: 1,
                max: 3
            })
        );
        assert_eq!(e.header().metadata_entries().count(), 3);
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder, and whatever it accepts can be read
        /// (header accessors, payload bytes) and re-encodes to the same bytes minus the
        /// local flag.
        #[test]
        fn decode_never_panics_and_accepts_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(e) = Event::<256>::from_bytes(&bytes) {
                let _ = e.header().priority();
                prop_assert!(e.payload_bytes().len() <= Event::<256>::PAYLOAD_CAPACITY);
                let _ = e.payload::<Task>();
                prop_assert_eq!(Event::<256>::from_bytes(e.as_bytes()).unwrap(), e);
            }
        }

        /// Every event built through the API survives the byte round trip.
        #[test]
        fn built_events_round_trip(id in any::<u32>(), prio in 0u8..4, dest in proptest::option::of(0u32..1000)) {
            let mut e: Event = Event::new(EventType::AGENT_STATUS)
                .with_priority(Priority::from_u8(prio).unwrap())
                .with_payload(&Task { id, name: [1; 8] }).unwrap();
            e.set_destination(dest.map(AgentId));
            let d = Event::<256>::from_bytes(e.as_bytes()).unwrap();
            prop_assert_eq!(d.header().destination(), dest.map(AgentId));
            prop_assert_eq!(d.payload::<Task>().unwrap().id, id);
        }
    }
}
