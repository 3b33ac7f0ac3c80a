//! JetStream: the namespace's stream, durable pull consumers, and acknowledgement by the
//! local handler's outcome.
//!
//! - One stream per namespace, `DREAMNET_<ns>` on `<ns>.js.*.*`, file storage, R1..R5,
//!   a two-minute dedupe window: a publish sent again with the same `Nats-Msg-Id`
//!   (`<bus id>.<event id>`) is stored once.
//! - Each [`JetStreamImport`](super::JetStreamImport) is a durable pull consumer with
//!   explicit acks and `MaxDeliver` = its retry policy's `max_attempts`. Its messages are
//!   published into the bus carrying a ticket in the wire mark; the import's handler runs
//!   as a bus subscription that takes only those, and its outcome becomes the ack: `Done`
//!   acks, `Retry` naks with the policy's backoff as the delay (the bus itself does not
//!   retry: JetStream redelivers), and `Fail` or a `Retry` on the last allowed delivery
//!   terminates the message and returns `Fail` to the bus, which dead-letters the event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::backoff::RetryPolicy;
use crate::envelope::ErrorCode;
use crate::outcome::Outcome;
use crate::subscription::{BoxedHandler, Delivery};

use super::config::BridgeError;
use super::counters::{incr, Counters};
use super::inbound::{AckCmd, Arrival, JsArrival, PendingMap, TICKET_SEQ_BITS};
use super::mark::{Mark, WireMark};
use super::subjects;

/// How long the stream remembers message ids for dedupe.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// The code a JetStream import's event is failed with when its deliveries run out.
pub const DELIVERIES_EXHAUSTED: ErrorCode = ErrorCode(0xB003);

/// Creates the namespace's stream, or finds it.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    namespace: &str,
    replicas: usize,
) -> Result<(), BridgeError> {
    js.get_or_create_stream(stream::Config {
        name: subjects::stream_name(namespace),
        subjects: vec![subjects::stream_subjects(namespace)],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: DEDUPE_WINDOW,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| BridgeError::JetStream(e.to_string()))
}

/// One durable consumer, as configured.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSpec {
    pub(crate) index: usize,
    pub(crate) durable: String,
    pub(crate) subject: String,
    pub(crate) policy: RetryPolicy,
    pub(crate) ack_wait: Duration,
}

impl ConsumerSpec {
    fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.subject.clone(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_deliver: i64::from(self.policy.max_attempts),
            ack_wait: self.ack_wait,
            ..Default::default()
        }
    }
}

/// Creates (or finds) the durable consumer.
pub(crate) async fn ensure_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    spec: &ConsumerSpec,
) -> Result<jetstream::consumer::Consumer<pull::Config>, BridgeError> {
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| BridgeError::JetStream(e.to_string()))?;
    stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await
        .map_err(|e| BridgeError::JetStream(e.to_string()))
}

/// Pulls messages for one consumer and forwards them to the sink, until `stop`. On any
/// error (server restarted, consumer lost) it backs off and starts pulling again.
pub(crate) async fn consume(
    js: jetstream::Context,
    stream_name: String,
    spec: ConsumerSpec,
    sink: mpsc::Sender<Arrival>,
    mut stop: watch::Receiver<bool>,
    max_delay: Duration,
) {
    let mut delay = Duration::from_millis(10);
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(consumer) = ensure_consumer(&js, &stream_name, &spec).await {
            if let Ok(mut messages) = consumer.messages().await {
                loop {
                    let next = tokio::select! {
                        next = messages.next() => next,
                        _ = stop.changed() => return,
                    };
                    let Some(Ok(message)) = next else { break };
                    delay = Duration::from_millis(10);
                    let delivered = message
                        .info()
                        .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX))
                        .unwrap_or(1);
                    let (msg, acker) = message.split();
                    let arrival = Arrival {
                        msg,
                        own_ok: true,
                        js: Some(JsArrival {
                            acker,
                            delivered,
                            consumer: spec.index,
                        }),
                    };
                    if sink.send(arrival).await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(max_delay);
    }
}

/// Sends acknowledgements as handlers decide them.
pub(crate) async fn acknowledge(mut rx: mpsc::UnboundedReceiver<AckCmd>) {
    while let Some(cmd) = rx.recv().await {
        // A lost ack means a redelivery (at least once); nothing to do here.
        let _ = cmd.acker.ack_with(cmd.kind).await;
    }
}

/// Whether an event carries a ticket of consumer `index` of this bridge.
pub(crate) fn from_consumer(
    mark: WireMark,
    index: usize,
) -> impl Fn(&crate::event::Header) -> bool {
    move |h| {
        Mark::of(h, mark.key).is_some_and(|m| {
            m.bridge == mark.bridge && m.ticket >> TICKET_SEQ_BITS == index as u64 + 1
        })
    }
}

/// Wraps a JetStream import's handler: its outcome on a ticketed event becomes the ack.
pub(crate) fn consumer_handler<const SLOT: usize>(
    mut inner: BoxedHandler<SLOT>,
    mark: WireMark,
    policy: RetryPolicy,
    pending: PendingMap,
    acks: mpsc::UnboundedSender<AckCmd>,
    counters: Arc<Counters>,
) -> impl FnMut(&Delivery<'_, SLOT>) -> Outcome + Send + 'static {
    move |d| {
        let outcome = inner(d);
        let Some(ticket) = mark.ticket_of(d.header()).filter(|t| *t != 0) else {
            return outcome;
        };
        let taken = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ticket);
        let Some(p) = taken else {
            return outcome;
        };
        let (kind, to_bus) = match outcome {
            Outcome::Done => {
                incr(&counters.in_acked);
                (jetstream::AckKind::Ack, Outcome::Done)
            }
            Outcome::Retry { after, .. } if policy.allows_another(p.delivered) => {
                incr(&counters.in_nacked);
                let delay = after
                    .unwrap_or_else(|| policy.exponential(p.delivered))
                    .min(policy.cap);
                (jetstream::AckKind::Nak(Some(delay)), Outcome::Done)
            }
            Outcome::Retry { .. } => {
                incr(&counters.in_termed);
                (
                    jetstream::AckKind::Term,
                    Outcome::Fail {
                        code: DELIVERIES_EXHAUSTED,
                    },
                )
            }
            Outcome::Fail { code } => {
                incr(&counters.in_termed);
                (jetstream::AckKind::Term, Outcome::Fail { code })
            }
        };
        let _ = acks.send(AckCmd {
            acker: p.acker,
            kind,
        });
        to_bus
    }
}
