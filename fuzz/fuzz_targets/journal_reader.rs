//! The journal's segment reader, recovery, verify and repair on damaged files.
//!
//! A small journal is written for real (a few segments of a few records, so there are
//! sealed segments with footers and an open one), then its files are damaged: bit flips,
//! overwrites with arbitrary bytes, zeroed ranges, truncations, whole files replaced with
//! arbitrary bytes, files removed. Then:
//!
//! - nothing panics (reader, `verify`, recovery via `Journal::open`, `repair`);
//! - the model: every record a reader returns is, in the file as it is on disk, a record
//!   whose commit word says committed, whose stored CRC-32C matches its bytes, whose stored
//!   sequence number is the one returned, and whose slot bytes are the `&Event` returned;
//!   sequence numbers rise strictly;
//! - undamaged journals read back exactly what was written;
//! - after a successful `repair`, a reader returns no error at all.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arbitrary::Arbitrary;
use dreamnet_bus::journal::layout::{record_size, COMMITTED, SEGMENT_HEADER_SIZE};
use dreamnet_bus::journal::{repair, verify, Journal, JournalConfig, JournalReader, Selection};
use dreamnet_bus::{Event, EventType};
use libfuzzer_sys::fuzz_target;

const SLOT: usize = 256;

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip {
        file: u8,
        offset: u32,
        xor: u8,
    },
    Overwrite {
        file: u8,
        offset: u32,
        bytes: Vec<u8>,
    },
    Zero {
        file: u8,
        offset: u32,
        len: u16,
    },
    Truncate {
        file: u8,
        len: u32,
    },
    Replace {
        file: u8,
        bytes: Vec<u8>,
    },
    Remove {
        file: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: u8,
    segment_records: u8,
    damage: Vec<Damage>,
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "seg"));
    v.sort();
    v
}

fn pick(files: &[PathBuf], i: u8) -> Option<&PathBuf> {
    (!files.is_empty()).then(|| &files[usize::from(i) % files.len()])
}

fn apply(dir: &Path, d: &Damage) {
    let files = segment_files(dir);
    let edit = |file: u8, f: &mut dyn FnMut(&mut Vec<u8>)| {
        if let Some(p) = pick(&files, file) {
            let mut bytes = std::fs::read(p).unwrap();
            f(&mut bytes);
            std::fs::write(p, &bytes).unwrap();
        }
    };
    match d {
        Damage::Flip { file, offset, xor } => edit(*file, &mut |b| {
            if !b.is_empty() {
                let i = *offset as usize % b.len();
                b[i] ^= *xor;
            }
        }),
        Damage::Overwrite {
            file,
            offset,
            bytes,
        } => edit(*file, &mut |b| {
            if !b.is_empty() {
                let at = *offset as usize % b.len();
                let n = bytes.len().min(b.len() - at);
                b[at..at + n].copy_from_slice(&bytes[..n]);
            }
        }),
        Damage::Zero { file, offset, len } => edit(*file, &mut |b| {
            if !b.is_empty() {
                let at = *offset as usize % b.len();
                let n = usize::from(*len).min(b.len() - at);
                b[at..at + n].fill(0);
            }
        }),
        Damage::Truncate { file, len } => edit(*file, &mut |b| {
            let n = *len as usize % (b.len() + 1);
            b.truncate(n);
        }),
        Damage::Replace { file, bytes } => edit(*file, &mut |b| *b = bytes.clone()),
        Damage::Remove { file } => {
            if let Some(p) = pick(&files, *file) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
}

fn event(i: u64) -> Event {
    Event::new(EventType::AGENT_STATUS)
        .with_correlation_id(i.wrapping_mul(0x9e37_79b9))
        .with_payload(&i)
        .unwrap()
}

/// Reads everything; checks each returned record against the file on disk. Returns the
/// seqs read and whether an error was returned.
fn read_all(dir: &Path) -> (Vec<u64>, bool) {
    let Ok(reader) = JournalReader::<SLOT>::open(dir) else {
        return (Vec::new(), true);
    };
    let files: Vec<(u64, Vec<u8>)> = segment_files(dir)
        .iter()
        .filter_map(|p| {
            let first = p.file_stem()?.to_str()?.parse().ok()?;
            Some((first, std::fs::read(p).ok()?))
        })
        .collect();
    let mut seqs = Vec::new();
    let mut failed = false;
    for r in reader.records(&Selection::all()) {
        let Ok(r) = r else {
            failed = true;
            continue;
        };
        let seq = r.seq();
        assert!(seqs.last().is_none_or(|&l| l < seq), "seqs must rise");
        let (first, bytes) = files
            .iter()
            .rev()
            .find(|(f, _)| *f <= seq)
            .expect("a record from a segment that exists");
        let at = SEGMENT_HEADER_SIZE + (seq - first) as usize * record_size(SLOT);
        let rec = &bytes[at..at + record_size(SLOT)];
        let word = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
        assert_eq!(word(SLOT + 60), COMMITTED, "seq {seq}: commit word");
        assert_eq!(
            word(SLOT + 56),
            crc32c::crc32c(&rec[..SLOT + 56]),
            "seq {seq}: CRC"
        );
        assert_eq!(
            u64::from_le_bytes(rec[SLOT..SLOT + 8].try_into().unwrap()),
            seq
        );
        assert_eq!(
            &rec[..SLOT],
            r.event().as_bytes().as_slice(),
            "seq {seq}: bytes"
        );
        // Reading the payload validates it; it must not panic whatever it holds.
        let _ = r.event().payload::<u64>();
        seqs.push(seq);
    }
    (seqs, failed)
}

fuzz_target!(|input: Input| {
    static N: AtomicU64 = AtomicU64::new(0);
    // tmpfs when there is one: the target creates and maps dozens of small files a run.
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "fuzz-journal-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let records = u64::from(input.records % 48);
    let per_segment = u32::from(input.segment_records % 12) + 1;
    let config = || JournalConfig::new(&dir).segment_records(per_segment);
    {
        let mut j: Journal<SLOT> = Journal::open(config()).unwrap();
        for i in 1..=records {
            assert_eq!(j.append(&event(i)).unwrap(), i);
        }
    }
    if input.damage.is_empty() {
        let (seqs, failed) = read_all(&dir);
        assert!(!failed);
        assert_eq!(seqs, (1..=records).collect::<Vec<_>>());
    }
    for d in input.damage.iter().take(8) {
        apply(&dir, d);
    }
    read_all(&dir);
    let _ = verify::<SLOT>(&dir, true);
    let _ = verify::<SLOT>(&dir, false);
    if let Ok(j) = Journal::<SLOT>::open(config()) {
        drop(j);
        read_all(&dir);
    }
    if repair::<SLOT>(&dir).is_ok() {
        let (_, failed) = read_all(&dir);
        assert!(!failed, "a repaired journal reads without errors");
    }
    let _ = std::fs::remove_dir_all(&dir);
});
