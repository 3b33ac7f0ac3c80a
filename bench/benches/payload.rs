//! Payload reads: what the unchecked read of a payload written in this process saves over
//! always validating it with bytecheck, on a 256-byte slot (160 bytes of payload).
//!
//! - `tagged`: `Event::payload::<T>()` on a payload written by `set_payload::<T>`: the type
//!   tag is checked (one load, one full `TypeId` compare) and the archive read unchecked.
//! - `checked`: the same bytes validated by rkyv/bytecheck on every read (what
//!   `payload::<T>()` does for bytes from outside, or when the type differs).
//!
//! Two payloads: a flat struct of integers (bytecheck has little to do) and one with an
//! inline string and a vector of integers (bytecheck follows relative pointers and checks
//! UTF-8 and bounds).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dreamnet_bus::{Event, EventType};
use rkyv::rancor::Failure;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Flat {
    id: u64,
    seq: u64,
    values: [u32; 30],
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Nested {
    id: u64,
    name: String,
    values: Vec<u32>,
}

fn payload_reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload_read");
    let flat: Event = Event::new(EventType::AGENT_TASK)
        .with_payload(&Flat {
            id: 7,
            seq: 9,
            values: [3; 30],
        })
        .expect("fits");
    let nested: Event = Event::new(EventType::AGENT_TASK)
        .with_payload(&Nested {
            id: 7,
            name: "generate parsers for the lucid agent".into(),
            values: (0..16).collect(),
        })
        .expect("fits");
    group.bench_function("flat/tagged", |b| {
        b.iter(|| {
            black_box(&flat)
                .payload::<Flat>()
                .map(|p| p.seq.to_native())
        })
    });
    group.bench_function("flat/checked", |b| {
        b.iter(|| {
            rkyv::access::<ArchivedFlat, Failure>(black_box(&flat).payload_bytes())
                .map(|p| p.seq.to_native())
        })
    });
    group.bench_function("nested/tagged", |b| {
        b.iter(|| {
            black_box(&nested)
                .payload::<Nested>()
                .map(|p| p.values.len())
        })
    });
    group.bench_function("nested/checked", |b| {
        b.iter(|| {
            rkyv::access::<ArchivedNested, Failure>(black_box(&nested).payload_bytes())
                .map(|p| p.values.len())
        })
    });
    group.finish();
}

criterion_group!(benches, payload_reads);
criterion_main!(benches);
