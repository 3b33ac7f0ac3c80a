//! The `metrics` export (feature `metrics`): a real bus with analytics on, a real
//! `metrics-util` DebuggingRecorder as this thread's recorder, and the values that arrive
//! checked against what was published.

use dreamnet_bus::analytics::MetricsExporter;
use dreamnet_bus::{Bus, Event, EventType, Filter, Outcome, Priority};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};

fn find<'a>(
    snapshot: &'a [Entry],
    kind: MetricKind,
    name: &str,
    label: (&str, &str),
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(k, _, _, _)| {
            k.kind() == kind
                && k.key().name() == name
                && k.key()
                    .labels()
                    .any(|l| l.key() == label.0 && l.value() == label.1)
        })
        .map(|(_, _, _, v)| v)
}

type Entry = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

fn counter_value(snapshot: &[Entry], name: &str, label: (&str, &str)) -> Option<u64> {
    match find(snapshot, MetricKind::Counter, name, label)? {
        DebugValue::Counter(n) => Some(*n),
        _ => None,
    }
}

#[test]
fn counters_rates_and_latency_histograms_reach_the_recorder() {
    let (bus, mut shards) = Bus::builder().analytics(true).build_polled().unwrap();
    let lucid = bus.register_agent("lucid").unwrap();
    let report = bus.register_event_type("report").unwrap();
    let sub = bus.subscribe(Filter::any(), |_| Outcome::Done).unwrap();
    let mut publisher = bus.publisher(lucid).unwrap();
    for _ in 0..5 {
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
    }
    for _ in 0..3 {
        let e = Event::new(report).with_priority(Priority::Critical);
        publisher.try_publish(e).unwrap();
    }
    assert_eq!(shards[0].drain(), 8);

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut exporter = MetricsExporter::new();
    let first = bus.analytics().unwrap();
    metrics::with_local_recorder(&recorder, || exporter.export(&first));
    let got = snapshotter.snapshot().into_vec();

    let counter = |name, label| counter_value(&got, name, label);
    assert_eq!(
        counter("dreamnet_events_total", ("type", "agent.task")),
        Some(5)
    );
    assert_eq!(
        counter("dreamnet_events_total", ("type", "report")),
        Some(3)
    );
    assert_eq!(
        counter("dreamnet_source_events_total", ("source", "lucid")),
        Some(8)
    );
    let sub_label = sub.raw().to_string();
    assert_eq!(
        counter(
            "dreamnet_subscription_attempts_total",
            ("subscription", sub_label.as_str())
        ),
        Some(8)
    );
    let Some(DebugValue::Histogram(critical)) = find(
        &got,
        MetricKind::Histogram,
        "dreamnet_latency_ns",
        ("priority", "critical"),
    ) else {
        panic!("no critical latency histogram in {got:?}");
    };
    assert_eq!(critical.len(), 3, "one sample per critical event");
    assert!(critical.iter().all(|v| v.into_inner() >= 1.0));
    let Some(DebugValue::Gauge(rate)) = find(
        &got,
        MetricKind::Gauge,
        "dreamnet_events_per_second",
        ("type", "agent.task"),
    ) else {
        panic!("no rate gauge in {got:?}");
    };
    assert!(rate.into_inner() > 0.0);

    // A second export covers only what happened since: 2 more normal events, so the
    // normal histogram receives exactly 2 new samples and the counter its new total.
    for _ in 0..2 {
        publisher
            .try_publish(Event::new(EventType::AGENT_TASK))
            .unwrap();
    }
    assert_eq!(shards[0].drain(), 2);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = bus.analytics().unwrap();
    metrics::with_local_recorder(&recorder, || exporter.export(&second));
    let got = snapshotter.snapshot().into_vec();
    assert_eq!(
        counter_value(&got, "dreamnet_events_total", ("type", "agent.task")),
        Some(7)
    );
    let Some(DebugValue::Histogram(normal)) = find(
        &got,
        MetricKind::Histogram,
        "dreamnet_latency_ns",
        ("priority", "normal"),
    ) else {
        panic!("no normal latency histogram in {got:?}");
    };
    assert_eq!(normal.len(), 2, "only the interval's samples: {normal:?}");
}
