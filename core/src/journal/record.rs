//! The record: one fixed-size frame per event, 64-byte aligned so the slot can be read in
//! place as an `&Event`.
//!
//! ```text
//!  0 .................. SLOT   SLOT+8      SLOT+16          SLOT+56  SLOT+60   SLOT+64
//!  | event slot (as is)  | seq | watermark | reserved (zero) | crc32c | commit |
//! ```
//!
//! - `seq`: the record's sequence number (the first record of a journal is 1).
//! - `watermark`: the largest event timestamp of this record and all before it in the
//!   journal. It never decreases, so a seek by time is a binary search over it even when
//!   timestamps arrive out of order (drain order is not publish order).
//! - `crc32c`: over bytes `0..SLOT+56`, the slot and everything in the trailer but itself
//!   and the commit word.
//! - `commit`: written last, with release ordering. Zero means "not written"; a torn
//!   record (a crash mid-write, pages written back out of order) has either a zero commit
//!   word or a CRC that fails. [`TOMBSTONE`] marks a record that `repair` replaced.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::event::Event;

use super::error::Damage;

/// Bytes after the slot: seq, watermark, reserved, CRC, commit word.
pub const TRAILER: usize = 64;
/// The commit word of a written record ("JNL1", little-endian).
pub const COMMITTED: u32 = u32::from_le_bytes(*b"JNL1");
/// The commit word of a record that `repair` replaced (its slot is zeros).
pub const TOMBSTONE: u32 = u32::from_le_bytes(*b"TOMB");

/// The size of a record holding a `SLOT`-byte event.
pub const fn record_size(slot: usize) -> usize {
    slot + TRAILER
}

const fn crc_at(slot: usize) -> usize {
    slot + 56
}
const fn commit_at(slot: usize) -> usize {
    slot + 60
}

/// What a record turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State<'a, const SLOT: usize> {
    /// Never written: every byte, commit word included, is zero (only checked as far as
    /// the commit word; recovery checks the rest).
    Empty,
    /// A valid record of an event.
    Event(&'a Event<SLOT>, u64),
    /// A tombstone left by `repair`.
    Tombstone,
}

/// Reads the commit word with acquire ordering: bytes before it are read only after it
/// says "committed", so a reader tailing a live writer never sees a half-written record.
///
/// `record` must be a whole record (`record_size(SLOT)` bytes) whose start is 64-aligned.
fn commit_word<const SLOT: usize>(record: &[u8]) -> u32 {
    let word = &record[commit_at(SLOT)..commit_at(SLOT) + 4];
    // SAFETY: `word` is 4 bytes inside `record` at offset SLOT + 60, a multiple of 4 from
    // a 64-aligned start, so it is aligned for `AtomicU32`, which has the size and bit
    // validity of `u32`. The only concurrent writer of these bytes is the journal writer
    // (maybe in another process through a shared map), which stores them with an atomic
    // release store; every access here is an atomic load.
    let atomic = unsafe { &*word.as_ptr().cast::<AtomicU32>() };
    atomic.load(Ordering::Acquire)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// The CRC of a record's covered bytes.
fn crc<const SLOT: usize>(record: &[u8]) -> u32 {
    crc32c::crc32c(&record[..crc_at(SLOT)])
}

/// Checks one record read from a map. `record` is 64-aligned and `record_size(SLOT)`
/// bytes long; `expected_seq` is what its position implies.
///
/// Returns `Empty` when the commit word is zero; the bytes before it are not read then (a
/// live writer may be filling them).
pub(crate) fn check<const SLOT: usize>(
    record: &[u8],
    expected_seq: u64,
) -> Result<State<'_, SLOT>, Damage> {
    let commit = commit_word::<SLOT>(record);
    if commit == 0 {
        return Ok(State::Empty);
    }
    if commit != COMMITTED && commit != TOMBSTONE {
        return Err(Damage::BadCommitWord(commit));
    }
    let stored = u32_at(record, crc_at(SLOT));
    let computed = crc::<SLOT>(record);
    if stored != computed {
        return Err(Damage::BadCrc { stored, computed });
    }
    let seq = u64_at(record, SLOT);
    if seq != expected_seq {
        return Err(Damage::WrongSeq {
            expected: expected_seq,
            found: seq,
        });
    }
    if commit == TOMBSTONE {
        return Ok(State::Tombstone);
    }
    let event = Event::<SLOT>::view(&record[..SLOT]).map_err(Damage::BadEvent)?;
    Ok(State::Event(event, u64_at(record, SLOT + 8)))
}

