//! The bridge's thread: a current-thread tokio runtime that connects, sets up JetStream
//! and the subscriptions, and runs every task of the bridge (inbound readers, the sink,
//! the acknowledger, JetStream consumers, and the outbound sender, which also waits for
//! the stop signal and drains at shutdown).
//!
//! Two connections when the bridge imports a group: the main one is `no_echo` (a bus
//! never hears its own broadcasts and direct events back), but NATS also keeps a
//! `no_echo` client's messages from its own queue subscriptions, so group imports
//! subscribe on a second connection with echo: a process in a group can be handed its own
//! work, and a group of one process still gets everything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::bus::Bus;
use crate::names::MetaKey;

use super::config::{BridgeError, Import, Mode};
use super::counters::{incr, Counters, Rejects};
use super::inbound::{self, Arrival, PendingMap, Sink};
use super::jetstream::{self, ConsumerSpec};
use super::mark::WireMark;
use super::outbound::{self, Outbound};
use super::sources::SourceMap;
use super::subjects;

/// Arrivals waiting for the sink (bounded: readers wait when the local bus is slow).
const SINK_CAPACITY: usize = 256;

/// Everything the runtime thread needs.
pub(crate) struct Plan<const SLOT: usize> {
    pub(crate) bus: Arc<Bus<SLOT>>,
    pub(crate) urls: Vec<String>,
    pub(crate) bus_id: String,
    pub(crate) namespace: String,
    pub(crate) mark: WireMark,
    /// Metadata keys kept local (not sent).
    pub(crate) meta: Vec<MetaKey>,
    pub(crate) routes: Vec<Mode>,
    pub(crate) imports: Vec<Import>,
    pub(crate) specs: Vec<ConsumerSpec>,
    pub(crate) policies: Vec<(crate::backoff::RetryPolicy, Vec<crate::names::EventType>)>,
    pub(crate) replicas: usize,
    pub(crate) max_hops: u8,
    pub(crate) inflight: usize,
    pub(crate) max_remote_agents: usize,
    /// Agent names declared remote (see `sources`).
    pub(crate) remote_agents: Vec<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_reconnect_delay: Duration,
    pub(crate) local_full_patience: Duration,
    pub(crate) ack_wait: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rejects: Arc<Rejects>,
    pub(crate) pending: PendingMap,
    pub(crate) ack_tx: mpsc::UnboundedSender<inbound::AckCmd>,
}

/// The bridge thread: a current-thread tokio runtime running every task of the bridge.
pub(crate) fn run<const SLOT: usize>(
    plan: Plan<SLOT>,
    out_rx: mpsc::Receiver<outbound::OutItem<SLOT>>,
    ack_rx: mpsc::UnboundedReceiver<inbound::AckCmd>,
    stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), BridgeError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(BridgeError::Runtime(e.to_string())));
            return;
        }
    };
    runtime.block_on(async move {
        let outbound = match setup(plan, ack_rx, stop.clone()).await {
            Ok(outbound) => outbound,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        // Runs until stop; the other tasks end with the runtime.
        outbound.run(out_rx, stop).await;
    });
}

/// Exponential reconnect delay: 10 ms doubling, capped at `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    let shift = attempts.min(16) as u32;
    Duration::from_millis(10u64 << shift).min(max)
}

/// Connects with the bridge's options; `no_echo` for the main connection.
async fn connect<const SLOT: usize>(
    plan: &Plan<SLOT>,
    no_echo: bool,
) -> Result<async_nats::Client, BridgeError> {
    let events = Arc::clone(&plan.counters);
    let max_delay = plan.max_reconnect_delay;
    let mut options = async_nats::ConnectOptions::new()
        .name(&plan.bus_id)
        .connection_timeout(plan.connect_timeout)
        .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
        .event_callback(move |event| {
            let counters = Arc::clone(&events);
            async move {
                match event {
                    // The first connection is not a reconnection.
                    async_nats::Event::Connected
                        if counters
                            .disconnects
                            .load(std::sync::atomic::Ordering::Relaxed)
                            > 0 =>
                    {
                        incr(&counters.reconnects)
                    }
                    async_nats::Event::Disconnected => incr(&counters.disconnects),
                    async_nats::Event::SlowConsumer(_) => incr(&counters.slow_consumer),
                    _ => {}
                }
            }
        });
    if no_echo {
        options = options.no_echo();
    }
    options
        .connect(plan.urls.clone())
        .await
        .map_err(|e| BridgeError::Connect {
            url: plan.urls.join(","),
            reason: e.to_string(),
        })
}

