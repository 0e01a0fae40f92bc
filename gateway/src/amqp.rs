//! AMQP 0.9.1 (RabbitMQ): the node's handle on the broker ([`Broker`]: confirmed publishes,
//! request/reply calls to partners' transport queues and their answers) and the topology it
//! declares. It knows no `Ctx`: the connection supervisor (`node/amqp.rs`) wires it to the
//! consumers of client intake (`intake/amqp.rs`) and partner transport (`partner/amqp.rs`).
//!
//! The supervisor keeps one connection: connect, declare the topology (idempotent), open a
//! confirm-mode publishing channel and one consuming channel per intake queue, and when anything
//! fails, drop it all and start again with capped backoff. lapin's automatic recovery is off
//! (its default). The guarantees are those of the HTTP API:
//! - an intake delivery is acked only after the message is durable (or after its refusal was
//!   dead-lettered with a confirm), so a crash or a broker restart redelivers it, and intake's
//!   idempotency (client + message UUID) makes the redelivery harmless;
//! - a refused message is published to the dead-letter exchange with the problem code in its
//!   headers, and the `reply_to` queue (if any) gets the JSON problem with the same
//!   `correlation_id`; a transient failure (overloaded, store trouble) is requeued;
//! - a message that keeps failing is dead-lettered by the broker after `delivery_limit`
//!   deliveries (quorum queues, at-least-once dead-lettering), so it cannot block the queue;
//! - publishes to inbox queues are persistent, `mandatory` and wait for the broker's confirm;
//! - partners reached through the broker get the partner transport as request/reply: the
//!   signed envelope or notice goes to the partner's transport queue with our reply queue and a
//!   correlation id; the partner node runs the same checks as on its HTTPS listener (the sender
//!   named in a header must be the one whose directory certificate signed it) and answers with
//!   the signed receipt and an HTTP-style status. No answer in time is a failed attempt, retried
//!   like an unreachable HTTPS partner; the receiver's deduplication makes resends harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicNackOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::{RwLock, oneshot};

use crate::config::{Amqp, Client};

/// The node's handle on the broker: the current publishing channel and reply queue, if
/// connected, and the partner requests waiting for their answers.
#[derive(Debug, Default)]
pub struct Broker {
    publisher: RwLock<Option<Channel>>,
    reply_queue: RwLock<Option<String>>,
    waiting: std::sync::Mutex<HashMap<String, Answer>>,
}

/// Where a partner's answer (HTTP-style status, body) goes.
type Answer = oneshot::Sender<(u16, Vec<u8>)>;

impl Broker {
    /// A new connection's confirm-mode publishing channel, or none (disconnected).
    pub async fn set_publisher(&self, channel: Option<Channel>) {
        *self.publisher.write().await = channel;
    }

    /// A new connection's reply queue for partner answers, or none (disconnected).
    pub async fn set_reply_queue(&self, name: Option<String>) {
        *self.reply_queue.write().await = name;
    }

    /// Publishes persistently and waits for the broker's confirm; a publish that no queue takes
    /// is an error. Fails fast when the node is not connected.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), String> {
        self.publish_with(exchange, routing_key, body, properties, true).await
    }

    pub async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), String> {
        let channel = self
            .publisher
            .read()
            .await
            .clone()
            .ok_or("not connected to the broker")?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..BasicPublishOptions::default()
                },
                body,
                properties.with_delivery_mode(2),
            )
            .await
            .map_err(|e| format!("publish failed: {e}"))?
            .await
            .map_err(|e| format!("publish not confirmed: {e}"))?;
        if !confirm.is_ack() {
            return Err("the broker refused the publish (nack)".into());
        }
        if let Some(returned) = confirm.take_message() {
            return Err(format!(
                "no queue took the message ({} {})",
                returned.reply_code, returned.reply_text
            ));
        }
        Ok(())
    }

    /// Sends a signed envelope or notice to a partner's transport queue and waits for its answer
    /// (status, body) on this connection's reply queue.
    pub async fn call_partner(
        &self,
        node_name: &str,
        queue: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        let reply_to = self
            .reply_queue
            .read()
            .await
            .clone()
            .ok_or("not connected to the broker")?;
        let correlation = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let waiting = || self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting().insert(correlation.clone(), tx);
        let mut headers = FieldTable::default();
        headers.insert("x-poststelle-node".into(), long(node_name));
        let properties = BasicProperties::default()
            .with_content_type("application/xml".into())
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(correlation.as_str().into())
            .with_headers(headers);
        let outcome = match self.publish("", queue, &body, properties).await {
            Ok(()) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => Ok(answer),
                _ => Err(format!("no answer on the broker within {} ms", timeout.as_millis())),
            },
            Err(e) => Err(e),
        };
        waiting().remove(&correlation);
        outcome
    }
}

