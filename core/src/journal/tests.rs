//! Tests of the journal with real files: round trips, rollover and footers, recovery of a
//! torn tail, corruption as typed errors, repair, retention, seek by time, tailing a live
//! writer, durability waits, and a proptest of replay selection against a model.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::event::Event;
use crate::names::{AgentId, EventType};

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "dnj-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An event with every field a selection looks at.
fn ev(t: u16, src: u32, dst: Option<u32>, corr: u64, ts: u64) -> Event {
    let mut e: Event = Event::new(EventType(t)).with_correlation_id(corr);
    e.set_destination(dst.map(AgentId));
    e.stamp(ts + 1, AgentId(src), ts);
    e
}

fn open(dir: &TempDir, records: u32) -> Journal {
    Journal::open(JournalConfig::new(&dir.0).segment_records(records)).unwrap()
}

fn seqs(reader: &JournalReader, sel: &Selection) -> Vec<u64> {
    reader.records(sel).map(|r| r.unwrap().seq()).collect()
}

fn segment_files(dir: &TempDir) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn record_offset(i: u64) -> u64 {
    (layout::SEGMENT_HEADER_SIZE + i as usize * layout::record_size(256)) as u64
}

fn flip(path: &PathBuf, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn appends_round_trip_across_segments_and_reopen_continues() {
    let dir = TempDir::new("rt");
    {
        let mut j = open(&dir, 10);
        for i in 0..25u64 {
            let e = ev(3, 1, None, i, i * 10).with_payload(&i).unwrap();
            assert_eq!(j.append(&e).unwrap(), i + 1);
        }
        assert_eq!(j.durable_seq(), 25);
    }
    assert_eq!(segment_files(&dir).len(), 3);
    let mut j = open(&dir, 10);
    assert!(j.recovered().is_empty());
    assert_eq!(j.next_seq(), 26);
    j.append(&ev(3, 1, None, 99, 999)).unwrap();
    drop(j);
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    let all: Vec<_> = r.records(&Selection::all()).map(|x| x.unwrap()).collect();
    assert_eq!(all.len(), 26);
    for (i, rec) in all.iter().enumerate().take(25) {
        assert_eq!(rec.seq(), i as u64 + 1);
        // The payload is validated (never trusted as local) and reads back.
        assert_eq!(*rec.event().payload::<u64>().unwrap(), i as u64);
        let inside = r.segments.iter().any(|s| {
            s.map
                .as_ptr_range()
                .contains(&(rec.event() as *const Event as *const u8))
        });
        assert!(inside, "record {i} was copied, not read in place");
    }
    assert_eq!(all[25].event().header().correlation_id(), 99);
    let scan = verify::<256>(&dir.0, true).unwrap();
    assert_eq!(scan.records(), 26);
    assert_eq!(scan.segments.iter().filter(|s| s.sealed).count(), 2);
}

#[test]
fn a_torn_tail_is_cut_and_the_journal_goes_on() {
    let dir = TempDir::new("torn");
    {
        let mut j = open(&dir, 100);
        for i in 0..5 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let seg = segment_files(&dir)[0].clone();
    // Tear record 4 (seq 5): damage its body; only zeros follow.
    flip(&seg, record_offset(4) + 40);
    assert!(matches!(
        JournalReader::<256>::open(&dir.0)
            .unwrap()
            .records(&Selection::all())
            .nth(4),
        Some(Err(JournalError::Corrupt { seq: 5, .. }))
    ));
    let scan = verify::<256>(&dir.0, false).unwrap();
    assert_eq!(
        scan.fixes,
        vec![Fix::CutTornTail {
            path: seg.clone(),
            seq: 5
        }]
    );
    let mut j = open(&dir, 100);
    assert_eq!(j.recovered(), &[Fix::CutTornTail { path: seg, seq: 5 }]);
    assert_eq!(j.next_seq(), 5);
    j.append(&ev(2, 1, None, 0, 9)).unwrap();
    drop(j);
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    assert_eq!(seqs(&r, &Selection::all()), vec![1, 2, 3, 4, 5]);
}

/// Found by the kill -9 test: a crash after the slot was copied but before the commit
/// word leaves a record with bytes and a zero commit word. That is a torn tail, not a hole.
#[test]
fn an_uncommitted_partial_record_at_the_end_is_a_torn_tail() {
    let dir = TempDir::new("partial");
    {
        let mut j = open(&dir, 100);
        for i in 0..3 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let seg = segment_files(&dir)[0].clone();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[7; 100], record_offset(3)).unwrap();
    }
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    assert_eq!(seqs(&r, &Selection::all()), vec![1, 2, 3]);
    let j = open(&dir, 100);
    assert_eq!(j.recovered(), &[Fix::CutTornTail { path: seg, seq: 4 }]);
    assert_eq!(j.next_seq(), 4);
}

#[test]
fn corruption_in_the_middle_is_an_error_until_repaired_into_a_tombstone() {
    let dir = TempDir::new("corrupt");
    {
        let mut j = open(&dir, 100);
        for i in 0..10 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let seg = segment_files(&dir)[0].clone();
    flip(&seg, record_offset(3) + 7);
    let err = Journal::<256>::open(JournalConfig::new(&dir.0).segment_records(100)).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Corrupt {
                seq: 4,
                damage: Damage::BadCrc { .. },
                ..
            }
        ),
        "{err}"
    );
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    let got: Vec<_> = r.records(&Selection::all()).collect();
    assert_eq!(
        got.len(),
        4,
        "three good records, then the error, then nothing"
    );
    assert!(got[3].is_err());
    drop(r);
    let scan = repair::<256>(&dir.0).unwrap();
    assert!(matches!(
        scan.fixes.as_slice(),
        [Fix::Tombstoned {
            seq: 4,
            damage: Damage::BadCrc { .. },
            ..
        }]
    ));
    let j = open(&dir, 100);
    assert_eq!(j.next_seq(), 11);
    drop(j);
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    let mut it = r.records(&Selection::all());
    let got: Vec<u64> = it.by_ref().map(|x| x.unwrap().seq()).collect();
    assert_eq!(got, vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert_eq!(it.tombstones(), 1);
}

#[test]
fn a_damaged_footer_or_sealed_record_is_caught_and_repair_reseals() {
    let dir = TempDir::new("footer");
    {
        let mut j = open(&dir, 4);
        for i in 0..10 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let segs = segment_files(&dir);
    let footer_at = record_offset(4) + 20;
    flip(&segs[0], footer_at);
    let err = Journal::<256>::open(JournalConfig::new(&dir.0).segment_records(4)).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Corrupt {
                damage: Damage::Unsealed,
                ..
            }
        ),
        "{err}"
    );
    let scan = repair::<256>(&dir.0).unwrap();
    assert_eq!(
        scan.fixes,
        vec![Fix::Resealed {
            path: segs[0].clone()
        }]
    );
    assert_eq!(open(&dir, 4).next_seq(), 11);
    // A damaged record inside a sealed segment: recovery trusts the footer (it does not
    // read records), a deep verify and any reader catch it.
    flip(&segs[1], record_offset(1) + 3);
    assert_eq!(open(&dir, 4).next_seq(), 11);
    assert!(matches!(
        verify::<256>(&dir.0, true),
        Err(JournalError::Corrupt { seq: 6, .. })
    ));
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    assert!(r.records(&Selection::all()).any(|x| x.is_err()));
}

