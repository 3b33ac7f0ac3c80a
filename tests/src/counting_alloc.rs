//! The one counting global allocator of the workspace: the zero-allocation tests
//! (`tests/tests/zero_alloc*.rs`) and loadgen's allocations-per-event figure both install
//! it, so "allocates nothing" is measured the same way everywhere.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: dreamnet_bus_tests::counting_alloc::CountingAlloc =
//!     dreamnet_bus_tests::counting_alloc::CountingAlloc;
//! ```
//!
//! It forwards every call to the system allocator and counts allocations (not frees: a
//! steady state that allocates and frees per event is exactly what must show) three ways:
//!
//! - every allocation in the process ([`AllocCount::all`]);
//! - allocations on threads marked hot with [`mark_hot`] ([`AllocCount::hot`]): loadgen
//!   marks its producers and handlers, so the main thread's reports do not count;
//! - allocations on any thread inside a window opened by [`allocations_during`], with the
//!   sizes of the first few ([`first_sizes`]), for a test's failure message.
//!
//! Counting costs a relaxed `fetch_add` or two per allocation; a path that does not
//! allocate pays nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

static ALL: AtomicU64 = AtomicU64::new(0);
static HOT: AtomicU64 = AtomicU64::new(0);
static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
static WINDOW_OPEN: AtomicBool = AtomicBool::new(false);
/// Sizes of the first allocations counted in the current window.
static FIRST_SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

thread_local! {
    // `const` init and no destructor: reading it never allocates and never registers a
    // TLS destructor, so it is safe to use from inside the allocator.
    static IS_HOT: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the system allocator and counts allocations (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

#[inline]
fn count(size: usize) {
    ALL.fetch_add(1, Ordering::Relaxed);
    // `try_with`: during thread teardown the slot may be gone; such allocations are
    // counted process-wide (and in a window) only.
    if IS_HOT.try_with(Cell::get).unwrap_or(false) {
        HOT.fetch_add(1, Ordering::Relaxed);
    }
    if WINDOW_OPEN.load(Ordering::Relaxed) {
        let n = IN_WINDOW.fetch_add(1, Ordering::Relaxed) as usize;
        if let Some(slot) = FIRST_SIZES.get(n) {
            slot.store(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; counting only touches atomics and a const
// thread-local, never allocates, and has no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    // SAFETY (caller's contract): `alloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }

    // SAFETY (caller's contract): `alloc_zeroed`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    // SAFETY (caller's contract): `realloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`,
        // and the caller upholds `realloc`'s contract; passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    // SAFETY (caller's contract): `dealloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Marks the calling thread as being on the measured path: its allocations count as
/// hot from now on. Cheap enough to call on every handler invocation (a thread-local
/// store).
#[inline]
pub fn mark_hot() {
    IS_HOT.with(|h| h.set(true));
}

/// A reading of the process-wide and hot-thread counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocCount {
    /// Allocations on threads marked hot.
    pub hot: u64,
    /// Allocations anywhere in the process.
    pub all: u64,
}

impl AllocCount {
    /// The counters now. Both stay 0 if [`CountingAlloc`] is not the global allocator.
    pub fn now() -> Self {
        AllocCount {
            hot: HOT.load(Ordering::Relaxed),
            all: ALL.load(Ordering::Relaxed),
        }
    }

    /// Allocations between `earlier` and `self`.
    pub fn since(self, earlier: AllocCount) -> AllocCount {
        AllocCount {
            hot: self.hot.wrapping_sub(earlier.hot),
            all: self.all.wrapping_sub(earlier.all),
        }
    }
}

/// Whether the counting allocator is installed (it has counted something by the time
/// `main` or a test runs, since the runtime allocates before that).
pub fn installed() -> bool {
    ALL.load(Ordering::Relaxed) > 0
}

/// Counts the allocations made on every thread while `body` runs. One window at a time:
/// run windows from one test, so another test (or the harness reporting one) does not
/// allocate inside it.
pub fn allocations_during(body: impl FnOnce()) -> u64 {
    for s in &FIRST_SIZES {
        s.store(0, Ordering::Relaxed);
    }
    IN_WINDOW.store(0, Ordering::SeqCst);
    WINDOW_OPEN.store(true, Ordering::SeqCst);
    body();
    WINDOW_OPEN.store(false, Ordering::SeqCst);
    IN_WINDOW.load(Ordering::SeqCst)
}

/// The sizes of the first (up to 8) allocations of the last [`allocations_during`] window;
/// 0 for none.
pub fn first_sizes() -> Vec<usize> {
    FIRST_SIZES
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    // One test: the window counts every thread, so a second test running in parallel
    // would allocate inside it.
    #[test]
    fn counts_allocations_in_a_window_on_hot_threads_and_in_all() {
        assert!(installed());
        let none = allocations_during(|| {
            std::hint::black_box(1 + 1);
        });
        assert_eq!(none, 0, "sizes {:?}", first_sizes());

        let mut kept = Vec::new();
        let n = allocations_during(|| {
            kept.push(std::hint::black_box(vec![0u8; 40]));
            kept.push(std::hint::black_box(vec![0u8; 24]));
        });
        assert_eq!(n, 3, "two boxes of bytes and the Vec of them");
        let sizes = first_sizes();
        assert!(sizes.contains(&40) && sizes.contains(&24), "{sizes:?}");

        let before = AllocCount::now();
        let hot = std::thread::spawn(|| {
            mark_hot();
            std::hint::black_box(vec![1u8; 16]).len()
        })
        .join()
        .unwrap();
        assert_eq!(hot, 16);
        let d = AllocCount::now().since(before);
        assert!(d.hot >= 1, "{d:?}");
        assert!(d.all >= d.hot, "{d:?}");
        // This thread is not hot: its allocation counts in `all` only.
        let before = AllocCount::now();
        kept.push(vec![2u8; 8]);
        let d = AllocCount::now().since(before);
        assert_eq!(d.hot, 0, "{d:?}");
        assert!(d.all >= 1, "{d:?}");
    }
}
