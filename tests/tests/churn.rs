//! Subscribing and unsubscribing while traffic flows.
//!
//! The guarantees under test, from `Bus::subscribe` / `Bus::unsubscribe`:
//! - worker mode: once `unsubscribe` returns, the handler is never called again (unless it
//!   is called from a handler on that same shard);
//! - poll mode: the removal applies at the start of the owning shard's next `poll`;
//! - `subscribe` takes effect while traffic flows: events published after it returns reach
//!   the handler;
//! - subscriptions that stay lose nothing, and a group with a member that stays gives each
//!   of its events to exactly one member however the others come and go.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{drain_all, new_log, poll_bus, record, wait_until};
use dreamnet_bus::{
    Balance, Bus, Delivery, Event, EventType, Filter, Outcome, Publisher, Subscription,
    DEFAULT_SLOT,
};

fn counter(n: &Arc<AtomicU64>) -> impl FnMut(&Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send {
    let n = Arc::clone(n);
    move |_| {
        n.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    }
}

/// A churned subscription's handler: counts calls, and calls after `gone` was raised.
fn churned(
    gone: &Arc<AtomicBool>,
    calls: &Arc<AtomicU64>,
    late: &Arc<AtomicU64>,
) -> impl FnMut(&Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send {
    let (gone, calls, late) = (Arc::clone(gone), Arc::clone(calls), Arc::clone(late));
    move |_| {
        if gone.load(Ordering::Acquire) {
            late.fetch_add(1, Ordering::Relaxed);
        }
        calls.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    }
}

/// What a background producer published, by type.
#[derive(Default, Debug)]
struct Published {
    tasks: u64,
    statuses: u64,
}

fn produce(mut p: Publisher, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Published> {
    std::thread::spawn(move || {
        let mut out = Published::default();
        let mut i = 0u64;
        while !stop.load(Ordering::Acquire) {
            let ty = if i.is_multiple_of(2) {
                out.tasks += 1;
                EventType::AGENT_TASK
            } else {
                out.statuses += 1;
                EventType::AGENT_STATUS
            };
            if let Err(e) = p.publish(Event::new(ty).with_correlation_id(i)) {
                panic!("publish refused: {e:?}");
            }
            i += 1;
        }
        out
    })
}

#[test]
fn after_unsubscribe_returns_the_handler_is_never_called_and_others_lose_nothing() {
    const CHURNS: usize = 120;
    let bus = Bus::builder()
        .shards(2)
        .pinned(false)
        .build()
        .expect("worker bus");
    let agents: Vec<_> = (0..2)
        .map(|i| bus.register_agent(&format!("producer-{i}")).expect("agent"))
        .collect();
    // Subscriptions that stay: one per shard, and a group member that stays.
    let all = Arc::new(AtomicU64::new(0));
    let tasks = Arc::new(AtomicU64::new(0));
    let group_calls = Arc::new(AtomicU64::new(0));
    bus.subscribe(Subscription::new(Filter::any()).on_shard(0), counter(&all))
        .expect("subscribe");
    bus.subscribe(
        Subscription::new(Filter::of_type(EventType::AGENT_TASK)).on_shard(1),
        counter(&tasks),
    )
    .expect("subscribe");
    let group = bus
        .group(
            "statuses",
            Subscription::new(Filter::of_type(EventType::AGENT_STATUS)).on_shard(1),
            Balance::RoundRobin,
        )
        .expect("group");
    bus.join(group, counter(&group_calls)).expect("join");

    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = agents
        .iter()
        .map(|a| produce(bus.publisher(*a).expect("publisher"), Arc::clone(&stop)))
        .collect();

    let late = Arc::new(AtomicU64::new(0));
    let mut churned_calls = 0;
    for k in 0..CHURNS {
        let gone = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        // Alternate: plain subscriptions on either shard, and group members.
        let id = match k % 3 {
            0 => bus.subscribe(
                Subscription::new(Filter::any()).on_shard(k % 2),
                churned(&gone, &calls, &late),
            ),
            1 => bus.subscribe(
                Filter::of_type(EventType::AGENT_TASK),
                churned(&gone, &calls, &late),
            ),
            _ => {
                // A group member's calls count toward the group's total.
                let (g, c, l) = (Arc::clone(&gone), Arc::clone(&calls), Arc::clone(&late));
                let total = Arc::clone(&group_calls);
                bus.join(group, move |_| {
                    if g.load(Ordering::Acquire) {
                        l.fetch_add(1, Ordering::Relaxed);
                    }
                    c.fetch_add(1, Ordering::Relaxed);
                    total.fetch_add(1, Ordering::Relaxed);
                    Outcome::Done
                })
            }
        }
        .expect("subscribe while traffic flows");
        wait_until(
            "a churned subscription to get traffic",
            Duration::from_secs(30),
            || calls.load(Ordering::Relaxed) > 0,
        );
        bus.unsubscribe(id).expect("unsubscribe");
        gone.store(true, Ordering::Release);
        churned_calls += calls.load(Ordering::Relaxed);
    }
    stop.store(true, Ordering::Release);
    let published: Vec<Published> = producers
        .into_iter()
        .map(|h| h.join().expect("producer"))
        .collect();
    bus.close();

    assert_eq!(
        late.load(Ordering::Relaxed),
        0,
        "a handler was called after its unsubscribe returned"
    );
    assert!(churned_calls >= CHURNS as u64);
    let sent_tasks: u64 = published.iter().map(|p| p.tasks).sum();
    let sent_statuses: u64 = published.iter().map(|p| p.statuses).sum();
    assert_eq!(all.load(Ordering::Relaxed), sent_tasks + sent_statuses);
    assert_eq!(tasks.load(Ordering::Relaxed), sent_tasks);
    assert_eq!(
        group_calls.load(Ordering::Relaxed),
        sent_statuses,
        "each status event to exactly one group member, churn or not"
    );
    let stats = bus.stats();
    assert_eq!(stats.published, sent_tasks + sent_statuses);
    assert_eq!(stats.queued(), 0);
}

#[test]
fn poll_mode_unsubscribe_applies_before_the_next_poll_dispatches() {
    let (bus, mut shards) = poll_bus(1);
    let agent = bus.register_agent("sender").expect("agent");
    let log = new_log();
    let leaving = bus
        .subscribe(Filter::any(), record(&log, 0))
        .expect("subscribe");
    bus.subscribe(Filter::any(), record(&log, 1))
        .expect("subscribe");
    let mut p = bus.publisher(agent).expect("publisher");
    for c in 0..5 {
        p.try_publish(Event::new(EventType::AGENT_TASK).with_correlation_id(c))
            .expect("publish");
    }
    // Queued while subscribed, but the removal comes first at the next poll.
    bus.unsubscribe(leaving).expect("unsubscribe");
    assert_eq!(drain_all(&mut shards), 5);
    let set = common::delivery_set(&log);
    assert_eq!(set, (0..5).map(|c| (1, c)).collect::<Vec<_>>());
}

/// A subscriber made from inside a handler (an agent that, on a task, starts listening for
/// responses and then asks for them) must see the response published after `subscribe`
/// returned. Poll mode makes the interleaving deterministic: the response is published
/// while the shard is inside the `poll` that already applied its control messages.
#[test]
fn subscribe_from_a_handler_sees_events_published_after_it_returns() {
    let (bus, mut shards) = poll_bus(1);
    let bus = Arc::new(bus);
    let agent = bus.register_agent("agent").expect("agent");
    let responses = Arc::new(AtomicU64::new(0));
    let publisher = Arc::new(Mutex::new(bus.publisher(agent).expect("publisher")));
    {
        let (b, r, p) = (
            Arc::clone(&bus),
            Arc::clone(&responses),
            Arc::clone(&publisher),
        );
        let mut done = false;
        bus.subscribe(Filter::of_type(EventType::AGENT_TASK), move |_| {
            if !done {
                done = true;
                let r = Arc::clone(&r);
                b.subscribe(Filter::of_type(EventType::AGENT_RESPONSE), move |_| {
                    r.fetch_add(1, Ordering::Relaxed);
                    Outcome::Done
                })
                .expect("subscribe from a handler");
                p.lock()
                    .expect("publisher")
                    .try_publish(Event::new(EventType::AGENT_RESPONSE))
                    .expect("publish the response");
            }
            Outcome::Done
        })
        .expect("subscribe");
    }
    publisher
        .lock()
        .expect("publisher")
        .try_publish(Event::new(EventType::AGENT_TASK))
        .expect("publish the task");
    drain_all(&mut shards);
    drain_all(&mut shards);
    assert_eq!(
        responses.load(Ordering::Relaxed),
        1,
        "the response published after subscribe returned was not delivered (unmatched: {:?})",
        bus.stats().shards[0].unmatched
    );
}

/// Worker mode, the same guarantee without reentrancy: after `subscribe` returns, the
/// producer is told (an epoch it reads before each publish); every event it published
/// after it saw the epoch must reach the new subscription, from the first one on, until
/// the unsubscribe.
#[test]
fn every_event_published_after_subscribe_returned_reaches_the_new_subscription() {
    const ROUNDS: u64 = 60;
    let bus = Bus::builder()
        .shards(1)
        .pinned(false)
        .build()
        .expect("worker bus");
    let agent = bus.register_agent("producer").expect("agent");
    let all = Arc::new(AtomicU64::new(0));
    // Keeps the shard busy and the event type routed to it before each subscribe.
    bus.subscribe(Filter::any(), counter(&all))
        .expect("subscribe");
    let epoch = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut p = bus.publisher(agent).expect("publisher");
    let producer = {
        let (epoch, stop) = (Arc::clone(&epoch), Arc::clone(&stop));
        std::thread::spawn(move || {
            // first_seq[k]: the first event published after seeing epoch >= k.
            let mut first_seq = vec![0u64];
            let mut seq = 0u64;
            while !stop.load(Ordering::Acquire) {
                let e = epoch.load(Ordering::Acquire);
                while (first_seq.len() as u64) <= e {
                    first_seq.push(seq);
                }
                let c = (e << 32) | seq;
                if let Err(err) =
                    p.publish(Event::new(EventType::AGENT_TASK).with_correlation_id(c))
                {
                    panic!("publish refused: {err:?}");
                }
                seq += 1;
            }
            first_seq
        })
    };
    let mut received = Vec::new();
    for k in 1..=ROUNDS {
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let s = Arc::clone(&seen);
        let id = bus
            .subscribe(Filter::of_type(EventType::AGENT_TASK), move |d| {
                let c = d.header().correlation_id();
                if c >> 32 >= k {
                    s.lock().expect("seen").push(c & 0xffff_ffff);
                }
                Outcome::Done
            })
            .expect("subscribe");
        epoch.store(k, Ordering::Release);
        wait_until(
            "the new subscription to see traffic",
            Duration::from_secs(30),
            || seen.lock().expect("seen").len() >= 3,
        );
        bus.unsubscribe(id).expect("unsubscribe");
        received.push(seen.lock().expect("seen").clone());
    }
    stop.store(true, Ordering::Release);
    let first_seq = producer.join().expect("producer");
    bus.close();
    for (i, seqs) in received.iter().enumerate() {
        let k = i + 1;
        let first = seqs.first().copied();
        assert_eq!(
            first,
            Some(first_seq[k]),
            "round {k}: the first events published after subscribe returned never arrived"
        );
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "round {k}: a gap in the events published after subscribe returned"
        );
    }
}
