//! Priority routing: a shard drains critical first, then high, normal, low, FIFO within a
//! level per publisher; and the starvation guard, measured on the delivery log.

mod common;

use common::{hits, new_log, record, Hit};
use dreamnet_bus::{Bus, Event, EventType, Filter, Priority, Publisher, Shard};

fn bus_with_guard(guard: u32, ring: usize) -> (Bus, Vec<Shard>) {
    Bus::builder()
        .starvation_guard(guard)
        .ring_capacity_all(ring)
        .build_polled()
        .expect("poll bus")
}

fn publish(p: &mut Publisher, prio: Priority, correlation: u64) {
    p.try_publish(
        Event::new(EventType::AGENT_TASK)
            .with_priority(prio)
            .with_correlation_id(correlation),
    )
    .expect("ring has room");
}

#[test]
fn one_poll_delivers_critical_then_high_then_normal_then_low() {
    let (bus, mut shards) = bus_with_guard(64, 64);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    // Published lowest first, so publish order and priority order disagree.
    for (i, prio) in Priority::ALL.iter().rev().enumerate() {
        publish(&mut p, *prio, i as u64);
    }
    assert_eq!(shards[0].poll(16), 4);
    let order: Vec<Priority> = hits(&log).iter().map(|h| h.priority).collect();
    assert_eq!(order, Priority::ALL.to_vec());
}

#[test]
fn levels_drain_highest_first_and_each_level_in_publish_order() {
    let (bus, mut shards) = bus_with_guard(64, 64);
    let a = bus.register_agent("a").expect("agent");
    let b = bus.register_agent("b").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut pa = bus.publisher(a).expect("publisher");
    let mut pb = bus.publisher(b).expect("publisher");
    // Interleave levels and publishers: correlation = level * 100 + n.
    for n in 0..10 {
        for prio in Priority::ALL.iter().rev() {
            let c = prio.index() as u64 * 100 + n;
            publish(&mut pa, *prio, c);
            publish(&mut pb, *prio, 1000 + c);
        }
    }
    // 80 events, fewer than the guard between levels: no starvation turn applies.
    assert_eq!(shards[0].drain(), 80);
    let log = hits(&log);
    let levels: Vec<usize> = log.iter().map(|h| h.priority.index()).collect();
    let mut sorted = levels.clone();
    sorted.sort_unstable();
    assert_eq!(
        levels, sorted,
        "every critical before every high, and so on"
    );
    // FIFO per publisher per priority.
    for prio in Priority::ALL {
        for source in [a, b] {
            let seq: Vec<u64> = log
                .iter()
                .filter(|h| h.priority == prio && h.source == source)
                .map(|h| h.correlation)
                .collect();
            assert_eq!(seq.len(), 10);
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "{prio:?} {seq:?}");
        }
    }
}

/// The longest run of events from levels above `level`, between two deliveries of `level`,
/// counted up to the last delivery of `level` (after that it no longer waits).
fn longest_wait(log: &[Hit], level: Priority) -> usize {
    let last = log
        .iter()
        .rposition(|h| h.priority == level)
        .expect("the level was delivered");
    let mut longest = 0;
    let mut run = 0;
    for h in &log[..=last] {
        if h.priority == level {
            run = 0;
        } else if h.priority < level {
            run += 1;
            longest = longest.max(run);
        }
    }
    longest
}

#[test]
fn low_priority_gets_its_share_under_critical_flood() {
    for guard in [1u32, 3, 8] {
        let (bus, mut shards) = bus_with_guard(guard, 128);
        let agent = bus.register_agent("sender").expect("agent");
        let log = new_log();
        bus.subscribe(Filter::any(), record(&log, 0))
            .expect("subscribe");
        let mut p = bus.publisher(agent).expect("publisher");
        const LOWS: usize = 40;
        for n in 0..LOWS {
            publish(&mut p, Priority::Low, n as u64);
        }
        // The flood: the critical ring is refilled to the brim before every poll.
        let mut c = 1_000;
        let mut polls = 0;
        while hits(&log)
            .iter()
            .filter(|h| h.priority == Priority::Low)
            .count()
            < LOWS
        {
            while p.free_slots(0, Priority::Critical) > 0 {
                publish(&mut p, Priority::Critical, c);
                c += 1;
            }
            shards[0].poll(7);
            polls += 1;
            assert!(
                polls < 10_000,
                "low events never all got through (guard {guard})"
            );
        }
        let log = hits(&log);
        // Critical still goes first: the guard only kicks in after `guard` of them.
        let first = guard as usize;
        assert!(
            log[..first]
                .iter()
                .all(|h| h.priority == Priority::Critical),
            "guard {guard}: {:?}",
            &log[..first + 1]
        );
        let wait = longest_wait(&log, Priority::Low);
        assert!(
            wait <= guard as usize,
            "guard {guard}: low waited through {wait} critical events in a row"
        );
        // Below the guard, priority rules: the criticals between two lows run up to it.
        assert_eq!(
            wait, guard as usize,
            "guard {guard}: critical did not take precedence"
        );
        let pattern: String = log
            .iter()
            .map(|h| {
                if h.priority == Priority::Low {
                    'L'
                } else {
                    'c'
                }
            })
            .collect();
        // And no more than its share: one low, then critical again (no priority inversion
        // while the flood lasts).
        assert!(
            !pattern.contains("LL"),
            "guard {guard}: low took more than its share: {pattern}"
        );
    }
}

#[test]
fn every_lower_level_gets_its_share_when_all_levels_wait() {
    let guard = 3u32;
    let (bus, mut shards) = bus_with_guard(guard, 64);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    bus.subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    // Every level is refilled before every poll, so every level always waits.
    let mut c = 0;
    for _ in 0..300 {
        for prio in Priority::ALL {
            while p.free_slots(0, prio) > 0 {
                publish(&mut p, prio, c);
                c += 1;
            }
        }
        shards[0].poll(5);
    }
    let log = hits(&log);
    assert_eq!(log.len(), 300 * 5);
    assert!(log[..guard as usize]
        .iter()
        .all(|h| h.priority == Priority::Critical));
    for level in [Priority::High, Priority::Normal, Priority::Low] {
        let wait = longest_wait(&log, level);
        assert!(
            wait <= guard as usize,
            "{level:?} waited through {wait} higher-priority events in a row (guard {guard})"
        );
        let share = log.iter().filter(|h| h.priority == level).count();
        println!("{level:?}: {share} of {}", log.len());
    }
}
