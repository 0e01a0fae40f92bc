//! Partner transport over the broker, receiving side: the consumer of this node's transport
//! queue. Each delivery is checked like a POST to `/v1/transport` (the sender named in a header
//! must be the one whose directory certificate signed it); the answer goes to `reply_to`, then
//! the delivery is acked.

use std::sync::Arc;

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicAckOptions;
use lapin::types::FieldTable;

use crate::ctx::Ctx;

/// The receiving side of the partner transport over the broker: each delivery is handled like
/// a POST to `/v1/transport`, the answer goes to its `reply_to`, then the delivery is acked
/// (a crash in between redelivers it, and deduplication answers with the original receipt).
pub async fn consume(ctx: Arc<Ctx>, mut consumer: lapin::Consumer, prefetch: u16) -> Result<(), String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(prefetch as usize));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(|e| e.to_string())?;
        let permit = limit.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let node = crate::amqp::header_str(&delivery, "x-poststelle-node");
            let response = crate::partner::receive::from_broker(&ctx, node.as_deref(), delivery.data.clone()).await;
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .map(|b| b.to_vec())
                .unwrap_or_default();
            if let Some(to) = delivery.properties.reply_to().as_ref() {
                let mut headers = FieldTable::default();
                headers.insert("x-poststelle-status".into(), crate::amqp::long(&status.to_string()));
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
            if let Err(e) = crate::amqp::settle(delivery.ack(BasicAckOptions::default()).await) {
                tracing::warn!(error = %e, "transport delivery not settled");
            }
            drop(permit);
        });
    }
    Err("the broker ended the transport consumer".into())
}
