//! What a bridge is told: where NATS is, who this bus is on the mesh, which local events go
//! out (exports) and which subjects come in (imports), and its bounds. Every value is
//! checked in [`BridgeBuilder::start`], with a typed error that names it.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::RetryPolicy;
use crate::bus::Bus;
use crate::error::{BusError, NameError};
use crate::event::DEFAULT_SLOT;
use crate::names::validate_name;
use crate::outcome::Outcome;
use crate::subscription::{BoxedHandler, Delivery, Filter};

use super::subjects::valid_namespace;
use super::Bridge;

/// How a route crosses NATS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Core NATS: at most once, lowest latency.
    #[default]
    Core,
    /// JetStream: stored in the namespace's stream, at least once, deduplicated by
    /// `Nats-Msg-Id`.
    JetStream,
}

/// Local events that go out: a bus subscription of the bridge's, and where its events go.
#[derive(Debug)]
pub struct Export {
    pub(crate) filter: Filter,
    /// `None`: broadcasts (`<ns>.<type>.all`); `Some(agent)`: direct events to that agent
    /// (`<ns>.<type>.<agent>`), the bridge subscribing for it.
    pub(crate) agent: Option<String>,
    pub(crate) mode: Mode,
}

impl Export {
    /// Broadcasts that pass `filter` go to `<ns>.<type>.all`, reaching every process that
    /// imports broadcasts.
    pub fn broadcast(filter: Filter) -> Self {
        Export {
            filter,
            agent: None,
            mode: Mode::Core,
        }
    }

    /// Direct events to `agent` (a remote agent, or a cross-process group addressed by
    /// name) that pass `filter` go to `<ns>.<type>.<agent>`. The bridge registers `agent`
    /// on the local bus and subscribes for it.
    pub fn agent(agent: &str, filter: Filter) -> Self {
        Export {
            filter,
            agent: Some(agent.to_owned()),
            mode: Mode::Core,
        }
    }

    /// Sends through JetStream (at least once) instead of core NATS.
    pub fn jetstream(mut self) -> Self {
        self.mode = Mode::JetStream;
        self
    }
}

/// Core NATS subjects that come in: published into the local bus as their remote source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub(crate) agent: Option<String>,
    pub(crate) queue: bool,
}

impl Import {
    /// Every broadcast (`<ns>.*.all`): every importing process gets each one.
    pub fn broadcast() -> Self {
        Import {
            agent: None,
            queue: false,
        }
    }

    /// Direct events for `agent` (`<ns>.*.<agent>`): every process importing it gets each.
    pub fn agent(agent: &str) -> Self {
        Import {
            agent: Some(agent.to_owned()),
            queue: false,
        }
    }

    /// Direct events for `group`, as one member of a NATS queue group of that name: each
    /// event reaches exactly one importing process, which hands it to its local members
    /// (give them [`Bridge::wire_only`] filters so they do not also take local events).
    pub fn group(group: &str) -> Self {
        Import {
            agent: Some(group.to_owned()),
            queue: true,
        }
    }
}

/// A JetStream consumer whose local handler's outcome acknowledges each message: `Done`
/// acks, `Retry` naks with the retry policy's delay (until the policy's attempts are
/// spent, then terminates), `Fail` terminates; terminated messages land in the bus's
/// dead letters. Processes sharing a durable name share its work (a group); distinct
/// durable names each get every message.
pub struct JetStreamImport<const SLOT: usize = DEFAULT_SLOT> {
    pub(crate) durable: String,
    pub(crate) agent: Option<String>,
    pub(crate) filter: Filter,
    pub(crate) handler: BoxedHandler<SLOT>,
    pub(crate) retry: Option<RetryPolicy>,
}