#[test]
fn a_hole_and_a_sequence_gap_are_errors() {
    let dir = TempDir::new("hole");
    {
        let mut j = open(&dir, 100);
        for i in 0..6 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let seg = segment_files(&dir)[0].clone();
    // Zero record 2's commit word: committed records follow an empty one.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        f.write_all_at(&[0; 4], record_offset(2) + 256 + 60)
            .unwrap();
    }
    assert!(matches!(
        verify::<256>(&dir.0, false),
        Err(JournalError::Corrupt {
            seq: 3,
            damage: Damage::Hole,
            ..
        })
    ));
    let gap = TempDir::new("gap");
    {
        let mut j = open(&gap, 4);
        for i in 0..12 {
            j.append(&ev(1, 1, None, 0, i)).unwrap();
        }
    }
    let segs = segment_files(&gap);
    std::fs::remove_file(&segs[1]).unwrap();
    let r: JournalReader = JournalReader::open(&gap.0).unwrap();
    let got: Vec<_> = r.records(&Selection::all()).collect();
    assert_eq!(got.len(), 5, "four records, then the gap as an error");
    assert!(matches!(
        got[4],
        Err(JournalError::Corrupt {
            damage: Damage::SeqGap {
                expected: 5,
                found: 9
            },
            ..
        })
    ));
    assert!(matches!(
        Journal::<256>::open(JournalConfig::new(&gap.0).segment_records(4)),
        Err(JournalError::Corrupt {
            damage: Damage::SeqGap {
                expected: 5,
                found: 9
            },
            ..
        })
    ));
}

