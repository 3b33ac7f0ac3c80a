//! Atomics used by our own lock-free code, swapped for loom's under `--cfg loom` so the
//! loom tests explore every interleaving of the real code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64};

#[cfg(loom)]
pub(crate) fn spin() {
    loom::thread::yield_now();
}
#[cfg(not(loom))]
pub(crate) fn spin() {
    std::thread::yield_now();
}