impl<const SLOT: usize> core::fmt::Debug for JetStreamImport<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JetStreamImport")
            .field("durable", &self.durable)
            .field("agent", &self.agent)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> JetStreamImport<SLOT> {
    /// Consumes `<ns>.js.*.<agent or all>` with the durable consumer `durable`; the
    /// messages that pass `filter` go to `handler` on the local bus (only those: the
    /// handler never sees events that did not come from this consumer).
    pub fn new<F>(durable: &str, agent: Option<&str>, filter: Filter, handler: F) -> Self
    where
        F: FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static,
    {
        JetStreamImport {
            durable: durable.to_owned(),
            agent: agent.map(str::to_owned),
            filter,
            handler: Box::new(handler),
            retry: None,
        }
    }

    /// The retry policy: MaxDeliver is its `max_attempts`, a `Retry`'s nak delay its
    /// backoff (default: the bus's retry policy).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }
}

/// A bridge configuration was refused, or the bridge could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The namespace is not 1 to 32 ASCII letters, digits, `-` or `_`.
    #[error("namespace {0:?} must be 1 to 32 ASCII letters, digits, '-' or '_'")]
    BadNamespace(String),
    /// A name (bus id, agent, durable, metadata key) was refused.
    #[error("{what} {value:?}: {error}")]
    BadName {
        /// Which setting.
        what: &'static str,
        /// The value, handed back.
        value: String,
        /// Why.
        error: NameError,
    },
    /// A numeric setting was out of range.
    #[error("{what} is {value}; it must be in {min}..={max}")]
    OutOfRange {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// No server URL was given.
    #[error("no NATS server URL")]
    NoUrl,
    /// Connecting to NATS failed.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL(s) given.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// Creating the namespace's stream or a consumer failed.
    #[error("JetStream setup failed: {0}")]
    JetStream(String),
    /// Subscribing to a subject failed.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's reason.
        reason: String,
    },
    /// The local bus refused a registration or a subscription.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The bridge's runtime thread could not start or stopped early.
    #[error("bridge runtime: {0}")]
    Runtime(String),
}

/// Builds and starts a [`Bridge`].
///
/// ```no_run
/// use std::sync::Arc;
/// use dreamnet_bus::bridge::{Bridge, Export, Import};
/// use dreamnet_bus::{Bus, EventType, Filter};
///
/// let bus = Arc::new(Bus::builder().build()?);
/// let bridge = Bridge::builder("nats://127.0.0.1:4222")
///     .bus_id("orders-1")
///     .export(Export::broadcast(Filter::of_type(EventType::SYSTEM_EVENT)))
///     .import(Import::broadcast())
///     .start(Arc::clone(&bus))?;
/// # drop(bridge);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BridgeBuilder<const SLOT: usize = DEFAULT_SLOT> {
    pub(crate) urls: Vec<String>,
    pub(crate) bus_id: Option<String>,
    pub(crate) namespace: String,
    pub(crate) max_hops: u8,
    pub(crate) queue_capacity: usize,
    pub(crate) inflight: usize,
    pub(crate) exports: Vec<Export>,
    pub(crate) imports: Vec<Import>,
    pub(crate) js_imports: Vec<JetStreamImport<SLOT>>,
    pub(crate) meta_keys: Vec<String>,
    pub(crate) remote_agents: Vec<String>,
    pub(crate) replicas: usize,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) max_remote_agents: usize,
    pub(crate) reject_capacity: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) local_full_patience: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) drain_timeout: Duration,
}

impl<const SLOT: usize> core::fmt::Debug for BridgeBuilder<SLOT> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("urls", &self.urls)
            .field("bus_id", &self.bus_id)
            .field("namespace", &self.namespace)
            .field("exports", &self.exports)
            .field("imports", &self.imports)
            .field("js_imports", &self.js_imports)
            .finish_non_exhaustive()
    }
}

impl<const SLOT: usize> BridgeBuilder<SLOT> {
    /// A bridge to the server(s) at `urls` (comma-separated for a cluster), with the
    /// defaults: namespace `dreamnet`, a random bus id, hop limit 4, an outbound queue of
    /// 1024 events, 256 JetStream publishes in flight, R1 stream, 64 remote agents.
    pub fn new(urls: &str) -> Self {
        BridgeBuilder {
            urls: urls
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
            bus_id: None,
            namespace: "dreamnet".to_owned(),
            max_hops: 4,
            queue_capacity: 1024,
            inflight: 256,
            exports: Vec::new(),
            imports: Vec::new(),
            js_imports: Vec::new(),
            meta_keys: Vec::new(),
            remote_agents: Vec::new(),
            replicas: 1,
            retry: None,
            max_remote_agents: 64,
            reject_capacity: 256,
            connect_timeout: Duration::from_secs(5),
            max_reconnect_delay: Duration::from_secs(2),
            local_full_patience: Duration::from_secs(2),
            ack_wait: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
        }
    }

