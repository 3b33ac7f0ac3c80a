//! Installs the workspace's one counting allocator (`dreamnet_bus_tests::counting_alloc`,
//! also loadgen's) as the global allocator of each zero-allocation test binary that
//! declares `mod alloc_counter;`, and re-exports its window counting: every allocation on
//! every thread inside an `allocations_during` window counts.
#![allow(dead_code, unused_imports)]

use dreamnet_bus_tests::counting_alloc::CountingAlloc;
pub use dreamnet_bus_tests::counting_alloc::{allocations_during, first_sizes};

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;
