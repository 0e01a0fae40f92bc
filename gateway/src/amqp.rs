//! AMQP 0.9.1 (RabbitMQ) for legacy systems: client intake queues and inbox queues.
//!
//! Our own supervisor keeps one connection: connect, declare the topology (idempotent), open a
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
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{RwLock, oneshot, watch};

use crate::config::{Amqp, Client};
use crate::intake::Submitted;
use crate::node::Ctx;
use crate::problem::{Code, Problem};

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

    async fn publish_with(
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
}

fn long(s: &str) -> AMQPValue {
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

async fn declare(channel: &Channel, settings: &Amqp, clients: &[Client]) -> Result<(), lapin::Error> {
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

/// Runs the supervisor until `shutdown` turns true.
pub async fn supervise(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let Some(settings) = ctx.config.amqp.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = tokio::select! {
            r = session(&ctx, &settings) => r,
            _ = shutdown.changed() => Ok(()),
        };
        *ctx.broker.publisher.write().await = None;
        if *shutdown.borrow() {
            return;
        }
        match outcome {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "broker connection lost");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: returns when the connection or a consumer fails.
async fn session(ctx: &Arc<Ctx>, settings: &Amqp) -> Result<(), String> {
    let err = |e: lapin::Error| e.to_string();
    let conn = Connection::connect(
        &settings.url,
        ConnectionProperties::default().with_connection_name(format!("poststelle {}", ctx.config.node_name).into()),
    )
    .await
    .map_err(err)?;
    let setup = conn.create_channel().await.map_err(err)?;
    declare(&setup, settings, &ctx.config.clients).await.map_err(err)?;
    let publisher = conn.create_channel().await.map_err(err)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err)?;
    *ctx.broker.publisher.write().await = Some(publisher);
    let mut consumers = tokio::task::JoinSet::new();
    // Answers of partners reached through the broker: a server-named queue of this connection.
    let replies = conn.create_channel().await.map_err(err)?;
    let reply_queue = replies
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    let reply_consumer = replies
        .basic_consume(
            reply_queue.name().clone(),
            "poststelle-replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err)?;
    *ctx.broker.reply_queue.write().await = Some(reply_queue.name().to_string());
    consumers.spawn(answers(ctx.clone(), reply_consumer));
    if let Some(queue) = &settings.transport_queue {
        let channel = conn.create_channel().await.map_err(err)?;
        channel
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "poststelle-transport".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        consumers.spawn(transport(ctx.clone(), consumer, settings.prefetch));
    }
    tracing::info!("connected to the broker");
    // Deliveries whose outbox work (inbox publishes) waited for the connection go out now.
    ctx.wake(crate::store::JobKind::Push);
    for client in ctx.config.clients.iter().filter(|c| c.amqp_intake.is_some()) {
        let channel = conn.create_channel().await.map_err(err)?;
        channel
            .basic_qos(settings.prefetch, BasicQosOptions::default())
            .await
            .map_err(err)?;
        let queue = client.amqp_intake.clone().unwrap_or_default();
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                format!("poststelle-{}", client.name).as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err)?;
        let ctx = ctx.clone();
        let client = client.clone();
        let settings = settings.clone();
        consumers.spawn(async move { consume(ctx, client, settings, consumer).await });
    }
    // The reply consumer always runs, so this returns when any consumer (or the connection) fails.
    let result = match consumers.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(format!("consumer task failed: {e}")),
        None => Err("no consumers".to_owned()),
    };
    consumers.abort_all();
    *ctx.broker.reply_queue.write().await = None;
    let _ = conn.close(200, "reconnecting".into()).await;
    result
}

/// Consumes one intake queue, one delivery at a time per task; `prefetch` deliveries are
/// handled concurrently.
async fn consume(ctx: Arc<Ctx>, client: Client, settings: Amqp, mut consumer: lapin::Consumer) -> Result<(), String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(settings.prefetch as usize));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (ctx, client, settings) = (ctx.clone(), client.clone(), settings.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(&ctx, &client, &settings, delivery).await {
                // The delivery stays unacked; the broker redelivers it on the next connection.
                tracing::warn!(client = %client.name, error = %e, "intake delivery not settled");
            }
            drop(permit);
        });
    }
    Err("the broker ended the consumer".into())
}