    /// This bus's id on the mesh (a bus name: letters, digits, `. - _ : /`; no commas). It
    /// goes on every message's path and into JetStream dedupe ids, so it must be unique
    /// per process and stable across restarts for dedupe to span them.
    pub fn bus_id(mut self, id: &str) -> Self {
        self.bus_id = Some(id.to_owned());
        self
    }

    /// The subject prefix and stream (`DREAMNET_<namespace>`).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_owned();
        self
    }

    /// Bridges an event may cross, `1..=255` (an event at the limit is not sent again).
    pub fn max_hops(mut self, hops: u8) -> Self {
        self.max_hops = hops;
        self
    }

    /// The outbound queue's capacity: when it is full, the bridge's handler returns
    /// `Retry` and the bus waits under the retry policy (backpressure, nothing unbounded).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// JetStream publishes awaiting their ack at once (beyond: the outbound queue waits).
    pub fn inflight(mut self, n: usize) -> Self {
        self.inflight = n;
        self
    }

    /// Adds an export (local events that go out).
    pub fn export(mut self, export: Export) -> Self {
        self.exports.push(export);
        self
    }

    /// Adds a core NATS import (subjects that come in).
    pub fn import(mut self, import: Import) -> Self {
        self.imports.push(import);
        self
    }

    /// Adds a JetStream consumer with its local handler.
    pub fn jetstream_import(mut self, import: JetStreamImport<SLOT>) -> Self {
        self.js_imports.push(import);
        self
    }

    /// Keeps metadata entries with this key on this bus: they are left out of the
    /// `Dreamnet-Meta` headers (each one left behind is counted in `out_meta_kept_local`).
    /// Every other entry crosses the wire by its key's name, and the receiving bus maps
    /// the name to its own key id.
    pub fn keep_local_meta(mut self, key: &str) -> Self {
        self.meta_keys.push(key.to_owned());
        self
    }

    /// Declares `agent` an agent of another process: events from the wire with this
    /// source are published as its local id even when this bus has registered the name
    /// itself (to filter `from_source`, say). Without the declaration a source name that
    /// this bus registered for itself is refused (`DropReason::LocalSource`), so no remote
    /// process can act as a local agent; names this bus has never seen are mapped without
    /// one, and so are the agents of `Export::agent` (the rule: `bridge::sources`).
    pub fn remote_agent(mut self, agent: &str) -> Self {
        self.remote_agents.push(agent.to_owned());
        self
    }

    /// Replicas of the namespace's stream, `1..=5` (3 for a three-server cluster).
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n;
        self
    }

    /// The retry policy of the exports' subscriptions (how long a full outbound queue is
    /// retried before the event is dead-lettered); default: [`EXPORT_RETRY`](super::EXPORT_RETRY).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Distinct remote agents mapped to local publishers (each holds its own rings).
    pub fn max_remote_agents(mut self, n: usize) -> Self {
        self.max_remote_agents = n;
        self
    }

    /// Capacity of the bridge's dead letters (messages that never became events).
    pub fn reject_capacity(mut self, n: usize) -> Self {
        self.reject_capacity = n;
        self
    }

    /// How long a reconnect waits at most (reconnects back off exponentially up to it).
    pub fn max_reconnect_delay(mut self, delay: Duration) -> Self {
        self.max_reconnect_delay = delay;
        self
    }

    /// How long an arriving event waits for room on a full local bus before it is
    /// dropped (core) or nak'ed (JetStream).
    pub fn local_full_patience(mut self, patience: Duration) -> Self {
        self.local_full_patience = patience;
        self
    }

    /// JetStream consumers' ack wait: a message unacknowledged that long is redelivered.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// At shutdown, how long JetStream publishes in flight may take to be acknowledged.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Checks the configuration, connects, sets up streams, consumers and subscriptions,
    /// and starts the bridge's runtime thread. Returns once everything is subscribed.
    pub fn start(self, bus: Arc<Bus<SLOT>>) -> Result<Bridge<SLOT>, BridgeError> {
        self.check()?;
        Bridge::start(self, bus)
    }

    fn check(&self) -> Result<(), BridgeError> {
        if self.urls.is_empty() {
            return Err(BridgeError::NoUrl);
        }
        if !valid_namespace(&self.namespace) {
            return Err(BridgeError::BadNamespace(self.namespace.clone()));
        }
        let name = |what: &'static str, value: &str| {
            validate_name(value).map_err(|error| BridgeError::BadName {
                what,
                value: value.to_owned(),
                error,
            })
        };
        if let Some(id) = &self.bus_id {
            name("bus id", id)?;
        }
        for e in &self.exports {
            if let Some(a) = &e.agent {
                name("export agent", a)?;
            }
        }
        for i in &self.imports {
            if let Some(a) = &i.agent {
                name("import agent", a)?;
            }
        }
        for j in &self.js_imports {
            if let Some(a) = &j.agent {
                name("JetStream import agent", a)?;
            }
            durable_name(&j.durable)?;
        }
        for a in &self.remote_agents {
            name("remote agent", a)?;
        }
        for k in &self.meta_keys {
            name("metadata key", k)?;
        }
        let range = |what: &'static str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(BridgeError::OutOfRange {
                    what,
                    value: value as u64,
                    min: min as u64,
                    max: max as u64,
                })
            }
        };
        range("max_hops", usize::from(self.max_hops), 1, 255)?;
        range("queue_capacity", self.queue_capacity, 1, 1 << 20)?;
        range("inflight", self.inflight, 1, 1 << 16)?;
        range("replicas", self.replicas, 1, 5)?;
        range("max_remote_agents", self.max_remote_agents, 1, 1 << 16)?;
        range("reject_capacity", self.reject_capacity, 1, 1 << 20)?;
        Ok(())
    }
}

