//! Who to wake when a stream's consumer sleeps: its thread (a blocking `next`) or its
//! task (the async `Stream`). The producer locks this only after it took the ring's sleep
//! mark (`StreamRing::take_sleeper`), i.e. only when the consumer really sleeps: a busy
//! consumer costs the shard no lock and no syscall.

use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::thread::Thread;

/// The sleeping consumer's handle, kept from one sleep to the next (re-registered only
/// when it changes, so sleeping does not allocate).
#[derive(Debug, Default)]
pub(crate) struct Wake {
    who: Mutex<Who>,
}

#[derive(Debug, Default)]
enum Who {
    #[default]
    Nobody,
    Thread(Thread),
    Task(Waker),
}

impl Wake {
    fn lock(&self) -> MutexGuard<'_, Who> {
        // Nothing here panics while the lock is held; a poisoned lock is still consistent.
        self.who.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The consumer is about to park its thread.
    pub(crate) fn set_thread(&self) {
        let mut who = self.lock();
        let me = std::thread::current();
        if !matches!(&*who, Who::Thread(t) if t.id() == me.id()) {
            *who = Who::Thread(me);
        }
    }

    /// The consumer task is about to return `Pending`.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_task(&self, waker: &Waker) {
        let mut who = self.lock();
        if !matches!(&*who, Who::Task(w) if w.will_wake(waker)) {
            *who = Who::Task(waker.clone());
        }
    }

    /// Wakes the consumer, whichever way it sleeps.
    pub(crate) fn wake(&self) {
        match &*self.lock() {
            Who::Nobody => {}
            Who::Thread(t) => t.unpark(),
            Who::Task(w) => w.wake_by_ref(),
        }
    }
}
