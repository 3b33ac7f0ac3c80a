//! Black-box integration tests for dreamnet-bus live in `tests/`. This library holds what
//! they share with each other and with the bench crate: the counting allocator.

pub mod counting_alloc;
