//! Client intake over AMQP: one consumer per client intake queue. A delivery goes through
//! [`crate::intake::submit`] and is acked only after its message is durable (or its refusal was
//! dead-lettered with a confirm); refusals carry the problem in headers and are answered on
//! `reply_to`; crashes and transient failures are requeued under the broker's delivery limit.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::types::ShortString;

use crate::amqp::{requeue, settle};
use crate::config::{Amqp, Client};
use crate::ctx::Ctx;
use crate::intake::Submitted;
use crate::problem::{Code, Problem};

/// Consumes one intake queue, one delivery at a time per task; `prefetch` deliveries are
/// handled concurrently.
pub async fn consume(
    ctx: Arc<Ctx>,
    client: Client,
    settings: Amqp,
    mut consumer: lapin::Consumer,
) -> Result<(), String> {
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

/// Dead-letters a refused delivery ourselves (a broker `reject` cannot carry the reason): a
/// confirmed copy to the dead-letter exchange with the problem in its headers.
async fn refuse(ctx: &Ctx, client: &Client, settings: &Amqp, delivery: &Delivery, p: &Problem) -> Result<(), String> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-poststelle-code".into(), crate::amqp::long(p.code.as_str()));
    headers.insert("x-poststelle-detail".into(), crate::amqp::long(&p.detail));
    headers.insert("x-poststelle-client".into(), crate::amqp::long(&client.name));
    headers.insert(
        "x-poststelle-queue".into(),
        crate::amqp::long(client.amqp_intake.as_deref().unwrap_or_default()),
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