pub fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The arguments of every queue the node declares: quorum queues (replicated, durable).
fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), long("quorum"));
    t
}

/// Intake queues: refused-by-the-broker messages (delivery limit) go to the dead-letter
/// exchange, at least once (which needs `reject-publish` overflow).
fn intake_arguments(settings: &Amqp) -> FieldTable {
    let mut t = quorum();
    t.insert("x-dead-letter-exchange".into(), long(&settings.dead_letter_exchange));
    t.insert("x-dead-letter-strategy".into(), long("at-least-once"));
    t.insert("x-overflow".into(), long("reject-publish"));
    t.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(settings.delivery_limit as i32),
    );
    t
}

pub async fn declare(channel: &Channel, settings: &Amqp, clients: &[Client]) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    for (exchange, kind) in [
        (&settings.events_exchange, ExchangeKind::Topic),
        (&settings.dead_letter_exchange, ExchangeKind::Fanout),
    ] {
        channel
            .exchange_declare(exchange.as_str().into(), kind, durable, FieldTable::default())
            .await?;
    }
    channel
        .queue_declare(
            settings.dead_letter_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum(),
        )
        .await?;
    channel
        .queue_bind(
            settings.dead_letter_queue.as_str().into(),
            settings.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    if let Some(q) = &settings.transport_queue {
        channel
            .queue_declare(q.as_str().into(), QueueDeclareOptions::durable(), quorum())
            .await?;
    }
    for c in clients {
        if let Some(q) = &c.amqp_intake {
            channel
                .queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions::durable(),
                    intake_arguments(settings),
                )
                .await?;
        }
        if let Some(q) = &c.amqp_inbox {
            channel
                .queue_declare(q.as_str().into(), QueueDeclareOptions::durable(), quorum())
                .await?;
        }
    }
    Ok(())
}

/// Hands the answers arriving on the reply queue to the requests waiting for them.
pub async fn answers(broker: Arc<Broker>, mut consumer: lapin::Consumer) -> Result<(), String> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let Some(correlation) = delivery.properties.correlation_id().as_ref().map(|c| c.to_string()) else {
            continue;
        };
        let status = header_str(&delivery, "x-poststelle-status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let waiter = broker
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&correlation);
        if let Some(tx) = waiter {
            let _ = tx.send((status, delivery.data));
        }
    }
    Err("the broker ended the reply consumer".into())
}

pub fn header_str(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Hands a delivery back to the broker after `pause`; the queue's delivery limit bounds how
/// often, then the broker dead-letters it.
pub async fn requeue(delivery: Delivery, pause: Duration) -> Result<(), String> {
    tokio::time::sleep(pause).await;
    settle(
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await,
    )
}

/// An ack or nack that did not reach the broker (`false`: the channel is gone) leaves the
/// delivery unsettled; the broker delivers it again.
pub fn settle(r: Result<bool, lapin::Error>) -> Result<(), String> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err("the channel closed before the delivery was settled".into()),
        Err(e) => Err(e.to_string()),
    }
}