/// Connects, sets up JetStream and the subscriptions, and spawns the inbound tasks.
async fn setup<const SLOT: usize>(
    plan: Plan<SLOT>,
    ack_rx: mpsc::UnboundedReceiver<inbound::AckCmd>,
    stop: watch::Receiver<bool>,
) -> Result<Outbound<SLOT>, BridgeError> {
    let counters = Arc::clone(&plan.counters);
    let client = connect(&plan, true).await?;
    let group_client = if plan.imports.iter().any(|i| i.queue) {
        Some(connect(&plan, false).await?)
    } else {
        None
    };
    let needs_js = !plan.specs.is_empty() || plan.routes.contains(&Mode::JetStream);
    let js = needs_js.then(|| {
        async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(client.clone())
    });
    let stream_name = subjects::stream_name(&plan.namespace);
    if let Some(js) = &js {
        jetstream::ensure_stream(js, &plan.namespace, plan.replicas).await?;
        for spec in &plan.specs {
            jetstream::ensure_consumer(js, &stream_name, spec).await?;
        }
    }
    let (sink_tx, sink_rx) = mpsc::channel::<Arrival>(SINK_CAPACITY);
    for import in &plan.imports {
        let subject = subjects::listen(&plan.namespace, false, import.agent.as_deref());
        let subscribed = match (&group_client, import.queue) {
            (Some(group_client), true) => {
                let queue = subjects::token(import.agent.as_deref().unwrap_or(subjects::ALL));
                group_client.queue_subscribe(subject.clone(), queue).await
            }
            _ => client.subscribe(subject.clone()).await,
        };
        let mut subscriber = subscribed.map_err(|e| BridgeError::Subscribe {
            subject: subject.clone(),
            reason: e.to_string(),
        })?;
        let tx = sink_tx.clone();
        let queue = import.queue;
        tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(msg) = subscriber.next().await {
                let arrival = Arrival {
                    msg,
                    js: None,
                    own_ok: queue,
                };
                if tx.send(arrival).await.is_err() {
                    return;
                }
            }
        });
    }
    // The server has every subscription once the flush returns: imports see what is
    // published after `start` returns.
    for c in std::iter::once(&client).chain(group_client.as_ref()) {
        c.flush().await.map_err(|e| BridgeError::Subscribe {
            subject: "(flush)".into(),
            reason: e.to_string(),
        })?;
    }
    // The group connection lives as long as its subscriptions' tasks hold it.
    if let Some(group_client) = group_client {
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = stop.changed().await;
            drop(group_client);
        });
    }
    if let Some(js) = &js {
        for spec in plan.specs.iter().cloned() {
            tokio::spawn(jetstream::consume(
                js.clone(),
                stream_name.clone(),
                spec,
                sink_tx.clone(),
                stop.clone(),
                plan.max_reconnect_delay,
            ));
        }
    }
    drop(sink_tx);
    tokio::spawn(jetstream::acknowledge(ack_rx));
    let sink = Sink::new(
        Arc::clone(&plan.bus),
        plan.bus_id.clone(),
        plan.mark,
        plan.max_hops,
        plan.max_remote_agents,
        SourceMap::new(plan.remote_agents),
        plan.local_full_patience,
        plan.ack_wait,
        Arc::clone(&counters),
        plan.rejects,
        plan.pending,
        plan.ack_tx,
        plan.policies,
    );
    tokio::spawn(sink.run(sink_rx));
    Ok(Outbound::new(
        plan.bus,
        client,
        js,
        plan.routes,
        plan.namespace,
        plan.bus_id,
        counters,
        plan.mark.key,
        plan.meta,
        plan.inflight,
        plan.drain_timeout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_to_the_cap() {
        let max = Duration::from_secs(2);
        assert_eq!(reconnect_delay(0, max), Duration::from_millis(10));
        assert_eq!(reconnect_delay(3, max), Duration::from_millis(80));
        assert_eq!(reconnect_delay(100, max), max);
    }
}
