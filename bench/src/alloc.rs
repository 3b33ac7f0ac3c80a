//! A counting global allocator, for measuring allocations per event.
//!
//! A binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: dreamnet_bus_bench::alloc::CountingAlloc = dreamnet_bus_bench::alloc::CountingAlloc;
//! ```
//!
//! It counts every allocation in the process, and separately the allocations made on
//! threads marked *hot* with [`mark_hot`] (the producer threads and the threads running
//! handlers). The split matters: the main thread draws the progress bar and takes stats
//! snapshots, which allocate and are no part of the publish -> handler path.
//!
//! Counting is one relaxed `fetch_add` per allocation on a shared line: it perturbs
//! an allocating baseline a little, and costs nothing on a path that does not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static ALL: AtomicU64 = AtomicU64::new(0);
static HOT: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // `const` init and no destructor: reading it never allocates and never registers a
    // TLS destructor, so it is safe to use from inside the allocator.
    static IS_HOT: Cell<bool> = const { Cell::new(false) };
}

/// Wraps the system allocator and counts allocations (not frees: a steady state that
/// allocates and frees per event is exactly what we want to see).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

#[inline]
fn count() {
    ALL.fetch_add(1, Ordering::Relaxed);
    // `try_with`: during thread teardown the slot may be gone; such allocations are
    // counted process-wide only.
    if IS_HOT.try_with(Cell::get).unwrap_or(false) {
        HOT.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is `System`'s; the counters have no effect on the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    // SAFETY (caller's contract): `alloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    // SAFETY (caller's contract): `alloc_zeroed`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    // SAFETY (caller's contract): `realloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    // SAFETY (caller's contract): `dealloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Marks the calling thread as being on the measured path: its allocations count as
/// hot. Cheap enough to call on every handler invocation (a thread-local store).
#[inline]
pub fn mark_hot() {
    IS_HOT.with(|h| h.set(true));
}

/// A reading of both counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocCount {
    /// Allocations on threads marked hot (producers and handler threads).
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
/// `main` runs, since the runtime allocates before that).
pub fn installed() -> bool {
    ALL.load(Ordering::Relaxed) > 0
}
