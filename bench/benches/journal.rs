//! The journal (feature `journal`): append rate under each durability policy, replay rate
//! from the page cache, and in the same run the disk's own sequential write of the same
//! bytes (320-byte records: the 256-byte slot and the 64-byte trailer), through a 1 MiB
//! `BufWriter`, as the baseline.
//!
//! - `append/os`, `append/batch` (fdatasync every 1,000 events or 1 ms), `append/always`
//!   (fdatasync every event; fewer iterations, it is bound by the device).
//! - `file_write/bufwriter`: `write_all` of the same 320 bytes per event.
//! - `replay/in_place`: `JournalReader::records` over a 200,000-record journal (CRC-32C
//!   and header check per record, one field read).
//! - Append latency: before the criterion groups, 1,000,000 appends under `Os` are timed
//!   one by one into an HDR histogram; p50, p99, p99.9 and max go to stderr (the timer
//!   itself, two `Instant::now` calls, is included). Then the rate on prepared segments:
//!   the rest of the open segment and the whole next one, prefaulted beforehand, timed as
//!   a whole (the append path's own cost, without the kernel's page supply).
//!
//! - `recovery/1GiB`: `Journal::open` (recovery; the drop is not timed) on a journal of 1 GiB (3,355,443
//!   records: 51 sealed segments trusted through their footers, and the open segment
//!   scanned, 13,107 records), the target being 100 ms.
//! - `seek_time/1GiB`: `JournalReader::seek_time` on the same journal (binary search over
//!   footers, then record watermarks).
//!
//! Segments are 65,536 records; retention keeps the other bench directories under 512 MiB.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dreamnet_bus::journal::{
    Durability, Journal, JournalConfig, JournalReader, Retention, Selection,
};
use dreamnet_bus::{Event, EventType};

const RECORD: usize = 320;

fn dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-journal-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn journal(dir: &Path, durability: Durability) -> Journal {
    Journal::open(
        JournalConfig::new(dir)
            .durability(durability)
            .retention(Retention {
                max_bytes: Some(512 << 20),
                max_age: None,
            }),
    )
    .expect("open journal")
}

fn events() -> Vec<Event> {
    (0..64u64)
        .map(|i| {
            Event::new(EventType::AGENT_STATUS)
                .with_correlation_id(i)
                .with_payload(&common::Task::new(i))
                .expect("payload fits")
        })
        .collect()
}

fn latency() {
    let d = dir("latency");
    let mut j = journal(&d, Durability::Os);
    let evs = events();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    for i in 0..100_000 {
        j.append(&evs[i % 64]).expect("append");
    }
    let t0 = Instant::now();
    for i in 0..1_000_000 {
        let t = Instant::now();
        j.append(&evs[i % 64]).expect("append");
        let _ = h.record(t.elapsed().as_nanos() as u64);
    }
    let total = t0.elapsed();
    eprintln!(
        "journal append latency (Os, 1,000,000 appends, timer included): p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns; {:.2} M appends/s",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        1e6 / total.as_secs_f64() / 1e6,
    );
    // The append path's own cost: appends into segments already prepared (preallocated,
    // mapped, prefaulted by the helper thread), timed as a whole: the rest of the open
    // segment and all of the next one. The sustained rate above is bounded instead by how
    // fast the kernel supplies fresh page-cache pages (the helper's fallocate + prefault),
    // the same bound as `file_write/bufwriter`'s.
    j.prepare_next().expect("prepare");
    let per_segment = u64::from(JournalConfig::DEFAULT_SEGMENT_RECORDS);
    let n = per_segment - (j.next_seq() - 1) % per_segment + per_segment;
    let t = Instant::now();
    for i in 0..n as usize {
        j.append(&evs[i % 64]).expect("append");
    }
    let burst = t.elapsed();
    eprintln!(
        "journal append rate on prepared segments (Os, {n} appends, one rollover): {:.2} M appends/s, {:.1} ns each",
        n as f64 / burst.as_secs_f64() / 1e6,
        burst.as_nanos() as f64 / n as f64,
    );
    drop(j);
    let _ = std::fs::remove_dir_all(&d);
}

