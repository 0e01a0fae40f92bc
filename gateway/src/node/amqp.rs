//! The broker connection's supervisor: one connection per node process; connect, declare the
//! topology (idempotent), open a confirm-mode publishing channel, the reply queue for partner
//! answers and one consuming channel per intake queue and for the node's transport queue; when
//! anything fails, drop it all and start again with capped backoff. lapin's automatic recovery
//! is off (its default). The guarantees: `amqp.rs`.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::config::Amqp;
use crate::ctx::Ctx;

/// Runs the supervisor until `shutdown` turns true.
pub async fn supervise(ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let Some(settings) = ctx.config().amqp.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = tokio::select! {
            r = session(&ctx, &settings) => r,
            _ = shutdown.changed() => Ok(()),
        };
        ctx.broker.set_publisher(None).await;
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
        ConnectionProperties::default().with_connection_name(format!("poststelle {}", ctx.config().node_name).into()),
    )
    .await
    .map_err(err)?;
    let setup = conn.create_channel().await.map_err(err)?;
    crate::amqp::declare(&setup, settings, &ctx.config().clients)
        .await
        .map_err(err)?;
    let publisher = conn.create_channel().await.map_err(err)?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(err)?;
    ctx.broker.set_publisher(Some(publisher)).await;
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
    ctx.broker.set_reply_queue(Some(reply_queue.name().to_string())).await;
    consumers.spawn(crate::amqp::answers(ctx.broker.clone(), reply_consumer));
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
        consumers.spawn(crate::partner::amqp::consume(ctx.clone(), consumer, settings.prefetch));
    }
    tracing::info!("connected to the broker");
    // Deliveries whose outbox work (inbox publishes) waited for the connection go out now.
    ctx.wake(crate::store::JobKind::Push);
    for client in ctx.config().clients.iter().filter(|c| c.amqp_intake.is_some()) {
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
        consumers.spawn(async move { crate::intake::amqp::consume(ctx, client, settings, consumer).await });
    }
    // The reply consumer always runs, so this returns when any consumer (or the connection) fails.
    let result = match consumers.join_next().await {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(format!("consumer task failed: {e}")),
        None => Err("no consumers".to_owned()),
    };
    consumers.abort_all();
    ctx.broker.set_reply_queue(None).await;
    let _ = conn.close(200, "reconnecting".into()).await;
    result
}
