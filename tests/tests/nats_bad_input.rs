//! Bad bytes from the wire: garbage, truncated slots, bad header fields, loops and hop
//! limits published on a bridged subject with a raw client are counted, kept in the
//! bridge's dead letters (the ones that never became events), and the process keeps
//! running and bridging.

use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{DropReason, RejectReason};
use dreamnet_bus::{DecodeError, Event, EventType};
use dreamnet_bus_tests::mesh::Node;
use dreamnet_bus_tests::nats_server::NatsServer;
use dreamnet_bus_tests::raw_nats::RawClient;

/// The subject alpha's broadcast import receives `mesh.news` on.
const SUBJECT: &str = "dreamnet.mesh~dnews.all";

fn headers<'a>(path: &'a str, hops: &'a str, priority: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Dreamnet-Path", path),
        ("Dreamnet-Hops", hops),
        ("Dreamnet-Id", "9"),
        ("Dreamnet-Type", "mesh.news"),
        ("Dreamnet-Source", "mallory"),
        ("Dreamnet-Priority", priority),
    ]
}

#[test]
fn bad_inbound_bytes_are_counted_and_dead_lettered_and_the_process_keeps_running() {
    let server = NatsServer::start();
    let alpha = Node::start(&server.url(), "alpha", "beta").expect("alpha");
    let mut raw = RawClient::connect(&server.url()).expect("raw client");

    let slot: Event = Event::new(EventType::SYSTEM_EVENT);
    let good = slot.as_bytes().to_vec();
    let mut bad_priority = good.clone();
    bad_priority[52] = 9; // the priority byte: 9 names no priority

    // Bodies that are not event slots.
    raw.publish(SUBJECT, None, b"not an event").unwrap();
    raw.publish(
        SUBJECT,
        Some(&headers("mallory", "1", "high")),
        &good[..100],
    )
    .unwrap();
    raw.publish(
        SUBJECT,
        Some(&headers("mallory", "1", "high")),
        &bad_priority,
    )
    .unwrap();
    // Valid slots with missing or bad headers.
    raw.publish(SUBJECT, None, &good).unwrap();
    raw.publish(SUBJECT, Some(&headers("mallory", "1", "urgent")), &good)
        .unwrap();
    raw.publish(SUBJECT, Some(&headers("mal lory", "1", "high")), &good)
        .unwrap();
    // Loops and the hop limit (4 by default): counted, not dead letters.
    raw.publish(SUBJECT, Some(&headers("mallory,alpha", "2", "high")), &good)
        .unwrap();
    raw.publish(SUBJECT, Some(&headers("mallory", "5", "high")), &good)
        .unwrap();
    // One well-formed message from an agent nobody registered: it is mapped by name.
    raw.publish(SUBJECT, Some(&headers("mallory", "1", "high")), &good)
        .unwrap();

    // The process still bridges: a real peer's broadcasts arrive.
    let mut beta = Node::start(&server.url(), "beta", "alpha").expect("beta");
    beta.send_broadcast(5).unwrap();

    let end = Instant::now() + Duration::from_secs(10);
    while alpha.counts().broadcast < 6 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(alpha.counts().broadcast, 6, "5 from beta + 1 well-formed");
    assert!(
        alpha.bus.agent("mallory").is_some(),
        "remote agent mapped by name"
    );

    let s = alpha.bridge.stats();
    assert_eq!(s.in_received, 9 + 5, "{s:?}");
    assert_eq!(s.in_published, 6, "{s:?}");
    assert_eq!(s.dropped(DropReason::BadBytes), 3, "{s:?}");
    assert_eq!(s.dropped(DropReason::BadHeaders), 3, "{s:?}");
    assert_eq!(s.dropped(DropReason::Loop), 1, "{s:?}");
    assert_eq!(s.dropped(DropReason::HopLimit), 1, "{s:?}");
    assert_eq!(s.dropped_total(), 8, "{s:?}");

    let mut rejects = Vec::new();
    alpha.bridge.rejects(|r| rejects.push(r.clone()));
    assert_eq!(rejects.len(), 6);
    assert!(rejects.iter().all(|r| r.subject == SUBJECT));
    assert_eq!(rejects[0].bytes, b"not an event");
    assert_eq!(
        rejects[0].reason,
        RejectReason::Decode(DecodeError::WrongLength {
            len: 12,
            expected: 256
        })
    );
    assert_eq!(
        rejects[1].reason,
        RejectReason::Decode(DecodeError::WrongLength {
            len: 100,
            expected: 256
        })
    );
    assert_eq!(
        rejects[2].reason,
        RejectReason::Decode(DecodeError::BadPriority(9))
    );
    assert_eq!(rejects[2].bytes, bad_priority, "the bytes are kept");
    assert!(matches!(rejects[3].reason, RejectReason::Headers(_)));
    assert!(matches!(rejects[5].reason, RejectReason::Headers(_)));
}

/// No server: `start` is a typed error naming the URL, and the bridge leaves nothing
/// subscribed on the bus (an event its export would have taken is unroutable).
#[test]
fn no_server_is_a_typed_error_and_leaves_nothing_subscribed() {
    use dreamnet_bus::bridge::{Bridge, BridgeError, Export};
    use dreamnet_bus::{Bus, Filter};
    use dreamnet_bus_tests::nats_server::free_port;
    use std::sync::Arc;

    let (bus, mut shards) = Bus::builder().build_polled().unwrap();
    let bus = Arc::new(bus);
    let url = format!("nats://127.0.0.1:{}", free_port());
    let err = Bridge::builder(&url)
        .export(Export::broadcast(Filter::of_type(EventType::SYSTEM_EVENT)))
        .start(Arc::clone(&bus))
        .expect_err("no server listens there");
    assert!(
        matches!(&err, BridgeError::Connect { url: u, .. } if *u == url),
        "{err:?}"
    );
    let me = bus.register_agent("alpha").unwrap();
    let mut publisher = bus.publisher(me).unwrap();
    let receipt = publisher
        .try_publish(Event::new(EventType::SYSTEM_EVENT))
        .unwrap();
    shards[0].poll(16);
    assert_eq!(receipt.shards, 0, "the export's subscription was removed");
}
