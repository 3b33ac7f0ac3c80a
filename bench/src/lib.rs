//! # dreamnet-bus-bench
//!
//! The load generator (`cargo run --release --bin loadgen`) and the pieces it is built
//! from, kept in a library so the criterion benches can reuse them:
//!
//! - [`workload`]: the agents, the event mix, the subscriptions of every routing strategy
//!   with a model of who should get what, the payload, and the per-handler latency probe;
//! - [`dreamnet`]: that workload on `dreamnet-bus`, and [`conservation`], the checks that
//!   every event and delivery of its run is accounted for;
//! - [`baseline`]: the same workload on a "channel bus" built the way a user would build
//!   one (a bounded `crossbeam-channel` of boxed events and a `HashMap` dispatch);
//! - [`disruptor_peer`]: the disruptor as written by its users (one u64 or a whole 256-byte
//!   slot), the floor `--compare` measures against;
//! - [`bridge_load`]: `loadgen --bridge`, the load across two processes bridged through
//!   NATS beside raw async-nats (throughput, one-way latency, JetStream);
//! - [`headline`]: saturation, then open-loop latency at a share of it, per implementation;
//! - [`journal_load`]: `loadgen --journal DIR`, journal on vs. off, read-back rate, disk baseline;
//! - [`streams_load`]: `loadgen --workload streams`: streams, filters, a transform, a window
//!   and a recurring schedule at once, every count checked;
//! - [`plot`]: `--plot FILE.svg`, the percentile distributions on a log percentile axis;
//! - [`report`]: the end report, as text or JSON;
//! - [`latency`]: one-way and ping-pong latency beside the disruptor (`cargo bench --bench latency`);
//! - [`alloc`]: the workspace's counting allocator (from `dreamnet-bus-tests`, shared with the
//!   zero-allocation tests), so allocations per event are measured, not assumed.

pub use dreamnet_bus_tests::counting_alloc as alloc;

pub mod baseline;
pub mod bridge_load;
pub mod conservation;
pub mod disruptor_peer;
pub mod dreamnet;
pub mod headline;
pub mod journal_load;
pub mod latency;
pub mod plot;
pub mod report;
pub mod streams_load;
pub mod workload;
