//! An asymmetric memory barrier: a free half for the hot path ([`light`]) and an expensive
//! half for the rare side ([`heavy`]) that together order memory like two SeqCst fences.
//!
//! On Linux, `heavy` is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`: when it returns,
//! every thread of this process that was running has executed a full memory barrier (the
//! kernel interrupts each CPU running one of our threads; a thread that was not running
//! passes a barrier when it is switched in). So a `light` (a compiler fence: the compiler
//! keeps program order, the interrupt supplies the hardware fence) on one side and a
//! `heavy` on the other act as the two SeqCst fences of Dekker's argument. The process
//! registers for the command once, the first time either half runs.
//!
//! Where the command is not available (another OS, an old kernel, a sandbox that filters
//! the call) both halves are SeqCst fences. The choice is made once and never changes, so
//! the two halves always agree. Under loom both halves are SeqCst fences, which loom
//! models exactly.
//!
//! Once registered, the kernel refuses `PRIVATE_EXPEDITED` only for a process that did not
//! register, so `heavy` cannot fail then; were it ever to, it falls back to a fence and
//! records the strategy as fences for every later call.

#[cfg(not(loom))]
mod imp {
    use core::sync::atomic::{compiler_fence, fence, AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const MEMBARRIER: u8 = 1;
    const FENCES: u8 = 2;

    static STRATEGY: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(target_os = "linux")]
    mod sys {
        // From <linux/membarrier.h> (the libc crate does not name them).
        const CMD_QUERY: libc::c_long = 0;
        const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

        fn membarrier(cmd: libc::c_long) -> libc::c_long {
            // SAFETY: `membarrier(cmd, flags)` takes two integers and reads or writes no
            // memory of ours; an unknown command is an error return, not undefined
            // behaviour.
            unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
        }

        /// Registers the process for private expedited barriers; false if unsupported.
        pub(super) fn register() -> bool {
            let supported = membarrier(CMD_QUERY);
            let needed = CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED;
            supported >= 0
                && supported & needed == needed
                && membarrier(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        }

        /// A barrier on every running thread of the process; false if the kernel refused.
        pub(super) fn expedited() -> bool {
            membarrier(CMD_PRIVATE_EXPEDITED) == 0
        }
    }

    #[cfg(not(target_os = "linux"))]
    mod sys {
        pub(super) fn register() -> bool {
            false
        }
        pub(super) fn expedited() -> bool {
            false
        }
    }

    #[cold]
    fn choose() -> u8 {
        // Registering twice (two threads racing here) is harmless, and both find the same
        // answer; the registration is in place before any thread reads MEMBARRIER.
        let chosen = if sys::register() { MEMBARRIER } else { FENCES };
        STRATEGY.store(chosen, Ordering::Release);
        chosen
    }

    #[inline]
    fn strategy() -> u8 {
        match STRATEGY.load(Ordering::Acquire) {
            UNKNOWN => choose(),
            s => s,
        }
    }

    /// The hot path's half.
    #[inline]
    pub(crate) fn light() {
        if strategy() == MEMBARRIER {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
    }

    /// The rare side's half.
    pub(crate) fn heavy() {
        if strategy() == MEMBARRIER && sys::expedited() {
            return;
        }
        STRATEGY.store(FENCES, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

#[cfg(loom)]
mod imp {
    use std::sync::atomic::Ordering::SeqCst;

    /// The hot path's half: the fallback, a SeqCst fence.
    pub(crate) fn light() {
        crate::sync::fence(SeqCst);
    }

    /// The rare side's half: the fallback, a SeqCst fence.
    pub(crate) fn heavy() {
        crate::sync::fence(SeqCst);
    }
}

pub(crate) use imp::{heavy, light};

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{
        AtomicBool, AtomicU64,
        Ordering::{Acquire, Relaxed, Release},
    };
    use std::sync::Arc;

    /// Dekker with the asymmetric pair, many times over: the two sides never both miss
    /// each other's store (the outcome two SeqCst fences forbid).
    #[test]
    fn light_and_heavy_never_let_both_sides_miss_each_other() {
        let rounds = 2_000;
        let a = Arc::new(AtomicBool::new(false));
        let b = Arc::new(AtomicBool::new(false));
        let seen_by_light = Arc::new(AtomicU64::new(0));
        let go = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let fast = {
            let (a, b, seen, go, done) = (
                Arc::clone(&a),
                Arc::clone(&b),
                Arc::clone(&seen_by_light),
                Arc::clone(&go),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                for round in 1..=rounds {
                    while go.load(Acquire) < round {
                        std::hint::spin_loop();
                    }
                    a.store(true, Relaxed);
                    super::light();
                    seen.store(u64::from(b.load(Relaxed)), Relaxed);
                    done.store(round, Release);
                }
            })
        };
        for round in 1..=rounds {
            a.store(false, Relaxed);
            b.store(false, Relaxed);
            go.store(round, Release);
            b.store(true, Relaxed);
            super::heavy();
            let heavy_saw_a = a.load(Relaxed);
            while done.load(Acquire) < round {
                std::hint::spin_loop();
            }
            let light_saw_b = seen_by_light.load(Relaxed) == 1;
            assert!(
                heavy_saw_a || light_saw_b,
                "round {round}: both sides missed the other's store"
            );
        }
        fast.join().unwrap();
    }
}