#[test]
fn one_writer_per_directory_and_config_errors() {
    let dir = TempDir::new("lock");
    let _j = open(&dir, 8);
    assert!(matches!(
        Journal::<256>::open(JournalConfig::new(&dir.0)),
        Err(JournalError::Locked(_))
    ));
    assert!(matches!(
        repair::<256>(&dir.0),
        Err(JournalError::Locked(_))
    ));
    let other = TempDir::new("cfg");
    assert!(matches!(
        Journal::<256>::open(JournalConfig::new(&other.0).segment_records(0)),
        Err(JournalError::Config(_))
    ));
    assert!(matches!(
        Journal::<512>::open(JournalConfig::new(&dir.0)),
        Err(JournalError::Locked(_))
    ));
    assert!(matches!(
        JournalReader::<512>::open(&dir.0),
        Err(JournalError::SlotMismatch {
            expected: 512,
            found: 256
        })
    ));
}

#[test]
fn retention_by_size_deletes_oldest_sealed_segments() {
    let dir = TempDir::new("ret");
    let seg_bytes = (64 + 4 * 320 + 256) as u64;
    let mut j: Journal = Journal::open(JournalConfig::new(&dir.0).segment_records(4).retention(
        Retention {
            max_bytes: Some(3 * seg_bytes),
            max_age: None,
        },
    ))
    .unwrap();
    for i in 0..40 {
        j.append(&ev(1, 1, None, 0, i)).unwrap();
    }
    assert_eq!(segment_files(&dir).len(), 3);
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    // The open segment (37..=40, full, rolls on the next append) and two sealed ones.
    assert_eq!(r.first_seq(), 29);
    assert_eq!(seqs(&r, &Selection::all()), (29..=40).collect::<Vec<_>>());
    drop(j);
    let mut j: Journal = Journal::open(JournalConfig::new(&dir.0).segment_records(4).retention(
        Retention {
            max_bytes: None,
            max_age: Some(Duration::ZERO),
        },
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(j.enforce_retention().unwrap(), 2);
    assert_eq!(segment_files(&dir).len(), 1);
}

#[test]
fn a_reader_tails_a_live_writer_across_rollovers() {
    let dir = TempDir::new("tail");
    let mut j = open(&dir, 16);
    j.append(&ev(1, 1, None, 0, 0)).unwrap();
    let total = 5_000u64;
    let writer = std::thread::spawn(move || {
        for i in 1..total {
            j.append(&ev(1, 1, None, i, i)).unwrap();
            if i % 97 == 0 {
                std::thread::yield_now();
            }
        }
        j
    });
    let mut r: JournalReader = JournalReader::open(&dir.0).unwrap();
    let mut next = 1u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while next <= total && std::time::Instant::now() < deadline {
        let sel = Selection::all().from_seq(next);
        let mut records = r.records(&sel);
        for rec in records.by_ref() {
            let rec = rec.unwrap();
            assert_eq!(rec.seq(), next);
            assert_eq!(rec.event().header().correlation_id(), next - 1);
            next += 1;
        }
        assert_eq!(records.next_seq(), next, "where the tail resumes");
        drop(records);
        r.refresh().unwrap();
    }
    assert_eq!(next, total + 1);
    writer.join().unwrap();
}

#[test]
fn batch_and_always_move_the_durable_watermark_and_waiters_see_it() {
    let dir = TempDir::new("dur");
    let mut j: Journal = Journal::open(JournalConfig::new(&dir.0).segment_records(64).durability(
        Durability::Batch {
            every_events: 10,
            every: Duration::from_secs(3600),
        },
    ))
    .unwrap();
    let watch = j.durable_watch();
    for _ in 0..9 {
        j.append(&ev(1, 1, None, 0, 0)).unwrap();
    }
    assert_eq!(j.durable_seq(), 0);
    let w = watch.clone();
    let waiter = std::thread::spawn(move || w.wait_durable(10, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(10));
    j.append(&ev(1, 1, None, 0, 0)).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 10);
    j.append(&ev(1, 1, None, 0, 0)).unwrap();
    assert_eq!(
        j.sync_if_due().unwrap(),
        10,
        "the time limit has not passed"
    );
    assert_eq!(j.sync().unwrap(), 11);
    drop(j);
    let dir = TempDir::new("always");
    let mut j: Journal =
        Journal::open(JournalConfig::new(&dir.0).durability(Durability::Always)).unwrap();
    assert_eq!(j.append(&ev(1, 1, None, 0, 0)).unwrap(), 1);
    assert_eq!(j.durable_seq(), 1);
    j.close().unwrap();
    assert!(matches!(
        j.append(&ev(1, 1, None, 0, 0)),
        Err(JournalError::Closed)
    ));
    assert!(j
        .durable_watch()
        .wait_durable(2, Duration::from_secs(5))
        .is_err());
}

#[test]
fn seek_by_time_finds_the_first_possible_record() {
    let dir = TempDir::new("seek");
    let mut j = open(&dir, 8);
    // Timestamps mostly rising, with some out of order (drain order is not publish order).
    let ts: Vec<u64> = (0..100u64)
        .map(|i| i * 10 - if i % 7 == 3 { 25 } else { 0 })
        .collect();
    for t in &ts {
        j.append(&ev(1, 1, None, 0, *t)).unwrap();
    }
    let r: JournalReader = JournalReader::open(&dir.0).unwrap();
    for t in [0u64, 5, 15, 500, 985, 990, 2000] {
        let seq = r.seek_time(t).unwrap();
        // Every record before `seq` is older than t; the record at seq has watermark >= t.
        let mut wm = 0;
        let first = ts.iter().position(|x| {
            wm = wm.max(*x);
            wm >= t
        });
        assert_eq!(seq, first.map_or(101, |p| p as u64 + 1), "t = {t}");
    }
}

#[derive(Debug, Clone)]
struct Rec {
    t: u16,
    src: u32,
    dst: Option<u32>,
    corr: u64,
    ts: u64,
}

fn arb_rec() -> impl Strategy<Value = Rec> {
    (
        0u16..6,
        0u32..4,
        proptest::option::of(0u32..3),
        0u64..4,
        0u64..1000,
    )
        .prop_map(|(t, src, dst, corr, ts)| Rec {
            t,
            src,
            dst,
            corr,
            ts,
        })
}

/// A selection's parts: seq range, time range, types, source, destination, correlation.
type SelParts = (
    Option<(u64, u64)>,
    Option<(u64, u64)>,
    Vec<u16>,
    Option<u32>,
    Option<Option<u32>>,
    Option<u64>,
);

fn arb_sel() -> impl Strategy<Value = SelParts> {
    (
        proptest::option::of((1u64..120, 0u64..120)),
        proptest::option::of((0u64..1000, 0u64..1000)),
        proptest::collection::vec(0u16..6, 0..3),
        proptest::option::of(0u32..4),
        proptest::option::of(proptest::option::of(0u32..3)),
        proptest::option::of(0u64..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Replay selection over real segment files (small segments: footers decide which
    /// ones are skipped) returns exactly what a filter over the appended list returns.
    #[test]
    fn selection_matches_a_model(recs in proptest::collection::vec(arb_rec(), 0..120),
                                 seg in 1u32..20, (seqs_r, time_r, types, src, dst, corr) in arb_sel()) {
        let dir = TempDir::new("prop");
        let mut j = open(&dir, seg);
        for r in &recs {
            j.append(&ev(r.t, r.src, r.dst, r.corr, r.ts)).unwrap();
        }
        drop(j);
        let mut sel = Selection::all();
        if let Some((a, len)) = seqs_r { sel = sel.seqs(a..=a + len); }
        if let Some((a, len)) = time_r { sel = sel.time(a..=a + len); }
        for t in &types { sel = sel.of_type(EventType(*t)); }
        if let Some(s) = src { sel = sel.source(AgentId(s)); }
        if let Some(d) = dst { sel = sel.destination(d.map(AgentId)); }
        if let Some(c) = corr { sel = sel.correlation(c); }
        let model: Vec<u64> = recs.iter().enumerate().filter(|(i, r)| {
            let seq = *i as u64 + 1;
            seqs_r.is_none_or(|(a, len)| seq >= a && seq <= a + len)
                && time_r.is_none_or(|(a, len)| r.ts >= a && r.ts <= a + len)
                && (types.is_empty() || types.contains(&r.t))
                && src.is_none_or(|s| s == r.src)
                && dst.is_none_or(|d| d == r.dst)
                && corr.is_none_or(|c| c == r.corr)
        }).map(|(i, _)| i as u64 + 1).collect();
        let reader: JournalReader = JournalReader::open(&dir.0).unwrap();
        prop_assert_eq!(seqs(&reader, &sel), model);
    }
}
