//! The durability policy and the durable watermark.
//!
//! Three words, three moments in an event's life:
//!
//! - **accepted**: the bus took the event into a ring (`try_publish` returned `Ok`). It is
//!   in memory only.
//! - **journaled**: [`Journal::append`](super::Journal::append) returned its sequence
//!   number: the record is in the segment's shared map, complete, CRC and commit word
//!   written. Other processes reading the journal see it; it survives the death of this
//!   process (`kill -9`), because the page cache belongs to the kernel.
//! - **durable**: the record survives what the policy protects against, and
//!   [`DurableWatch::durable_seq`] has reached it. Under [`Durability::Os`] a journaled
//!   record is durable at once (the policy promises survival of a process crash, not of
//!   an OS crash or power loss). Under `Batch` and `Always` it is durable once an
//!   `fdatasync` (`msync(MS_SYNC)` on its range) covering it has returned.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::JournalError;

/// How hard the journal works to keep what it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Leave write-back to the OS: survives `kill -9` of the process, not a power loss.
    /// No sync calls at all.
    Os,
    /// `fdatasync` after `every_events` records or once `every` has passed since the last
    /// sync, whichever comes first. The time is checked on each append and by
    /// [`Journal::sync_if_due`](super::Journal::sync_if_due), which an idle owner should
    /// call (the sync runs on the appending thread; there is no background thread).
    Batch {
        /// Sync after this many records (at least 1).
        every_events: u64,
        /// Sync once this much time has passed since the last one.
        every: Duration,
    },
    /// `fdatasync` after every record: durable when `append` returns.
    Always,
}

/// The shared durable watermark: written by the journal, read and waited on by anyone.
#[derive(Debug, Default)]
struct Shared {
    durable: AtomicU64,
    waiters: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

/// A handle on a journal's durable watermark, for other threads: cheap to clone, `Send`
/// and `Sync`.
#[derive(Debug, Clone, Default)]
pub struct DurableWatch(Arc<Shared>);

impl DurableWatch {
    /// The highest sequence number that is durable (0 if none is): every record up to it
    /// survives what the policy protects against.
    pub fn durable_seq(&self) -> u64 {
        self.0.durable.load(Ordering::SeqCst)
    }

    /// Waits until `seq` is durable, or `timeout` has passed, or the journal is closed
    /// without making it durable. Returns the durable watermark.
    pub fn wait_durable(&self, seq: u64, timeout: Duration) -> Result<u64, JournalError> {
        let s = &*self.0;
        let done = self.durable_seq();
        if done >= seq {
            return Ok(done);
        }
        let deadline = Instant::now() + timeout;
        s.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = loop {
            let durable = s.durable.load(Ordering::SeqCst);
            if durable >= seq {
                break Ok(durable);
            }
            let now = Instant::now();
            if now >= deadline || s.closed.load(Ordering::SeqCst) {
                break Err(JournalError::NotDurable { seq, durable });
            }
            guard =
                s.cv.wait_timeout(guard, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
        };
        drop(guard);
        s.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Moves the watermark to `seq` and wakes waiters. Nothing is locked unless someone
    /// waits (the append path under `Os` calls this for every record).
    pub(crate) fn advance(&self, seq: u64) {
        let s = &*self.0;
        s.durable.store(seq, Ordering::SeqCst);
        // SeqCst store then load, against the waiter's SeqCst increment then load: either
        // we see its increment, or it sees our store.
        if s.waiters.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.cv.notify_all();
        }
    }

    /// Marks the journal closed: waits that cannot succeed end.
    pub(crate) fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let _g = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_is_woken_by_advance_and_times_out_otherwise() {
        let w = DurableWatch::default();
        assert!(matches!(
            w.wait_durable(1, Duration::from_millis(10)),
            Err(JournalError::NotDurable { seq: 1, durable: 0 })
        ));
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait_durable(5, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        w.advance(3);
        w.advance(5);
        assert_eq!(t.join().unwrap().unwrap(), 5);
        assert_eq!(w.durable_seq(), 5);
        let w3 = w.clone();
        let t = std::thread::spawn(move || w3.wait_durable(9, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        w.close();
        assert!(t.join().unwrap().is_err());
    }
}