async fn handle(ctx: &Arc<Ctx>, client: &Client, settings: &Amqp, delivery: Delivery) -> Result<(), String> {
    let body: Arc<[u8]> = Arc::from(delivery.data.as_slice());
    // Intake runs in a task of its own: a message that panics it is requeued (and counted by
    // the broker towards the delivery limit) instead of holding its prefetch slot forever.
    let outcome = {
        let (ctx, client) = (ctx.clone(), client.clone());
        tokio::spawn(async move {
            crate::failpoint!("amqp.intake");
            if let Some(marker) = crate::failpoints::value("amqp.poison")
                && body.windows(marker.len()).any(|w| w == marker.as_bytes())
            {
                panic!("fail point amqp.poison: this message crashes intake");
            }
            crate::intake::submit(&ctx, &client, body).await
        })
        .await
    };
    let reply_to = delivery.properties.reply_to().clone();
    let correlation = delivery.properties.correlation_id().clone();
    match outcome {
        Err(e) => {
            tracing::error!(client = %client.name, panic = e.is_panic(), "intake of a queued message crashed");
            requeue(delivery, Duration::from_millis(100)).await
        }
        Ok(Ok(Submitted::Accepted(id) | Submitted::AlreadyAccepted(id))) => {
            if let Some(to) = &reply_to {
                let answer = serde_json::json!({"id": id, "status": "accepted"});
                reply(ctx, to, correlation.clone(), &answer).await;
            }
            settle(delivery.ack(BasicAckOptions::default()).await)
        }
        // Transient: back off a little, then let the broker deliver it again.
        Ok(Err(p)) if matches!(p.code, Code::Overloaded | Code::Internal) => {
            requeue(delivery, Duration::from_millis(500)).await
        }
        Ok(Err(p)) => {
            refuse(ctx, client, settings, &delivery, &p).await?;
            if let Some(to) = &reply_to {
                let answer = serde_json::to_value(&p).unwrap_or_default();
                reply(ctx, to, correlation, &answer).await;
            }
            tracing::info!(client = %client.name, code = %p.code, "queued message refused");
            settle(delivery.ack(BasicAckOptions::default()).await)
        }
    }
}

