//! Lanes: the rings between publishers and shards. Each publisher owns, for each shard and
//! each priority, the producing end of one SPSC ring (`rtrb`); the shard owns the consuming
//! end. One writer and one reader per ring: no compare-and-swap on the hot path, FIFO per
//! publisher per priority by construction, and a publisher can check room on every ring
//! it will write before writing any (space only grows while it is the sole producer).

use rtrb::{Consumer, Producer, RingBuffer};

use crate::event::Event;
use crate::priority::Priority;

/// The producing ends a publisher holds for one shard, by priority.
pub(crate) type ProducerSet<const SLOT: usize> = [Producer<Event<SLOT>>; Priority::COUNT];

/// The consuming ends a shard holds for one publisher, by priority.
pub(crate) type ConsumerSet<const SLOT: usize> = [Consumer<Event<SLOT>>; Priority::COUNT];

/// Makes the four rings between one publisher and one shard. This allocates: it runs when
/// a publisher is created, never on the hot path.
pub(crate) fn lane_set<const SLOT: usize>(
    capacities: [usize; Priority::COUNT],
) -> (ProducerSet<SLOT>, ConsumerSet<SLOT>) {
    let [(p0, c0), (p1, c1), (p2, c2), (p3, c3)] = capacities.map(RingBuffer::new);
    ([p0, p1, p2, p3], [c0, c1, c2, c3])
}

/// One consuming end in a shard, tagged with its publisher.
pub(crate) struct Lane<const SLOT: usize> {
    pub(crate) publisher: u32,
    pub(crate) consumer: Consumer<Event<SLOT>>,
}
