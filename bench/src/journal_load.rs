//! `loadgen --journal DIR --durability os|batch|always`: the workload with a journal per
//! shard ([`dreamnet_bus::BusBuilder::journal`]) beside the same run without one, the
//! replay rate of what was journaled (read back in place from the page cache), and the
//! disk's own sequential write of the same bytes, in the same run.
//!
//! The journal lives in `DIR/bus` (one `shard-NN` directory per shard), emptied before each
//! run and bounded by retention; the disk baseline writes `DIR/baseline.bin` (removed
//! after).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dreamnet_bus::journal::{Durability, JournalConfig, JournalReader, Retention, Selection};

use crate::report::RunReport;

/// The journal of a run.
#[derive(Debug, Clone)]
pub struct JournalRun {
    /// The directory given with `--journal`.
    pub dir: PathBuf,
    /// The policy given with `--durability`.
    pub durability: Durability,
    /// Shards of the bus (one journal each).
    pub shards: usize,
}

/// `--durability batch`: fdatasync every 1,000 events or every millisecond.
pub const BATCH: Durability = Durability::Batch {
    every_events: 1_000,
    every: Duration::from_millis(1),
};

/// What was journaled by a run, read back.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadBack {
    /// Records read (every shard).
    pub records: u64,
    /// Time to read them all in place (CRC and header checked per record).
    pub elapsed: Duration,
}

impl ReadBack {
    /// Records per second.
    pub fn per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The disk's own sequential write of the same bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskBaseline {
    /// Bytes written.
    pub bytes: u64,
    /// `write_all` of every record through a 1 MiB buffer, to the page cache.
    pub write: Duration,
    /// The same, plus one `fdatasync` at the end.
    pub write_and_sync: Duration,
}

impl JournalRun {
    /// The bus's journal configuration (under `DIR/bus`), 4 GiB kept per shard at most.
    pub fn config(&self) -> JournalConfig {
        JournalConfig::new(self.dir.join("bus"))
            .durability(self.durability)
            .retention(Retention {
                max_bytes: Some(4 << 30),
                max_age: None,
            })
    }

    /// Empties the bus's journal directory (before a run).
    pub fn fresh(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.dir.join("bus")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads every record every shard journaled, in place, and times it.
    pub fn read_back<const SLOT: usize>(&self) -> Result<ReadBack, Box<dyn Error>> {
        let config = self.config();
        let mut out = ReadBack::default();
        for shard in 0..self.shards {
            let reader: JournalReader<SLOT> = JournalReader::open(config.shard_dir(shard))?;
            let t = Instant::now();
            let mut sum = 0u64;
            for record in reader.records(&Selection::all()) {
                sum = sum.wrapping_add(record?.event().header().id());
                out.records += 1;
            }
            std::hint::black_box(sum);
            out.elapsed += t.elapsed();
        }
        Ok(out)
    }

    /// Writes `records` records of `record_size` bytes to `DIR/baseline.bin` with
    /// `write_all` through a 1 MiB buffer, then `fdatasync`s, timing both.
    pub fn disk_baseline(
        &self,
        records: u64,
        record_size: usize,
    ) -> Result<DiskBaseline, Box<dyn Error>> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join("baseline.bin");
        let file = std::fs::File::create(&path)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut record = vec![0u8; record_size];
        let t = Instant::now();
        for i in 0..records {
            record[..8].copy_from_slice(&i.to_le_bytes());
            w.write_all(&record)?;
        }
        w.flush()?;
        let write = t.elapsed();
        w.get_ref().sync_data()?;
        let write_and_sync = t.elapsed();
        drop(w);
        std::fs::remove_file(&path)?;
        Ok(DiskBaseline {
            bytes: records * record_size as u64,
            write,
            write_and_sync,
        })
    }
}

/// The comparison, as text: journal on vs. off (closed loop saturation, and open loop
/// latency when there), the read-back rate, and the disk baseline.
pub fn text(
    durability: Durability,
    off: (Option<&RunReport>, Option<&RunReport>),
    on: (Option<&RunReport>, Option<&RunReport>),
    read_back: ReadBack,
    disk: DiskBaseline,
    record_size: usize,
) -> String {
    let mut s = format!("\njournal ({durability:?}), same workload, journal on vs. off:\n");
    if let (Some(a), Some(b)) = (off.0, on.0) {
        let (x, y) = (a.published_per_s(), b.published_per_s());
        s += &format!(
            "  saturation   off {:>7.3} M/s   on {:>7.3} M/s   on/off {:.3} (journaling costs {:.1} %)\n",
            x / 1e6,
            y / 1e6,
            y / x,
            (1.0 - y / x) * 100.0
        );
        s += &format!(
            "  closed-loop latency p50/p99/p99.9 (ns)  off {}/{}/{}  on {}/{}/{}\n",
            a.overall.value_at_quantile(0.5),
            a.overall.value_at_quantile(0.99),
            a.overall.value_at_quantile(0.999),
            b.overall.value_at_quantile(0.5),
            b.overall.value_at_quantile(0.99),
            b.overall.value_at_quantile(0.999),
        );
    }
    if let (Some(a), Some(b)) = (off.1, on.1) {
        s += &format!(
            "  open-loop at {:.3} / {:.3} M/s: latency p50/p99/p99.9 (ns)  off {}/{}/{}  on {}/{}/{}\n",
            a.published_per_s() / 1e6,
            b.published_per_s() / 1e6,
            a.overall.value_at_quantile(0.5),
            a.overall.value_at_quantile(0.99),
            a.overall.value_at_quantile(0.999),
            b.overall.value_at_quantile(0.5),
            b.overall.value_at_quantile(0.99),
            b.overall.value_at_quantile(0.999),
        );
    }
    let mb = disk.bytes as f64 / 1e6;
    s += &format!(
        "  read back (replay in place, page cache): {} records in {:.3} s = {:.2} M records/s\n",
        read_back.records,
        read_back.elapsed.as_secs_f64(),
        read_back.per_s() / 1e6
    );
    s += &format!(
        "  disk baseline, the same {:.1} MB as {}-byte records: write_all {:.0} MB/s ({:.2} M records/s), with fdatasync {:.0} MB/s ({:.2} M records/s)\n",
        mb,
        record_size,
        mb / disk.write.as_secs_f64().max(1e-9),
        disk.bytes as f64 / record_size as f64 / disk.write.as_secs_f64().max(1e-9) / 1e6,
        mb / disk.write_and_sync.as_secs_f64().max(1e-9),
        disk.bytes as f64 / record_size as f64 / disk.write_and_sync.as_secs_f64().max(1e-9) / 1e6,
    );
    s
}
