//! Support for the integration tests: a real `nats-server` ([`nats_server`]) and the
//! bridged node both sides of the two-process NATS tests run ([`mesh`]), and a raw
//! protocol client to inject bytes past the bridge ([`raw_nats`]). Public API only.

pub mod mesh;
pub mod nats_server;
pub mod raw_nats;