fn append(c: &mut Criterion) {
    latency();
    let evs = events();
    let mut g = c.benchmark_group("journal");
    g.throughput(Throughput::Elements(1));
    for (name, durability) in [
        ("append/os", Durability::Os),
        (
            "append/batch",
            Durability::Batch {
                every_events: 1_000,
                every: Duration::from_millis(1),
            },
        ),
    ] {
        let d = dir(name.replace('/', "-").as_str());
        let mut j = journal(&d, durability);
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                black_box(j.append(&evs[i % 64]).expect("append"))
            })
        });
        drop(j);
        let _ = std::fs::remove_dir_all(&d);
    }
    {
        let d = dir("always");
        let mut j = journal(&d, Durability::Always);
        let mut i = 0usize;
        g.bench_function("append/always", |b| {
            b.iter(|| {
                i += 1;
                black_box(j.append(&evs[i % 64]).expect("append"))
            })
        });
        drop(j);
        let _ = std::fs::remove_dir_all(&d);
    }
    {
        let d = dir("file");
        std::fs::create_dir_all(&d).expect("dir");
        let path = d.join("plain.bin");
        let mut rotate = 0u64;
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path).expect("create"),
        );
        let mut record = [0u8; RECORD];
        let mut i = 0usize;
        g.bench_function("file_write/bufwriter", |b| {
            b.iter(|| {
                i += 1;
                record[..256].copy_from_slice(evs[i % 64].as_bytes());
                file.write_all(&record).expect("write");
                rotate += 1;
                // Keep the file bounded like the journal's retention does.
                if rotate == 1 << 20 {
                    rotate = 0;
                    file.flush().expect("flush");
                    file = std::io::BufWriter::with_capacity(
                        1 << 20,
                        std::fs::File::create(&path).expect("create"),
                    );
                }
            })
        });
        drop(file);
        let _ = std::fs::remove_dir_all(&d);
    }
    {
        let d = dir("replay");
        let n = 200_000u64;
        {
            let mut j = journal(&d, Durability::Os);
            for i in 0..n as usize {
                j.append(&evs[i % 64]).expect("append");
            }
        }
        let reader: JournalReader = JournalReader::open(&d).expect("reader");
        let all = Selection::all();
        g.throughput(Throughput::Elements(n));
        g.bench_function("replay/in_place", |b| {
            b.iter(|| {
                let mut sum = 0u64;
                for r in reader.records(&all) {
                    sum = sum.wrapping_add(r.expect("record").event().header().correlation_id());
                }
                black_box(sum)
            })
        });
        drop(reader);
        let _ = std::fs::remove_dir_all(&d);
    }
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let d = dir("recovery");
    let records = (1u64 << 30) / RECORD as u64;
    {
        let evs = events();
        let mut j: Journal = Journal::open(JournalConfig::new(&d)).expect("open");
        for i in 0..records {
            // A timestamp every 100 ns (header bytes 8..16; a publisher would stamp it).
            let mut bytes = *evs[i as usize % 64].as_bytes();
            bytes[8..16].copy_from_slice(&(i * 100).to_ne_bytes());
            j.append(&Event::from_bytes(&bytes).expect("valid"))
                .expect("append");
        }
    }
    let mut g = c.benchmark_group("journal");
    // Only the open is timed: dropping the journal waits for the helper thread that
    // prepares the next segment (preallocate and prefault 20 MiB, ~40 ms here).
    g.bench_function("recovery/1GiB", |b| {
        b.iter_with_large_drop(|| {
            let j: Journal = Journal::open(JournalConfig::new(&d)).expect("recover");
            assert_eq!(j.next_seq(), records + 1);
            j
        })
    });
    let reader: JournalReader = JournalReader::open(&d).expect("reader");
    let mut t = 0u64;
    g.bench_function("seek_time/1GiB", |b| {
        b.iter(|| {
            t = t.wrapping_add(0x9e37_79b9_7f4a_7c15);
            black_box(reader.seek_time(t % (records * 100)).expect("seek"))
        })
    });
    g.finish();
    drop(reader);
    let _ = std::fs::remove_dir_all(&d);
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = append, recovery
}
criterion_main!(benches);