/// Writes a record into `dst` (zeros, 64-aligned, `record_size(SLOT)` bytes): the slot as
/// bytes for outside the process, the trailer, the CRC, and last the commit word.
pub(crate) fn write<const SLOT: usize>(
    dst: &mut [u8],
    event: &Event<SLOT>,
    seq: u64,
    watermark: u64,
) {
    event.write_foreign(&mut dst[..SLOT]);
    fill_trailer::<SLOT>(dst, seq, watermark);
    publish_commit::<SLOT>(dst, COMMITTED);
}

/// Writes a tombstone for `seq` into `dst`: a zero slot, valid CRC, the tombstone word.
pub(crate) fn write_tombstone<const SLOT: usize>(dst: &mut [u8], seq: u64) {
    dst.fill(0);
    fill_trailer::<SLOT>(dst, seq, 0);
    publish_commit::<SLOT>(dst, TOMBSTONE);
}

fn fill_trailer<const SLOT: usize>(dst: &mut [u8], seq: u64, watermark: u64) {
    dst[SLOT..SLOT + 8].copy_from_slice(&seq.to_le_bytes());
    dst[SLOT + 8..SLOT + 16].copy_from_slice(&watermark.to_le_bytes());
    dst[SLOT + 16..crc_at(SLOT)].fill(0);
    let c = crc::<SLOT>(dst);
    dst[crc_at(SLOT)..crc_at(SLOT) + 4].copy_from_slice(&c.to_le_bytes());
}

fn publish_commit<const SLOT: usize>(dst: &mut [u8], word: u32) {
    let at = &mut dst[commit_at(SLOT)..commit_at(SLOT) + 4];
    // SAFETY: `at` is 4 bytes at offset SLOT + 60 of a 64-aligned record, so aligned for
    // `AtomicU32` (same size and validity as `u32`); we hold the only `&mut` to it in this
    // process. Readers (other threads through their own maps, other processes) load it
    // atomically; the release store orders every byte written above before it.
    let atomic = unsafe { &*at.as_mut_ptr().cast::<AtomicU32>() };
    atomic.store(word, Ordering::Release);
}

/// Whether every byte is zero (the check behind "a torn tail is followed only by zeros").
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: `u64` has no invalid bit patterns and `align_to` only puts in `words`
        // the part of `bytes` that is aligned for it; the result borrows `bytes`.
        unsafe { bytes.align_to::<u64>() }
    };
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::EventType;

    #[repr(C, align(64))]
    struct Aligned([u8; 320]);

    #[test]
    fn a_written_record_checks_out_and_any_flipped_bit_is_caught() {
        let e: Event = Event::new(EventType::AGENT_TASK)
            .with_payload(&42u64)
            .unwrap();
        let mut buf = Aligned([0; 320]);
        write::<256>(&mut buf.0, &e, 7, 1234);
        match check::<256>(&buf.0, 7).unwrap() {
            State::Event(ev, wm) => {
                assert_eq!(wm, 1234);
                assert_eq!(*ev.payload::<u64>().unwrap(), 42);
            }
            other => panic!("expected an event, got {other:?}"),
        }
        assert_eq!(
            check::<256>(&buf.0, 8),
            Err(Damage::WrongSeq {
                expected: 8,
                found: 7
            })
        );
        for bit in [0usize, 8 * 100, 8 * 256 + 3, 8 * 300, 8 * 318] {
            let mut b = Aligned(buf.0);
            b.0[bit / 8] ^= 1 << (bit % 8);
            assert!(check::<256>(&b.0, 7).is_err(), "bit {bit} flip not caught");
        }
    }

    #[test]
    fn zero_commit_is_empty_and_tombstones_check_out() {
        let mut buf = Aligned([0; 320]);
        assert_eq!(check::<256>(&buf.0, 1), Ok(State::Empty));
        write_tombstone::<256>(&mut buf.0, 5);
        assert_eq!(check::<256>(&buf.0, 5), Ok(State::Tombstone));
        assert!(!all_zero(&buf.0));
        assert!(all_zero(&[0u8; 1000][3..]));
    }

    #[test]
    fn the_local_flag_never_reaches_the_record() {
        let e: Event = Event::new(EventType::AGENT_TASK)
            .with_payload(&1u32)
            .unwrap();
        let mut buf = Aligned([0; 320]);
        write::<256>(&mut buf.0, &e, 1, 0);
        // `view` refuses the local flag, so a successful check proves it was cleared.
        assert!(matches!(check::<256>(&buf.0, 1), Ok(State::Event(..))));
    }
}
