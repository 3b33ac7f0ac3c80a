//! Recurring schedules (issue 14 §7): `every` and `cron` fire counts on a manual clock,
//! cancellation, and the missed-tick policies (`Skip` vs `CatchUp`) after a stall.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dreamnet_bus::recurring::{MissedTicks, Recurrence, RecurringError, MAX_CATCH_UP};
use dreamnet_bus::{Bus, Event, EventType, Filter, ManualClock, Outcome, Shard};

fn drain(shards: &mut [Shard]) {
    while shards.iter_mut().map(|s| s.poll(1024)).sum::<usize>() > 0 {}
}

struct Rig {
    clock: ManualClock,
    bus: Bus,
    shards: Vec<Shard>,
    seen: Arc<AtomicU64>,
}

/// A polled bus on a manual clock, two shards, counting the status events it delivers.
fn rig() -> Rig {
    let clock = ManualClock::new();
    let (bus, shards) = Bus::builder()
        .shards(2)
        .manual_clock(clock.clone())
        .build_polled()
        .expect("bus");
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), move |_| {
        s.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    })
    .expect("subscribe");
    Rig {
        clock,
        bus,
        shards,
        seen,
    }
}

fn every(rig: &Rig, interval: Duration, missed: MissedTicks) -> dreamnet_bus::recurring::Recurring {
    let publisher = rig
        .bus
        .publisher(rig.bus.register_agent("lucid").unwrap())
        .unwrap();
    rig.bus
        .every(
            interval,
            publisher,
            Event::new(EventType::AGENT_STATUS),
            missed,
        )
        .expect("every")
}

#[test]
fn every_fires_once_per_interval_and_cancel_stops_it() {
    let mut rig = rig();
    let sec = Duration::from_secs(1);
    let r = every(&rig, sec, MissedTicks::Skip);
    drain(&mut rig.shards);
    assert_eq!(r.stats().next_due_ns, 1_000_000_000);
    rig.clock.advance(Duration::from_millis(999));
    drain(&mut rig.shards);
    assert_eq!(r.stats().fired, 0, "not yet due");
    for i in 1..=10u64 {
        rig.clock.set_ns(i * 1_000_000_000);
        drain(&mut rig.shards);
        assert_eq!(r.stats().fired, i);
        assert_eq!(rig.seen.load(Ordering::Relaxed), i);
    }
    assert_eq!(r.stats().skipped, 0);
    assert!(rig.bus.cancel_recurring(&r));
    assert!(
        !rig.bus.cancel_recurring(&r),
        "cancelling twice reports it was not running"
    );
    for _ in 0..5 {
        rig.clock.advance(sec);
        drain(&mut rig.shards);
    }
    assert_eq!(r.stats().fired, 10, "cancelled: no more");
    assert_eq!(rig.seen.load(Ordering::Relaxed), 10);
    assert_eq!(
        rig.shards.iter().map(|s| s.pending_timers()).sum::<usize>(),
        0,
        "its tick left the wheel"
    );
}

#[test]
fn the_handle_cancel_stops_it_too() {
    let mut rig = rig();
    let r = every(&rig, Duration::from_millis(10), MissedTicks::CatchUp);
    drain(&mut rig.shards);
    rig.clock.advance(Duration::from_millis(10));
    drain(&mut rig.shards);
    assert_eq!(r.stats().fired, 1);
    r.cancel();
    assert!(r.is_cancelled());
    rig.clock.advance(Duration::from_millis(100));
    drain(&mut rig.shards);
    assert_eq!(r.stats().fired, 1);
}

#[test]
fn skip_fires_once_after_a_stall_and_catch_up_fires_each_missed_tick() {
    let ms = Duration::from_millis;
    // Skip: a stall of 5 intervals (due at 10, polled at 55) fires once, skips 4, and
    // continues at 60.
    let mut rig = rig();
    let r = every(&rig, ms(10), MissedTicks::Skip);
    drain(&mut rig.shards);
    rig.clock.set_ns(55_000_000);
    drain(&mut rig.shards);
    let s = r.stats();
    assert_eq!((s.fired, s.skipped, s.next_due_ns), (1, 4, 60_000_000));
    rig.clock.set_ns(60_000_000);
    drain(&mut rig.shards);
    assert_eq!(r.stats().fired, 2);

    // CatchUp: the same stall fires all 5, then continues at 60.
    let mut rig2 = self::rig();
    let r2 = every(&rig2, ms(10), MissedTicks::CatchUp);
    drain(&mut rig2.shards);
    rig2.clock.set_ns(55_000_000);
    drain(&mut rig2.shards);
    let s = r2.stats();
    assert_eq!((s.fired, s.skipped, s.next_due_ns), (5, 0, 60_000_000));
    assert_eq!(rig2.seen.load(Ordering::Relaxed), 5);

    // A long stall catches up at most MAX_CATCH_UP per tick, over the following ticks.
    let mut rig3 = self::rig();
    let r3 = every(&rig3, ms(1), MissedTicks::CatchUp);
    drain(&mut rig3.shards);
    rig3.clock.set_ns(200_000_000);
    for s in rig3.shards.iter_mut() {
        s.poll(1);
    }
    let s = r3.stats();
    assert!(s.fired <= s.ticks * MAX_CATCH_UP && s.fired < 200, "{s:?}");
    drain(&mut rig3.shards);
    assert!(r3.stats().ticks >= 200 / MAX_CATCH_UP);
    assert_eq!(r3.stats().fired, 200);
    assert_eq!(r3.stats().next_due_ns, 201_000_000);
}

