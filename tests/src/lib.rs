//! Support for the integration tests (public API only), shared with the bench crate:
//! - the counting allocator behind every zero-allocation test and loadgen's
//!   "allocations per event" ([`counting_alloc`]);
//! - a real `nats-server` ([`nats_server`]), the bridged node both sides of the
//!   two-process NATS tests run ([`mesh`]), and a raw protocol client to inject bytes past
//!   the bridge ([`raw_nats`]).

pub mod counting_alloc;
pub mod mesh;
pub mod nats_server;
pub mod raw_nats;
