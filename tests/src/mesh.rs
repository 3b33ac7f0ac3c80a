//! One node of the bridged mesh the NATS tests run: a bus in worker mode, its bridge, and
//! counting subscribers for the three cross-process routing strategies.
//!
//! Every node, named `me`, with a peer named `peer`:
//! - **direct**: exports `mesh.dm` events addressed to `peer` (`dreamnet.mesh~ddm.<peer>`)
//!   and imports those addressed to `me`; counts the ones it receives from `peer`;
//! - **broadcast**: exports and imports `mesh.news` broadcasts; counts every one it sees
//!   (its own, delivered locally, and the peer's, from the wire);
//! - **group**: `mesh.job` events addressed to the group `workers` go out to a NATS queue
//!   group; the node's two local members (a bus group) take only what the queue group
//!   hands this process. Counts each job handled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dreamnet_bus::bridge::{Bridge, BridgeBuilder, Export, Import};
use dreamnet_bus::{
    AgentId, Balance, Bus, Event, EventType, Filter, Outcome, Publisher, Subscription, DEFAULT_SLOT,
};

/// The direct-message type.
pub const DM: &str = "mesh.dm";
/// The broadcast type.
pub const NEWS: &str = "mesh.news";
/// The group-work type.
pub const JOB: &str = "mesh.job";
/// The cross-process group's name (an agent name on every bus).
pub const WORKERS: &str = "workers";

/// What one node counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Direct events received from the peer.
    pub direct: u64,
    /// Broadcasts seen (local and remote).
    pub broadcast: u64,
    /// Jobs handled by this node's group members.
    pub group: u64,
}

/// A running node.
pub struct Node {
    /// The node's bus.
    pub bus: Arc<Bus>,
    /// Its bridge.
    pub bridge: Bridge,
    publisher: Publisher,
    peer: AgentId,
    workers: AgentId,
    dm: EventType,
    news: EventType,
    job: EventType,
    direct: Arc<AtomicU64>,
    broadcast: Arc<AtomicU64>,
    group: Arc<AtomicU64>,
    next_correlation: u64,
}

fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

fn counting(
    c: &Arc<AtomicU64>,
) -> impl FnMut(&dreamnet_bus::Delivery<'_, DEFAULT_SLOT>) -> Outcome + Send + 'static {
    let c = Arc::clone(c);
    move |_| {
        c.fetch_add(1, Ordering::Relaxed);
        Outcome::Done
    }
}

impl Node {
    /// Starts a node named `me` bridged through `url`, talking to `peer`.
    pub fn start(url: &str, me: &str, peer: &str) -> Result<Node, Box<dyn std::error::Error>> {
        Node::start_with(url, me, peer, |b| b)
    }

    /// As [`Node::start`], with the bridge builder adjusted by `tune`.
    pub fn start_with(
        url: &str,
        me: &str,
        peer: &str,
        tune: impl FnOnce(BridgeBuilder) -> BridgeBuilder,
    ) -> Result<Node, Box<dyn std::error::Error>> {
        let bus = Arc::new(Bus::builder().build()?);
        let me_id = bus.register_agent(me)?;
        let peer_id = bus.register_agent(peer)?;
        let workers = bus.register_agent(WORKERS)?;
        let dm = bus.register_event_type(DM)?;
        let news = bus.register_event_type(NEWS)?;
        let job = bus.register_event_type(JOB)?;
        let builder = Bridge::builder(url)
            .bus_id(me)
            .export(Export::agent(peer, Filter::of_type(dm)))
            .export(Export::broadcast(Filter::of_type(news)))
            .export(Export::agent(WORKERS, Filter::of_type(job)))
            .import(Import::agent(me))
            .import(Import::broadcast())
            .import(Import::group(WORKERS));
        let bridge = tune(builder).start(Arc::clone(&bus))?;
        let (direct, broadcast, group) = (counter(), counter(), counter());
        bus.subscribe(
            Subscription::new(Filter::of_type(dm).from_source(peer_id)).for_agent(me_id),
            counting(&direct),
        )?;
        bus.subscribe(Filter::of_type(news), counting(&broadcast))?;
        let g = bus.group(
            WORKERS,
            Subscription::new(bridge.wire_only(Filter::of_type(job))).for_agent(workers),
            Balance::RoundRobin,
        )?;
        bus.join(g, counting(&group))?;
        bus.join(g, counting(&group))?;
        let publisher = bus.publisher(me_id)?;
        Ok(Node {
            bus,
            bridge,
            publisher,
            peer: peer_id,
            workers,
            dm,
            news,
            job,
            direct,
            broadcast,
            group,
            next_correlation: 1,
        })
    }

    fn send(&mut self, event: Event) -> Result<(), Box<dyn std::error::Error>> {
        let event = event.with_correlation_id(self.next_correlation);
        self.next_correlation += 1;
        self.publisher.publish(event).map_err(|e| format!("{e}"))?;
        Ok(())
    }

    /// Sends `n` direct events to the peer.
    pub fn send_direct(&mut self, n: u64) -> Result<(), Box<dyn std::error::Error>> {
        for _ in 0..n {
            self.send(Event::new(self.dm).to(self.peer))?;
        }
        Ok(())
    }

    /// Sends `n` broadcasts.
    pub fn send_broadcast(&mut self, n: u64) -> Result<(), Box<dyn std::error::Error>> {
        for _ in 0..n {
            self.send(Event::new(self.news))?;
        }
        Ok(())
    }

    /// Sends `n` jobs to the cross-process group.
    pub fn send_jobs(&mut self, n: u64) -> Result<(), Box<dyn std::error::Error>> {
        for _ in 0..n {
            self.send(Event::new(self.job).to(self.workers))?;
        }
        Ok(())
    }

    /// What the node counted so far.
    pub fn counts(&self) -> Counts {
        Counts {
            direct: self.direct.load(Ordering::Relaxed),
            broadcast: self.broadcast.load(Ordering::Relaxed),
            group: self.group.load(Ordering::Relaxed),
        }
    }
}