#[test]
fn cron_fires_at_its_occurrences_in_wall_time() {
    // Bus time 0 is 2026-01-01 12:00:30 UTC.
    let anchor = UNIX_EPOCH + Duration::from_secs(1_767_268_830);
    for (missed, fired_after_stall, skipped) in
        [(MissedTicks::Skip, 1, 2), (MissedTicks::CatchUp, 3, 0)]
    {
        let mut rig = rig();
        let publisher = rig
            .bus
            .publisher(rig.bus.register_agent("cron").unwrap())
            .unwrap();
        let every_five = Recurrence::cron("0 */5 * * * *")
            .unwrap()
            .anchored(anchor, 0);
        let r = rig
            .bus
            .recurring(
                every_five,
                publisher,
                Event::new(EventType::AGENT_STATUS),
                missed,
            )
            .unwrap();
        drain(&mut rig.shards);
        // The first occurrence is 12:05:00, 270 s after the anchor.
        assert_eq!(r.stats().next_due_ns, 270_000_000_000);
        rig.clock.set_ns(269_000_000_000);
        drain(&mut rig.shards);
        assert_eq!(r.stats().fired, 0);
        rig.clock.set_ns(270_000_000_000);
        drain(&mut rig.shards);
        assert_eq!(r.stats().fired, 1, "12:05");
        assert_eq!(r.stats().next_due_ns, 570_000_000_000, "12:10");
        // A stall over 12:10, 12:15 and 12:20 (polled at 12:21).
        rig.clock.set_ns(270_000_000_000 + 16 * 60 * 1_000_000_000);
        drain(&mut rig.shards);
        let s = r.stats();
        assert_eq!(
            (s.fired, s.skipped),
            (1 + fired_after_stall, skipped),
            "{missed:?}"
        );
        assert_eq!(
            s.next_due_ns,
            270_000_000_000 + 20 * 60 * 1_000_000_000,
            "12:25"
        );
        assert_eq!(rig.seen.load(Ordering::Relaxed), 1 + fired_after_stall);
    }
}

#[test]
fn cron_from_now_maps_the_bus_clock_to_wall_time() {
    let bus = Bus::builder().build().unwrap();
    let publisher = bus.publisher(bus.register_agent("c").unwrap()).unwrap();
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), |_| Outcome::Done)
        .unwrap();
    let r = bus
        .cron(
            "* * * * * *",
            publisher,
            Event::new(EventType::AGENT_STATUS),
            MissedTicks::Skip,
        )
        .unwrap();
    // Every second: the next one is within a second of now on the bus clock, and on a
    // whole second of wall time.
    let next = r.stats().next_due_ns;
    let now = bus.now_ns();
    assert!(next > now && next <= now + 1_000_000_000, "{next} vs {now}");
    let wall_next = SystemTime::now() + Duration::from_nanos(next - bus.now_ns().min(next));
    let sub = wall_next
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    assert!(
        !(50..950).contains(&sub),
        "next fire lands on a whole second of wall time ({sub} ms)"
    );
    bus.cancel_recurring(&r);
}

#[test]
fn bad_schedules_are_typed_errors() {
    let bus = Bus::builder().build().unwrap();
    let p = || bus.publisher(bus.register_agent("x").unwrap()).unwrap();
    let e = bus.every(
        Duration::ZERO,
        p(),
        Event::new(EventType::AGENT_STATUS),
        MissedTicks::Skip,
    );
    assert!(matches!(e, Err(RecurringError::ZeroInterval)));
    let e = bus.cron(
        "every tuesday",
        p(),
        Event::new(EventType::AGENT_STATUS),
        MissedTicks::Skip,
    );
    assert!(matches!(e, Err(RecurringError::Cron { .. })), "{e:?}");
    let e = bus.cron(
        "0 0 0 1 1 * 2001",
        p(),
        Event::new(EventType::AGENT_STATUS),
        MissedTicks::Skip,
    );
    assert!(matches!(e, Err(RecurringError::NoOccurrence)), "{e:?}");
}

/// On a worker thread with the real clock: an `every` schedule keeps firing on its own.
#[test]
fn worker_mode_real_clock_fires() {
    let bus = Bus::builder().build().unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    bus.subscribe(Filter::of_type(EventType::AGENT_STATUS), move |_| {
        s.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    })
    .unwrap();
    let p = bus.publisher(bus.register_agent("w").unwrap()).unwrap();
    let r = bus
        .every(
            Duration::from_millis(2),
            p,
            Event::new(EventType::AGENT_STATUS),
            MissedTicks::Skip,
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.load(Ordering::Relaxed) < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(seen.load(Ordering::Relaxed) >= 5, "{:?}", r.stats());
    assert!(bus.cancel_recurring(&r));
    let after = r.stats().fired;
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        r.stats().fired <= after + 1,
        "at most one firing in flight when cancelled"
    );
    bus.close();
}
