//! The counting global allocator shared by the zero-allocation tests (each test binary
//! that declares `mod alloc_counter;` gets it as its global allocator). It counts every
//! allocation on every thread while counting is on.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Sizes of the first few allocations counted, for the failure message.
static FIRST_SIZES: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

fn note(layout: Layout) {
    if COUNTING.load(Ordering::Relaxed) {
        let n = ALLOCATIONS.fetch_add(1, Ordering::Relaxed) as usize;
        if let Some(slot) = FIRST_SIZES.get(n) {
            slot.store(layout.size(), Ordering::Relaxed);
        }
    }
}

// SAFETY: every operation is forwarded to `System` unchanged; counting only touches
// atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    // SAFETY (caller's contract): `alloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        unsafe { System.alloc(layout) }
    }
    // SAFETY (caller's contract): `alloc_zeroed`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    // SAFETY (caller's contract): `dealloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` through this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    // SAFETY (caller's contract): `realloc`'s `GlobalAlloc` preconditions, passed on to `System` unchanged.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(Layout::from_size_align(new_size, layout.align()).unwrap_or(layout));
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts allocations on every thread while `body` runs.
pub fn allocations_during(body: impl FnOnce()) -> u64 {
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    body();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

pub fn first_sizes() -> Vec<usize> {
    FIRST_SIZES
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect()
}
