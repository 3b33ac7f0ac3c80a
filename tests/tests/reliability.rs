//! Handler outcomes, retries on the timer wheel, dead letters, redrive and scheduled
//! delivery, through the public API, with a manual clock so time moves only when we say.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dreamnet_bus::{
    Bus, DeadLetter, DeadReason, ErrorCode, Event, EventType, Filter, FullPolicy, Jitter,
    ManualClock, Outcome, Priority, RetryPolicy, Shard, Status, Subscription,
};

const MS: Duration = Duration::from_millis(1);

fn policy(max_attempts: u32, base_ms: u64) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .base(MS * base_ms as u32)
        .multiplier(2.0)
        .cap(Duration::from_secs(1))
        .jitter(Jitter::None)
        .build()
        .expect("valid policy")
}

struct Rig {
    bus: Bus,
    clock: ManualClock,
    shards: Vec<Shard>,
}

fn rig(retry: RetryPolicy) -> Rig {
    rig_with(Bus::builder().retry_policy(retry))
}

fn rig_with(builder: dreamnet_bus::BusBuilder) -> Rig {
    let clock = ManualClock::new();
    let (bus, shards) = builder
        .manual_clock(clock.clone())
        .build_polled()
        .expect("bus");
    Rig { bus, clock, shards }
}

impl Rig {
    fn poll(&mut self) -> usize {
        self.shards.iter_mut().map(|s| s.poll(usize::MAX)).sum()
    }
    fn advance(&mut self, d: Duration) -> usize {
        self.clock.advance(d);
        self.poll()
    }
    fn dead(&self) -> Vec<DeadLetter> {
        let mut out = Vec::new();
        self.bus.dead_letters().inspect(|d| out.push(d.clone()));
        out
    }
}

fn publish(rig: &Rig, ty: EventType) -> u64 {
    let agent = rig.bus.register_agent("tester").expect("agent");
    let mut p = rig.bus.publisher(agent).expect("publisher");
    p.try_publish(Event::new(ty)).expect("published").id
}

#[test]
fn a_retry_redelivers_only_to_the_subscription_that_asked() {
    let mut r = rig(policy(5, 10));
    let done_calls = Arc::new(AtomicU32::new(0));
    let seen_attempts = Arc::new(Mutex::new(Vec::new()));
    let d = Arc::clone(&done_calls);
    let ok = r
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_TASK), move |_| {
            d.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        })
        .expect("sub");
    let seen = Arc::clone(&seen_attempts);
    let flaky = r
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_TASK), move |d| {
            let mut s = seen.lock().expect("lock");
            s.push((d.envelope().attempts, d.envelope().status));
            if s.len() < 3 {
                Outcome::retry(42)
            } else {
                Outcome::Done
            }
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    assert_eq!(r.poll(), 1);
    // Backoff 10 ms, then 20 ms (no jitter): not a tick early.
    assert_eq!(r.advance(MS * 9), 0);
    assert_eq!(r.advance(MS), 1);
    assert_eq!(r.advance(MS * 19), 0);
    assert_eq!(r.advance(MS), 1);
    assert_eq!(r.advance(Duration::from_secs(5)), 0);
    assert_eq!(
        done_calls.load(Ordering::Relaxed),
        1,
        "Done subscriber saw it once"
    );
    let attempts: Vec<u32> = seen_attempts
        .lock()
        .expect("lock")
        .iter()
        .map(|a| a.0)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert!(seen_attempts
        .lock()
        .expect("lock")
        .iter()
        .all(|a| a.1 == Status::Processing));
    let s = r.bus.subscription_stats(flaky).expect("stats");
    assert_eq!(
        (s.accepted, s.attempts, s.retried, s.done, s.dead_lettered),
        (1, 3, 2, 1, 0)
    );
    let s = r.bus.subscription_stats(ok).expect("stats");
    assert_eq!((s.accepted, s.attempts, s.done), (1, 1, 1));
    assert!(r.dead().is_empty());
}

