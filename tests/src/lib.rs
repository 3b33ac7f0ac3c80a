//! Support for the integration tests: a real `nats-server` ([`nats_server`]) and the
//! bridged node both sides of the two-process NATS tests run ([`mesh`]). Public API only.

pub mod mesh;
pub mod nats_server;
