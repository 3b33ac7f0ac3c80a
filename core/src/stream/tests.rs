//! The stream's counts under a real race: the producer (the handler, as on a shard) and
//! the consumer (the handle) on two threads, the ring tiny so that evictions, refusals
//! and in-place holds collide all the time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::LazyNow;
use crate::names::EventType;

/// Offers events to a `Lag` stream of `capacity` while a consumer drains it the way a
/// pull loop does (`next_ref_timeout`, adding up `Lagged(n)`), until the consumer has made
/// `calls` calls (so the two overlap however the threads are scheduled), then checks that
/// every event is accounted for and that the consumer was told of exactly the dropped
/// ones.
fn race(capacity: usize, calls: u64) {
    let (mut producer, consumer) =
        channel::<DEFAULT_SLOT>(capacity, StreamPolicy::Lag, WaitStrategy::Spin).unwrap();
    let mut stream = consumer(SubscriptionId(0));
    let made = Arc::new(AtomicU64::new(0));
    let shard = {
        let made = Arc::clone(&made);
        std::thread::spawn(move || {
            let event = Event::new(EventType(1));
            let now = LazyNow::known(0);
            let mut offered = 0u64;
            while made.load(Ordering::Relaxed) < calls {
                offered += 1;
                let delivery = Delivery {
                    event: &event,
                    subscription: SubscriptionId(0),
                    now: &now,
                    deliveries: 0,
                    last_error: None,
                };
                assert_eq!(producer.offer(&delivery), Outcome::Done);
            }
            // Dropping the producer closes the stream.
            offered
        })
    };
    let (mut consumed, mut lagged, mut call) = (0u64, 0u64, 0u64);
    loop {
        call += 1;
        made.store(call, Ordering::Relaxed);
        match stream.next_ref_timeout(Duration::from_millis(5)) {
            Ok(event) => {
                // Hold it a moment, as a consumer reading in place does.
                core::hint::black_box(&*event);
                consumed += 1;
            }
            Err(StreamError::Lagged(n)) => lagged += n,
            Err(StreamError::Timeout | StreamError::Empty) => {}
            Err(StreamError::Closed) => break,
        }
    }
    let offered = shard.join().unwrap();
    let stats = stream.stats();
    assert_eq!(stats.delivered, offered);
    assert_eq!(stats.queued, 0, "closed and drained: {stats:?}");
    assert_eq!(stats.consumed, consumed, "{stats:?}");
    assert_eq!(
        stats.delivered,
        stats.consumed + stats.dropped + stats.queued,
        "every delivered event is consumed, dropped or queued: {stats:?}"
    );
    assert_eq!(
        stats.lag_reported, stats.dropped,
        "the consumer is told of exactly the dropped events: {stats:?}"
    );
    assert_eq!(lagged, stats.lag_reported, "{stats:?}");
    assert!(stats.dropped > 0, "vacuous: nothing was dropped: {stats:?}");
}

/// The race that once lost one event in ten million under loadgen: the consumer holds
/// the oldest entry, the producer stores one more beside it (`capacity + 1` entries),
/// the consumer lets go of it unconsumed to report `Lagged`, and the producer's next push
/// must then evict two entries, and count both.
#[test]
fn lag_accounts_for_every_event_with_producer_and_consumer_racing() {
    for capacity in [1, 2, 3] {
        race(capacity, 100_000);
    }
}
