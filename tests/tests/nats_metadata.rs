//! What crosses the wire besides the body, against a real nats-server: the correlation and
//! causation ids (headers `Dreamnet-Correlation`, `Dreamnet-Causation`) and every metadata
//! entry by its key's name (`Dreamnet-Meta`), mapped to the receiving bus's own key ids;
//! keys named with `keep_local_meta` stay home, counted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dreamnet_bus::bridge::{Bridge, Export, Import};
use dreamnet_bus::{Bus, Event, EventType, Filter, Header, Outcome};
use dreamnet_bus_tests::nats_server::NatsServer;
use dreamnet_bus_tests::raw_nats::RawClient;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A bus that keeps a copy of the header of every event of type `name` it delivers.
fn receiving(name: &str) -> (Arc<Bus>, Arc<Mutex<Vec<Header>>>) {
    let bus = Arc::new(Bus::builder().build().expect("bus"));
    let ty = bus.register_event_type(name).expect("type");
    let got: Arc<Mutex<Vec<Header>>> = Arc::default();
    let g = Arc::clone(&got);
    bus.subscribe(Filter::of_type(ty), move |d| {
        g.lock().unwrap().push(*d.header());
        Outcome::Done
    })
    .expect("subscribe");
    (bus, got)
}

#[test]
fn ids_and_metadata_cross_by_name() {
    let server = NatsServer::start();
    let url = server.url();
    let (b, got) = receiving("md");
    // B knows other keys first: the same names have other ids here than on A.
    b.register_meta_key("other.one").unwrap();
    b.register_meta_key("other.two").unwrap();
    let bridge_b = Bridge::builder(&url)
        .bus_id("b")
        .import(Import::broadcast())
        .start(Arc::clone(&b))
        .expect("bridge b");

    let a = Arc::new(Bus::builder().build().expect("bus"));
    let ty = a.register_event_type("md").unwrap();
    let trace = a.register_meta_key("trace").unwrap();
    let tenant = a.register_meta_key("tenant").unwrap();
    let secret = a.register_meta_key("secret").unwrap();
    let bridge_a = Bridge::builder(&url)
        .bus_id("a")
        .keep_local_meta("secret")
        .export(Export::broadcast(Filter::of_type(ty)))
        .start(Arc::clone(&a))
        .expect("bridge a");
    let me = a.register_agent("alpha").unwrap();
    let mut publisher = a.publisher(me).unwrap();
    let event = Event::new(ty)
        .with_correlation_id(7)
        .with_causation_id(99)
        .with_metadata(trace, 42)
        .unwrap()
        .with_metadata(tenant, 3)
        .unwrap()
        .with_metadata(secret, 5)
        .unwrap();
    publisher.publish(event).unwrap();

    wait_for("the event on b", || got.lock().unwrap().len() == 1);
    let h = got.lock().unwrap()[0];
    assert_eq!(h.correlation_id(), 7);
    assert_eq!(h.causation_id(), 99);
    let b_trace = b.register_meta_key("trace").unwrap();
    let b_tenant = b.register_meta_key("tenant").unwrap();
    assert_ne!(b_trace, trace, "the ids differ between the buses");
    assert_eq!(h.metadata(b_trace), Some(42));
    assert_eq!(h.metadata(b_tenant), Some(3));
    let b_secret = b.register_meta_key("secret").unwrap();
    assert_eq!(h.metadata(b_secret), None, "kept local");
    // The mark of the wire and the two carried entries, nothing else.
    assert_eq!(h.metadata_entries().count(), 3);
    assert_eq!(bridge_a.stats().out_meta_kept_local, 1);
    assert_eq!(bridge_b.stats().in_published, 1);
}

/// The receiving bus takes the causation id from the header, not from the body.
#[test]
fn the_causation_header_is_what_counts() {
    let server = NatsServer::start();
    let url = server.url();
    let (b, got) = receiving("cause");
    let _bridge = Bridge::builder(&url)
        .bus_id("b")
        .import(Import::broadcast())
        .start(Arc::clone(&b))
        .expect("bridge b");
    let body = Event::<256>::new(EventType::SYSTEM_EVENT)
        .with_causation_id(1)
        .as_bytes()
        .to_vec();
    let mut raw = RawClient::connect(&url).unwrap();
    for causation in [None, Some("1234")] {
        let mut headers = vec![
            ("Dreamnet-Path", "elsewhere"),
            ("Dreamnet-Hops", "1"),
            ("Dreamnet-Id", "5"),
            ("Dreamnet-Type", "cause"),
            ("Dreamnet-Source", "remote"),
            ("Dreamnet-Priority", "high"),
        ];
        if let Some(c) = causation {
            headers.push(("Dreamnet-Causation", c));
        }
        raw.publish("dreamnet.cause.all", Some(&headers), &body)
            .unwrap();
    }
    wait_for("both events on b", || got.lock().unwrap().len() == 2);
    let got = got.lock().unwrap();
    assert_eq!(got[0].causation_id(), 0, "absent header: none");
    assert_eq!(got[1].causation_id(), 1234);
}