/// A durable consumer name: a bus name without `.`, `:` or `/` (NATS refuses them).
fn durable_name(durable: &str) -> Result<(), BridgeError> {
    validate_name(durable).map_err(|error| BridgeError::BadName {
        what: "durable",
        value: durable.to_owned(),
        error,
    })?;
    if let Some(found) = durable.chars().find(|c| matches!(c, '.' | ':' | '/')) {
        return Err(BridgeError::BadName {
            what: "durable",
            value: durable.to_owned(),
            error: NameError::InvalidChar {
                name: durable.to_owned(),
                found,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> BridgeBuilder {
        BridgeBuilder::new("nats://127.0.0.1:4222")
    }

    #[test]
    fn bad_settings_are_typed_errors_with_the_value() {
        assert_eq!(
            BridgeBuilder::<DEFAULT_SLOT>::new(" , ").check(),
            Err(BridgeError::NoUrl)
        );
        assert_eq!(
            builder().namespace("a.b").check(),
            Err(BridgeError::BadNamespace("a.b".into()))
        );
        assert!(matches!(
            builder().bus_id("has space").check(),
            Err(BridgeError::BadName { what: "bus id", value, .. }) if value == "has space"
        ));
        assert!(matches!(
            builder().max_hops(0).check(),
            Err(BridgeError::OutOfRange {
                what: "max_hops",
                value: 0,
                ..
            })
        ));
        assert!(matches!(
            builder().replicas(7).check(),
            Err(BridgeError::OutOfRange {
                what: "replicas",
                value: 7,
                ..
            })
        ));
        assert!(matches!(
            builder()
                .jetstream_import(JetStreamImport::new("a.b", None, Filter::any(), |_| {
                    Outcome::Done
                }))
                .check(),
            Err(BridgeError::BadName {
                what: "durable",
                ..
            })
        ));
        assert_eq!(builder().check(), Ok(()));
    }

    #[test]
    fn urls_split_on_commas() {
        let b = BridgeBuilder::<DEFAULT_SLOT>::new("nats://127.0.0.1:1, nats://127.0.0.1:2");
        assert_eq!(b.urls, ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]);
    }
}