#[test]
fn fail_dead_letters_at_once_with_its_code_and_history() {
    let mut r = rig(policy(5, 10));
    let sub = r
        .bus
        .subscribe(Filter::any(), |_| Outcome::fail(7))
        .expect("sub");
    let id = publish(&r, EventType::AGENT_ERROR);
    r.clock.advance(MS * 3);
    r.poll();
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.reason, DeadReason::Failed { code: ErrorCode(7) });
    assert_eq!(d.subscription, Some(sub));
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_error, Some(ErrorCode(7)));
    assert_eq!(d.event.header().id(), id);
    assert_eq!(d.envelope.status, Status::Failed);
    assert_eq!(
        (d.first_attempt_ns, d.last_attempt_ns),
        (3_000_000, 3_000_000)
    );
    assert_eq!(r.bus.stats().shards[0].retries_scheduled, 0);
}

#[test]
fn exhausted_retries_dead_letter_and_call_the_hook_once() {
    let hook_calls = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&hook_calls);
    let mut r = rig_with(
        Bus::builder()
            .retry_policy(policy(3, 1))
            .on_dead_letter(move |d| {
                if d.reason == DeadReason::RetriesExhausted {
                    h.fetch_add(1, Ordering::Relaxed);
                }
            }),
    );
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    r.bus
        .subscribe(Filter::any(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::retry(9)
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    for _ in 0..10 {
        r.advance(MS * 10);
    }
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "max_attempts counts the first"
    );
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::RetriesExhausted);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error, Some(ErrorCode(9)));
    assert!(dead[0].last_attempt_ns > dead[0].first_attempt_ns);
    assert_eq!(hook_calls.load(Ordering::Relaxed), 1);
}

#[test]
fn a_panicking_handler_is_dead_lettered_and_the_shard_keeps_running() {
    let mut r = rig(policy(3, 1));
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    let bad = r
        .bus
        .subscribe(Filter::of_type(EventType::AGENT_TASK), |_| panic!("bug"))
        .expect("sub");
    r.bus
        .subscribe(Filter::any(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    std::panic::set_hook(prev);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    let dead = r.dead();
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.reason == DeadReason::Panicked));
    assert_eq!(r.bus.stats().shards[0].panicked, 2);
    assert_eq!(r.bus.subscription_stats(bad).expect("stats").panicked, 2);
}

#[test]
fn a_passed_deadline_dead_letters_before_delivery_and_while_waiting() {
    let mut r = rig(policy(10, 10));
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    r.bus
        .subscribe(Filter::any(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Outcome::retry(1)
        })
        .expect("sub");
    let agent = r.bus.register_agent("a").expect("agent");
    let mut p = r.bus.publisher(agent).expect("publisher");
    r.clock.advance(MS * 100);
    // Already past its deadline when the shard takes it: never delivered.
    p.try_publish(Event::new(EventType::AGENT_TASK).with_deadline_ns(50_000_000))
        .expect("published");
    r.poll();
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    // Deadline 15 ms ahead: first try at once, retry due in 10 ms, the next would be 20 ms
    // later, past the deadline.
    p.try_publish(Event::new(EventType::AGENT_TASK).with_deadline_ns(115_000_000))
        .expect("published");
    r.poll();
    r.advance(MS * 10);
    r.advance(MS * 100);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    let reasons: Vec<DeadReason> = r.dead().iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        vec![DeadReason::DeadlineExceeded, DeadReason::DeadlineExceeded]
    );
    // The record keeps the attempts made and the last code returned: none for the event
    // that expired before delivery; two (the second returned code 1) for the other.
    let history: Vec<(u32, Option<ErrorCode>)> = r
        .dead()
        .iter()
        .map(|d| (d.attempts, d.last_error))
        .collect();
    assert_eq!(history, vec![(0, None), (2, Some(ErrorCode(1)))]);
}

#[test]
fn a_full_wheel_dead_letters_the_retry_with_retry_capacity() {
    let mut r = rig_with(Bus::builder().retry_policy(policy(5, 10)).timer_capacity(1));
    r.bus
        .subscribe(Filter::any(), |_| Outcome::retry(3))
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::RetryCapacity);
    assert_eq!(r.bus.stats().shards[0].timers_pending, 1);
}