/// Hands a delivery back to the broker after `pause`; the queue's delivery limit bounds how
/// often, then the broker dead-letters it.
async fn requeue(delivery: Delivery, pause: Duration) -> Result<(), String> {
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
fn settle(r: Result<bool, lapin::Error>) -> Result<(), String> {
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err("the channel closed before the delivery was settled".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Dead-letters a refused delivery ourselves (a broker `reject` cannot carry the reason): a
/// confirmed copy to the dead-letter exchange with the problem in its headers.
async fn refuse(ctx: &Ctx, client: &Client, settings: &Amqp, delivery: &Delivery, p: &Problem) -> Result<(), String> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-poststelle-code".into(), long(p.code.as_str()));
    headers.insert("x-poststelle-detail".into(), long(&p.detail));
    headers.insert("x-poststelle-client".into(), long(&client.name));
    headers.insert(
        "x-poststelle-queue".into(),
        long(client.amqp_intake.as_deref().unwrap_or_default()),
    );
    let properties = delivery.properties.clone().with_headers(headers);
    ctx.broker
        .publish(&settings.dead_letter_exchange, "", &delivery.data, properties)
        .await
}

/// Answers on the client's `reply_to` queue (best effort: the message's fate does not depend
/// on it, and the dead-letter queue or the status API still tell).
async fn reply(ctx: &Ctx, to: &ShortString, correlation: Option<ShortString>, answer: &serde_json::Value) {
    let mut properties = BasicProperties::default().with_content_type("application/json".into());
    if let Some(c) = correlation {
        properties = properties.with_correlation_id(c);
    }
    let body = serde_json::to_vec(answer).unwrap_or_default();
    if let Err(e) = ctx.broker.publish("", to.as_str(), &body, properties).await {
        tracing::warn!(error = %e, "reply not delivered");
    }
}

/// Publishes a received message to a client's inbox queue (confirmed, persistent, mandatory).
pub async fn deliver(
    ctx: &Ctx,
    client: &Client,
    message: &crate::store::Message,
    payload: &[u8],
) -> Result<(), String> {
    let queue = client.amqp_inbox.as_deref().ok_or("the client has no inbox queue")?;
    let mut headers = FieldTable::default();
    headers.insert("x-poststelle-message-type".into(), long(&message.message_type));
    headers.insert("x-poststelle-author".into(), long(&message.author));
    headers.insert("x-poststelle-reader".into(), long(&message.reader));
    headers.insert("x-poststelle-xoev-uuid".into(), long(&message.xoev_uuid));
    let properties = BasicProperties::default()
        .with_content_type("application/xml".into())
        .with_message_id(message.id.as_str().into())
        .with_headers(headers);
    ctx.broker.publish("", queue, payload, properties).await
}

/// Publishes a status event for every committed status change to the events exchange, routing
/// key `status.<state>`, JSON with metadata only (never the message, never an error's detail,
/// which may quote it). At most once: without a connection, events are dropped.
pub async fn publish_status_events(
    ctx: Arc<Ctx>,
    mut changes: tokio::sync::mpsc::Receiver<(String, crate::store::Status)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(settings) = ctx.config.amqp.clone() else {
        return;
    };
    loop {
        let (id, status) = tokio::select! {
            c = changes.recv() => match c { Some(c) => c, None => return },
            _ = shutdown.changed() => return,
        };
        // The status is the transition's; the rest is read now (it does not change).
        let Ok(Some(m)) = ctx.store.message(&id).await else {
            continue;
        };
        let event = serde_json::json!({
            "node": ctx.config.node_name,
            "message_id": m.id,
            "status": status.as_str(),
            "direction": m.direction,
            "message_type": m.message_type,
            "xoev_uuid": m.xoev_uuid,
            "author": m.author,
            "reader": m.reader,
            "partner": m.partner_node,
            "time": crate::store::rfc3339(crate::store::now_millis()),
        });
        let properties = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(m.id.as_str().into());
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let key = format!("status.{}", status.as_str());
        if let Err(e) = ctx
            .broker
            .publish_with(&settings.events_exchange, &key, &body, properties, false)
            .await
        {
            tracing::debug!(error = %e, "status event dropped");
        }
    }
}

fn header_str(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Sends a signed envelope or notice to a partner's transport queue and waits for its answer
/// (status, body) on this connection's reply queue.
pub async fn call(ctx: &Ctx, queue: &str, body: Vec<u8>, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let reply_to = ctx
        .broker
        .reply_queue
        .read()
        .await
        .clone()
        .ok_or("not connected to the broker")?;
    let correlation = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = oneshot::channel();
    let waiting = || ctx.broker.waiting.lock().unwrap_or_else(|e| e.into_inner());
    waiting().insert(correlation.clone(), tx);
    let mut headers = FieldTable::default();
    headers.insert("x-poststelle-node".into(), long(&ctx.config.node_name));
    let properties = BasicProperties::default()
        .with_content_type("application/xml".into())
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id(correlation.as_str().into())
        .with_headers(headers);
    let outcome = match ctx.broker.publish("", queue, &body, properties).await {
        Ok(()) => match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(format!("no answer on the broker within {} ms", timeout.as_millis())),
        },
        Err(e) => Err(e),
    };
    waiting().remove(&correlation);
    outcome
}

/// Hands the answers arriving on the reply queue to the requests waiting for them.
async fn answers(ctx: Arc<Ctx>, mut consumer: lapin::Consumer) -> Result<(), String> {
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let Some(correlation) = delivery.properties.correlation_id().as_ref().map(|c| c.to_string()) else {
            continue;
        };
        let status = header_str(&delivery, "x-poststelle-status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let waiter = ctx
            .broker
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

/// The receiving side of the partner transport over the broker: each delivery is handled like
/// a POST to `/v1/transport`, the answer goes to its `reply_to`, then the delivery is acked
/// (a crash in between redelivers it, and deduplication answers with the original receipt).
async fn transport(ctx: Arc<Ctx>, mut consumer: lapin::Consumer, prefetch: u16) -> Result<(), String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(prefetch as usize));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let node = header_str(&delivery, "x-poststelle-node");
            let response = crate::transport::from_broker(&ctx, node.as_deref(), delivery.data.clone()).await;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            if let Some(to) = delivery.properties.reply_to().as_ref() {
                let mut headers = FieldTable::default();
                headers.insert("x-poststelle-status".into(), long(&status.to_string()));
                let mut properties = BasicProperties::default()
                    .with_content_type("application/xml".into())
                    .with_headers(headers);
                if let Some(c) = delivery.properties.correlation_id() {
                    properties = properties.with_correlation_id(c.clone());
                }
                // The sender may have reconnected (its reply queue is gone): it will resend.
                if let Err(e) = ctx.broker.publish("", to.as_str(), &body, properties).await {
                    tracing::debug!(error = %e, "transport answer not delivered");
                }
            }
            if let Err(e) = settle(delivery.ack(BasicAckOptions::default()).await) {
                tracing::warn!(error = %e, "transport delivery not settled");
            }
            drop(permit);
        });
    }
    Err("the broker ended the transport consumer".into())
}
