//! A segment file: a header, a fixed number of records, room for a footer. The whole file
//! is preallocated when it is created and never changes size afterwards.
//!
//! ```text
//!  0      64                                   64 + capacity * record   + 256
//!  | header | record 0 | record 1 | ... | record capacity-1 | footer |
//! ```
//!
//! Header: magic "DNJSEG01", version, slot size, record size, capacity, first sequence
//! number, creation time, then its CRC-32C in the last 4 of its 64 bytes.
//!
//! Why preallocate with `fallocate`: a store into a hole of a sparse, memory-mapped file
//! must allocate a block at page-fault time, and on a full disk the kernel can only answer
//! with SIGBUS, which kills the process. With the blocks allocated up front, a full disk
//! is a typed error ([`JournalError::NoSpace`]) at segment creation, before anything is
//! written. A mapped file is never shrunk either (a shrink under a map is SIGBUS too): a
//! torn tail is zeroed in place, and a segment is only ever deleted whole, which leaves
//! existing maps valid.
//!
//! Creation is atomic: the file is built as `NAME.tmp` (preallocated, header written,
//! synced when the policy syncs) and renamed; recovery deletes leftover `.tmp` files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{Damage, JournalError};
use super::footer::{Summary, FOOTER_SIZE};
use super::record::record_size;

/// Bytes of the segment header.
pub const HEADER_SIZE: usize = 64;
const MAGIC: [u8; 8] = *b"DNJSEG01";
const VERSION: u32 = 1;
/// The file name extension of a segment.
pub(crate) const EXT: &str = "seg";

/// A segment's geometry and identity, as in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Slot size of its events.
    pub slot: usize,
    /// Records it has room for.
    pub capacity: u64,
    /// Sequence number of its first record.
    pub first_seq: u64,
    /// Wall-clock creation time, ns since the Unix epoch.
    pub created_unix_ns: u64,
}

impl SegmentHeader {
    /// Bytes of one record.
    pub fn record_size(&self) -> usize {
        record_size(self.slot)
    }
    /// Byte offset of record `i`.
    pub fn record_offset(&self, i: u64) -> usize {
        HEADER_SIZE + i as usize * self.record_size()
    }
    /// Byte offset of the footer.
    pub fn footer_offset(&self) -> usize {
        self.record_offset(self.capacity)
    }
    /// The file's length.
    pub fn file_len(&self) -> u64 {
        (self.footer_offset() + FOOTER_SIZE) as u64
    }

    /// The header bytes.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(self.slot as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(self.record_size() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(self.capacity as u32).to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_unix_ns.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads a header; `None` if anything in it is wrong (magic, version, CRC, sizes).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_SIZE || b[..8] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(60) != crc32c::crc32c(&b[..60]) || u32_at(8) != VERSION {
            return None;
        }
        let header = SegmentHeader {
            slot: u32_at(12) as usize,
            capacity: u64::from(u32_at(20)),
            first_seq: u64_at(24),
            created_unix_ns: u64_at(32),
        };
        let sane = header.slot % 64 == 0
            && header.slot >= 128
            && u32_at(16) as usize == header.record_size()
            && header.capacity > 0
            && header.first_seq > 0
            // Room for any count after it without overflow.
            && header.first_seq < 1 << 62;
        sane.then_some(header)
    }
}

/// The file name of the segment whose first record is `first_seq`: zero-padded so that
/// names sort in sequence order.
pub(crate) fn file_name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.{EXT}"))
}

/// The segments in `dir`, as (first seq from the name, path), in sequence order. Leftover
/// `.tmp` files of an interrupted creation are removed (only the lock holder calls this).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    list_impl(dir, true)
}

/// As [`list`], for a reader: changes nothing.
pub(crate) fn list_readonly(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    list_impl(dir, false)
}