#[test]
fn retry_after_overrides_the_policy_delay_within_the_cap() {
    let mut r = rig(policy(5, 10));
    let calls = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&calls);
    r.bus
        .subscribe(Filter::any(), move |_| {
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                Outcome::Retry {
                    code: ErrorCode(1),
                    after: Some(MS * 300),
                }
            } else {
                Outcome::Done
            }
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    assert_eq!(r.advance(MS * 299), 0);
    assert_eq!(r.advance(MS), 1);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[test]
fn dead_letter_ring_policies_drop_oldest_or_reject_new_and_count() {
    for policy_kind in [FullPolicy::DropOldest, FullPolicy::RejectNew] {
        let mut r = rig_with(Bus::builder().dead_letters(2, policy_kind));
        r.bus
            .subscribe(Filter::any(), |_| Outcome::fail(1))
            .expect("sub");
        let ids: Vec<u64> = (0..3).map(|_| publish(&r, EventType::AGENT_TASK)).collect();
        r.poll();
        let kept: Vec<u64> = r.dead().iter().map(|d| d.event.header().id()).collect();
        match policy_kind {
            FullPolicy::DropOldest => assert_eq!(kept, ids[1..].to_vec()),
            FullPolicy::RejectNew => assert_eq!(kept, ids[..2].to_vec()),
        }
        assert_eq!(r.bus.dead_letters().dropped(), 1);
        assert_eq!(r.bus.stats().dead_letters_dropped, 1);
        assert_eq!(r.bus.dead_letters().len(), 2);
    }
}

#[test]
fn inspect_drain_and_redrive_round_trip() {
    let mut r = rig(policy(1, 1));
    let fail_first = Arc::new(AtomicU32::new(2));
    let f = Arc::clone(&fail_first);
    let sub = r
        .bus
        .subscribe(Filter::any(), move |d| {
            assert_eq!(d.envelope().attempts, 1, "redrive resets attempts");
            if f.load(Ordering::Relaxed) > 0 {
                f.fetch_sub(1, Ordering::Relaxed);
                Outcome::fail(5)
            } else {
                Outcome::Done
            }
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    publish(&r, EventType::AGENT_STATUS);
    r.poll();
    assert_eq!(r.bus.dead_letters().len(), 2);
    // Inspect does not remove.
    assert_eq!(r.dead().len(), 2);
    // Redrive only the task.
    let sent = r
        .bus
        .redrive(10, |d| {
            d.event.header().event_type() == EventType::AGENT_TASK
        })
        .expect("redrive");
    assert_eq!(sent, 1);
    assert_eq!(r.bus.dead_letters().len(), 1);
    r.poll();
    assert_eq!(
        r.bus.dead_letters().len(),
        1,
        "redriven task succeeded, status stays"
    );
    let s = r.bus.subscription_stats(sub).expect("stats");
    assert_eq!((s.accepted, s.done, s.dead_lettered), (3, 1, 2));
    assert_eq!(r.bus.stats().shards[0].redriven, 1);
    // Drain into the caller's buffer, then purge.
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    let mut out = Vec::with_capacity(4);
    assert_eq!(r.bus.dead_letters().drain_into(1, &mut out), 1);
    assert_eq!(out[0].event.header().event_type(), EventType::AGENT_STATUS);
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    assert_eq!(
        r.bus.dead_letters().purge(),
        0,
        "the task handler succeeds now"
    );
    r.bus
        .subscribe(Filter::any(), |_| Outcome::fail(8))
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    assert_eq!(r.bus.dead_letters().purge(), 1);
    assert!(r.bus.dead_letters().is_empty());
}

#[test]
fn redrive_to_another_subscription_and_unknown_target_is_an_error() {
    let mut r = rig(policy(1, 1));
    r.bus
        .subscribe(Filter::of_type(EventType::AGENT_TASK), |_| Outcome::fail(1))
        .expect("sub");
    let got = Arc::new(AtomicU32::new(0));
    let g = Arc::clone(&got);
    let rescuer = r
        .bus
        .subscribe(Filter::of_type(EventType::SYSTEM_EVENT), move |_| {
            g.fetch_add(1, Ordering::Relaxed);
            Outcome::Done
        })
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    assert_eq!(r.bus.redrive_to(10, rescuer, |_| true).expect("redrive"), 1);
    r.poll();
    assert_eq!(got.load(Ordering::Relaxed), 1);
    r.bus.unsubscribe(rescuer).expect("unsub");
    assert!(r.bus.redrive_to(10, rescuer, |_| true).is_err());
}

#[test]
fn publish_after_fires_not_before_its_time_and_cancel_stops_it() {
    let mut r = rig(policy(1, 1));
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = Arc::clone(&got);
    r.bus
        .subscribe(Filter::any(), move |d| {
            g.lock().expect("lock").push((d.header().id(), d.now_ns()));
            Outcome::Done
        })
        .expect("sub");
    let agent = r.bus.register_agent("scheduler").expect("agent");
    let mut p = r.bus.publisher(agent).expect("publisher");
    let (first, _) = p
        .try_publish_after(Event::new(EventType::SYSTEM_EVENT), MS * 5)
        .expect("scheduled");
    let (_, token) = p
        .try_publish_after(Event::new(EventType::SYSTEM_EVENT), MS * 5)
        .expect("scheduled");
    r.poll();
    assert_eq!(r.bus.stats().shards[0].timers_pending, 2);
    assert!(r.bus.cancel_scheduled(token));
    assert_eq!(r.advance(MS * 4), 0);
    r.advance(MS);
    assert_eq!(*got.lock().expect("lock"), vec![(first.id, 5_000_000)]);
    assert!(!r.bus.cancel_scheduled(token), "already cancelled");
    let st = r.bus.stats();
    assert_eq!(
        (
            st.shards[0].scheduled_fired,
            st.shards[0].scheduled_cancelled
        ),
        (1, 1)
    );
    // A time in the past delivers at the next poll.
    p.try_publish_at(Event::new(EventType::SYSTEM_EVENT), 0)
        .expect("scheduled");
    r.poll();
    assert_eq!(got.lock().expect("lock").len(), 2);
}

#[test]
fn close_dead_letters_what_still_waits_on_the_wheel_as_shutdown() {
    let mut r = rig(policy(5, 100));
    let sub = r
        .bus
        .subscribe(Filter::any(), |_| Outcome::retry(2))
        .expect("sub");
    publish(&r, EventType::AGENT_TASK);
    r.poll();
    assert_eq!(r.bus.stats().shards[0].timers_pending, 1);
    r.bus.close();
    r.poll();
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::Shutdown);
    assert_eq!(dead[0].attempts, 1);
    // The identity holds after close too: accepted = done + dead-lettered.
    let s = r.bus.subscription_stats(sub).expect("stats");
    assert_eq!((s.accepted, s.done, s.dead_lettered), (1, 0, 1));
    let st = r.bus.stats();
    assert_eq!(st.shards[0].timers_pending, 0);
    assert_eq!(st.shards[0].dead_by_reason[DeadReason::Shutdown.index()], 1);
    assert_eq!(
        st.shards[0].dead_by_reason.iter().sum::<u64>(),
        st.shards[0].dead_lettered
    );
}

/// A small xorshift so the workload is random but repeatable.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Subscribers that succeed, fail, retry a random number of times and panic; at
/// quiescence, per subscription accepted = done + dead-lettered, and bus-wide every
/// publish attempt is accepted or rejected with an error.
#[test]
fn conservation_under_a_mixed_workload() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut r = rig_with(
        Bus::builder()
            .shards(2)
            .retry_policy(policy(4, 1))
            .ring_capacity_all(256)
            .dead_letters(1 << 16, FullPolicy::RejectNew)
            .timer_capacity(1 << 14),
    );
    let mut subs = Vec::new();
    for (i, kind) in ["ok", "fail", "retry", "panic", "mixed"].iter().enumerate() {
        let mut rng = Rng(0x1234_5678 + i as u64);
        let kind = *kind;
        let handler = move |_: &dreamnet_bus::Delivery<'_, 256>| -> Outcome {
            let roll = rng.next() % 100;
            match kind {
                "ok" => Outcome::Done,
                "fail" if roll < 30 => Outcome::fail(1),
                "retry" if roll < 50 => Outcome::retry(2),
                "panic" if roll < 10 => panic!("injected"),
                "mixed" if roll < 20 => Outcome::retry(3),
                "mixed" if roll < 25 => Outcome::fail(4),
                "mixed" if roll < 28 => panic!("injected"),
                _ => Outcome::Done,
            }
        };
        let filter = if i % 2 == 0 {
            Filter::any()
        } else {
            Filter::of_types(&[EventType::AGENT_TASK, EventType::AGENT_STATUS])
        };
        subs.push(
            r.bus
                .subscribe(Subscription::new(filter).on_shard(i % 2), handler)
                .expect("sub"),
        );
    }
    let agents: Vec<_> = (0..3)
        .map(|i| r.bus.register_agent(&format!("agent-{i}")).expect("agent"))
        .collect();
    let mut pubs: Vec<_> = agents
        .iter()
        .map(|a| r.bus.publisher(*a).expect("pub"))
        .collect();
    let types = [
        EventType::AGENT_TASK,
        EventType::AGENT_STATUS,
        EventType::SYSTEM_HEALTH,
    ];
    let mut rng = Rng(99);
    let (mut attempts, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    for round in 0..400 {
        for (k, p) in pubs.iter_mut().enumerate() {
            for j in 0..20 {
                let ty = types[(rng.next() % 3) as usize];
                let prio = Priority::ALL[(rng.next() % 4) as usize];
                attempts += 1;
                match p.try_publish(
                    Event::new(ty)
                        .with_priority(prio)
                        .with_correlation_id((round * 100 + k * 20 + j) as u64),
                ) {
                    Ok(_) => accepted += 1,
                    Err(e) => {
                        assert!(e.is_full(), "only backpressure expected");
                        rejected += 1;
                    }
                }
            }
        }
        r.advance(MS);
    }
    // Quiesce: rings empty, wheels empty.
    for _ in 0..10_000 {
        r.advance(MS * 5);
        if r.shards
            .iter()
            .all(|s| s.is_idle() && s.pending_timers() == 0)
        {
            break;
        }
    }
    std::panic::set_hook(prev);
    assert!(r
        .shards
        .iter()
        .all(|s| s.is_idle() && s.pending_timers() == 0));
    let stats = r.bus.stats();
    assert_eq!(stats.published, accepted);
    assert_eq!(stats.rejected(), rejected);
    assert_eq!(accepted + rejected, attempts);
    let mut dead_total = 0;
    for sub in &subs {
        let s = r.bus.subscription_stats(*sub).expect("stats");
        assert_eq!(s.accepted, s.done + s.dead_lettered, "sub {sub:?}: {s:?}");
        assert!(s.accepted > 0);
        dead_total += s.dead_lettered;
    }
    assert_eq!(r.bus.dead_letters().len() as u64, dead_total);
    assert_eq!(r.bus.dead_letters().dropped(), 0);
    let retries: u64 = stats.shards.iter().map(|s| s.retries_scheduled).sum();
    let fired: u64 = stats.shards.iter().map(|s| s.retries_fired).sum();
    assert_eq!(retries, fired, "every scheduled retry fired");
    assert!(retries > 0 && dead_total > 0);
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    r.bus.dead_letters().inspect(|d| {
        assert!(d.subscription.is_some());
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(count.load(Ordering::Relaxed), dead_total);
}

/// Regression (found by the `bus_ops` fuzz target): an in-place publish (`try_publish_with`)
/// that matched no subscription was dead-lettered (`NoSubscriber`) without its correlation
/// id, so a redrive delivered it with correlation 0 (and predicates on it misrouted it).
#[test]
fn an_unroutable_in_place_publish_keeps_its_correlation_id_in_the_dead_letters() {
    let mut r = rig_with(Bus::builder().dead_letter_unroutable(true));
    let agent = r.bus.register_agent("tester").expect("agent");
    let mut p = r.bus.publisher(agent).expect("publisher");
    let draft = dreamnet_bus::Draft::new(EventType::AGENT_TASK).with_correlation_id(42);
    let receipt = p.try_publish_with(draft, &7u32).expect("published");
    assert_eq!(receipt.shards, 0);
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::NoSubscriber);
    assert_eq!(dead[0].event.header().correlation_id(), 42);
    let seen = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&seen);
    r.bus
        .subscribe(Filter::any(), move |d| {
            s.store(d.header().correlation_id(), Ordering::Relaxed);
            Outcome::Done
        })
        .expect("subscribe");
    assert_eq!(r.bus.redrive(1, |_| true), Ok(1));
    assert_eq!(r.poll(), 1);
    assert_eq!(seen.load(Ordering::Relaxed), 42);
}

#[test]
fn a_deadline_passing_on_the_wheel_keeps_the_attempts_made_and_the_last_code() {
    let mut r = rig(policy(5, 10));
    r.bus
        .subscribe(Filter::any(), |_| Outcome::Retry {
            code: ErrorCode(77),
            after: Some(Duration::from_micros(200)),
        })
        .expect("sub");
    let agent = r.bus.register_agent("a").expect("agent");
    let mut p = r.bus.publisher(agent).expect("publisher");
    // Due 0.2 ms after the first attempt, before the deadline (0.5 ms), but the 1 ms tick
    // fires it at 1 ms, after the deadline: it expires on the wheel.
    p.try_publish(Event::new(EventType::AGENT_TASK).with_deadline_ns(500_000))
        .expect("published");
    r.poll();
    r.advance(MS);
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::DeadlineExceeded);
    assert_eq!(
        (dead[0].attempts, dead[0].last_error),
        (1, Some(ErrorCode(77)))
    );
}

