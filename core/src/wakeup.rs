//! Waking a parked worker the moment there is work for it, instead of at its next park
//! timeout (which the kernel's timer slack stretches from 50 us to about 100 us).
//!
//! A worker that has spun and yielded without finding work sets its shard's *sleep mark*
//! once per idle episode, then parks with the usual timeout, again and again, until it
//! finds work. A publisher, after committing a run to a shard's rings, loads that
//! shard's mark: clear (a busy worker: the usual case), that is all it pays, one load of a
//! line the worker writes only when it goes idle or wakes; set, it takes the mark (one
//! swap: of several publishers only one unparks) and unparks the worker.
//!
//! No lost wake-up: the worker stores the mark, runs the heavy half of the asymmetric
//! barrier (`barrier.rs`), then looks at its rings once more before it parks; the
//! publisher commits, runs the light half, then loads the mark. The two fences order one
//! way or the other, so either the worker sees the events or the publisher sees the mark
//! (Dekker, as for the intake gate). The heavy half is paid once per idle episode, not per
//! park. Even so the timeout stays: it is what bounds a wake that comes from anywhere else
//! (control messages, redrives, scheduled events of other publishers' making).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::barrier;

/// One shard's sleep mark and its worker's thread.
#[derive(Debug, Default)]
pub(crate) struct Wakeup {
    sleeping: CachePadded<AtomicBool>,
    worker: OnceLock<Thread>,
}

impl Wakeup {
    /// Called by the worker thread once, before its loop: the thread publishers unpark.
    pub(crate) fn register(&self) {
        let _ = self.worker.set(std::thread::current());
    }

    /// The worker's side: parks for at most `timeout` unless `idle()` says work arrived
    /// since the mark was set. The mark stays set across parks until [`Wakeup::awake`].
    pub(crate) fn park(&self, timeout: Duration, idle: impl FnOnce() -> bool) {
        if !self.sleeping.load(Ordering::Relaxed) {
            self.sleeping.store(true, Ordering::Relaxed);
            barrier::heavy();
        }
        if idle() {
            std::thread::park_timeout(timeout);
        }
    }

    /// The worker's side: it found work; publishers stop looking for it asleep.
    #[inline]
    pub(crate) fn awake(&self) {
        if self.sleeping.load(Ordering::Relaxed) {
            self.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// The publisher's side, after committing to this shard's rings and running
    /// `barrier::light()`: unparks the worker if it is asleep.
    #[inline(always)]
    pub(crate) fn notify(&self) {
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        if self.sleeping.swap(false, Ordering::Relaxed) {
            if let Some(worker) = self.worker.get() {
                worker.unpark();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Instant;

    /// A worker parked with a 10 s timeout is woken by `notify` within a fraction of it,
    /// every time, over many rounds (a lost wake-up would cost a whole timeout).
    #[test]
    fn notify_wakes_a_parked_worker_long_before_its_timeout() {
        let wakeup = Arc::new(Wakeup::default());
        let work = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        const ROUNDS: u64 = 200;
        let worker = {
            let (wakeup, work, seen) = (Arc::clone(&wakeup), Arc::clone(&work), Arc::clone(&seen));
            std::thread::spawn(move || {
                wakeup.register();
                while seen.load(Ordering::Relaxed) < ROUNDS {
                    let w = work.load(Ordering::Acquire);
                    if w > seen.load(Ordering::Relaxed) {
                        wakeup.awake();
                        seen.store(w, Ordering::Release);
                        continue;
                    }
                    wakeup.park(Duration::from_secs(10), || {
                        work.load(Ordering::Acquire) == seen.load(Ordering::Relaxed)
                    });
                }
            })
        };
        let start = Instant::now();
        for round in 1..=ROUNDS {
            // Let the worker go to sleep, then publish.
            while !wakeup.sleeping.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            work.store(round, Ordering::Release);
            barrier::light();
            wakeup.notify();
            while seen.load(Ordering::Acquire) < round {
                std::thread::yield_now();
            }
        }
        worker.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "a wake-up was lost: {ROUNDS} rounds took {:?}",
            start.elapsed()
        );
    }
}