fn list_impl(dir: &Path, clean: bool) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io("read dir", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io("read dir", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if clean && name.ends_with(".tmp") && name.contains(&format!(".{EXT}")) {
            // An interrupted creation: never renamed, so never mapped by anyone.
            std::fs::remove_file(&path).map_err(|e| JournalError::io("remove", &path, e))?;
            continue;
        }
        let Some(stem) = name.strip_suffix(&format!(".{EXT}")) else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and checks the header of the segment at `path`.
pub(crate) fn read_header(
    file: &File,
    path: &Path,
    expect_first: u64,
) -> Result<SegmentHeader, JournalError> {
    let mut b = [0u8; HEADER_SIZE];
    let len = file
        .metadata()
        .map_err(|e| JournalError::io("stat", path, e))?
        .len();
    let bad = || JournalError::Corrupt {
        path: path.to_owned(),
        offset: 0,
        seq: expect_first,
        damage: Damage::BadHeader,
    };
    file.read_exact_at(&mut b, 0).map_err(|_| bad())?;
    let header = SegmentHeader::decode(&b).ok_or_else(bad)?;
    if header.first_seq != expect_first || header.file_len() != len {
        return Err(bad());
    }
    Ok(header)
}

/// Reads the footer of a segment; `None` if it is not sealed (or the footer is damaged).
pub(crate) fn read_footer(
    file: &File,
    path: &Path,
    header: &SegmentHeader,
) -> Result<Option<Summary>, JournalError> {
    let mut b = [0u8; FOOTER_SIZE];
    file.read_exact_at(&mut b, header.footer_offset() as u64)
        .map_err(|e| JournalError::io("read footer", path, e))?;
    Ok(Summary::decode(&b))
}

/// A segment built under its temporary name (preallocated, header written, synced when
/// the policy syncs), not yet visible to recovery or readers: see [`publish`].
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The temporary name.
    pub tmp: PathBuf,
    /// The name it gets when published.
    pub path: PathBuf,
    /// The open file.
    pub file: File,
}

/// Builds a segment under its temporary name (see the module docs).
pub(crate) fn prepare(
    dir: &Path,
    header: &SegmentHeader,
    sync: bool,
) -> Result<Prepared, JournalError> {
    let path = file_name(dir, header.first_seq);
    let tmp = path.with_extension(format!("{EXT}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| JournalError::io("create", &tmp, e))?;
    let result = (|| {
        preallocate(&file, &tmp, header.file_len())?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| JournalError::io("write header", &tmp, e))?;
        if sync {
            file.sync_all()
                .map_err(|e| JournalError::io("sync", &tmp, e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Prepared { tmp, path, file }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Gives a prepared segment its name (an atomic rename), and makes the name durable when
/// the policy syncs. Maps of the file stay valid.
pub(crate) fn publish(tmp: &Path, path: &Path, sync: bool) -> Result<(), JournalError> {
    std::fs::rename(tmp, path).map_err(|e| JournalError::io("rename", tmp, e))?;
    if sync {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Creates a preallocated segment atomically: [`prepare`] then [`publish`] (for tests).
#[cfg(test)]
pub(crate) fn create(
    dir: &Path,
    header: &SegmentHeader,
    sync: bool,
) -> Result<PathBuf, JournalError> {
    let p = prepare(dir, header, sync)?;
    if let Err(e) = publish(&p.tmp, &p.path, sync) {
        let _ = std::fs::remove_file(&p.tmp);
        return Err(e);
    }
    Ok(p.path)
}

/// Makes a directory's entries (a created or removed segment) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io("sync dir", dir, e))
}

/// Allocates every block of the file (no holes), so stores through a map never fault for
/// space. Falls back to writing zeros where `fallocate` is not supported.
fn preallocate(file: &File, path: &Path, len: u64) -> Result<(), JournalError> {
    let no_space = || JournalError::NoSpace {
        path: path.to_owned(),
        bytes: len,
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(off_len) = libc::off_t::try_from(len) else {
            return Err(JournalError::Config("segment too large for this platform"));
        };
        // SAFETY: `fallocate` on an fd we own and keep open for the call; mode 0 allocates
        // (and zeroes) the range [0, len) and extends the file size to `len`. No memory
        // is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, off_len) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSPC) => return Err(no_space()),
            Some(libc::EOPNOTSUPP) => {}
            _ => return Err(JournalError::io("fallocate", path, err)),
        }
    }
    // Fallback: write real zeros, block by block.
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                no_space()
            } else {
                JournalError::io("write zeros", path, e)
            }
        })?;
        at += n as u64;
    }
    Ok(())
}

/// Wall-clock now, ns since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_refuses_damage() {
        let h = SegmentHeader {
            slot: 256,
            capacity: 100,
            first_seq: 5,
            created_unix_ns: 9,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Some(h));
        assert_eq!(h.file_len(), 64 + 100 * 320 + 256);
        for i in [0, 9, 13, 25, 61] {
            let mut c = b;
            c[i] ^= 1;
            assert_eq!(SegmentHeader::decode(&c), None, "byte {i}");
        }
    }

    #[test]
    fn created_segments_are_fully_allocated_and_listed_in_order() {
        let dir = std::env::temp_dir().join(format!("dnj-seg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for first in [101, 1] {
            let h = SegmentHeader {
                slot: 256,
                capacity: 100,
                first_seq: first,
                created_unix_ns: 0,
            };
            let p = create(&dir, &h, true).unwrap();
            let f = File::open(&p).unwrap();
            assert_eq!(read_header(&f, &p, first).unwrap(), h);
            assert_eq!(read_footer(&f, &p, &h).unwrap(), None);
            use std::os::unix::fs::MetadataExt;
            let md = f.metadata().unwrap();
            assert!(md.blocks() * 512 >= md.len(), "sparse file: {md:?}");
        }
        std::fs::write(dir.join("00000000000000000201.seg.tmp"), b"x").unwrap();
        let listed: Vec<u64> = list(&dir).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(listed, vec![1, 101]);
        assert!(!dir.join("00000000000000000201.seg.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