#[test]
fn close_letters_a_scheduled_event_once_even_when_it_waits_on_two_shards() {
    let mut r = rig_with(Bus::builder().shards(2));
    let calls = Arc::new(AtomicU32::new(0));
    for shard in 0..2 {
        let c = Arc::clone(&calls);
        r.bus
            .subscribe(
                Subscription::new(Filter::any()).on_shard(shard),
                move |_| {
                    c.fetch_add(1, Ordering::Relaxed);
                    Outcome::Done
                },
            )
            .expect("sub");
    }
    let agent = r.bus.register_agent("tester").expect("agent");
    let mut p = r.bus.publisher(agent).expect("publisher");
    let (receipt, _token) = p
        .try_publish_after(Event::new(EventType::AGENT_TASK), MS * 5)
        .expect("scheduled");
    assert_eq!(receipt.shards, 2);
    r.poll();
    let st = r.bus.stats();
    assert_eq!(
        (st.shards[0].timers_pending, st.shards[1].timers_pending),
        (1, 1)
    );
    r.bus.close();
    r.poll();
    // One letter for the event, from the first shard to flush it; no handler ran.
    let dead = r.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, DeadReason::Shutdown);
    assert_eq!(dead[0].event.header().id(), receipt.id);
    assert_eq!((dead[0].subscription, dead[0].shard), (None, 0));
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    let st = r.bus.stats();
    assert_eq!(st.shards[0].dead_by_reason[DeadReason::Shutdown.index()], 1);
    // The other shard counts it as cancelled (`ShardStats::scheduled_cancelled`).
    assert_eq!(
        (st.shards[1].dead_lettered, st.shards[1].scheduled_cancelled),
        (0, 1)
    );
    assert!(st.shards.iter().all(|s| s.timers_pending == 0));
    // Nothing fires later either.
    assert_eq!(r.advance(MS * 10), 0);
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}
