//! The deliver stage (receiving node): an opened message handed to its client where the client
//! takes pushes — POST to its callback URL, or a confirmed publish to its AMQP inbox queue —
//! in the form the client takes (`validate::for_client`); then `delivered`, and the sender is
//! told (`notice.rs`). Clients that fetch from the inbox (REST, XTA MsgBox) acknowledge through
//! `intake/`, which makes the same change.

use lapin::BasicProperties;
use lapin::types::FieldTable;

use super::worker::drop_job;
use super::{Failure, Outcome};
use crate::config::Client;
use crate::ctx::Ctx;
use crate::store::{Blob, Change, Job, Message, Status};

pub async fn push(ctx: &Ctx, job: &Job, m: &Message) -> Outcome {
    if m.status != Status::Opened {
        return drop_job(ctx, job).await;
    }
    let config = ctx.config();
    let Some(client) = config
        .clients
        .iter()
        .find(|c| c.authority == m.reader && c.takes_pushes())
    else {
        return drop_job(ctx, job).await;
    };
    let payload = ctx
        .store
        .blob(&m.id, Blob::Payload)
        .await?
        .ok_or_else(|| Failure::transient("payload missing"))?;
    // The stylesheet's messages may quote the message, so the logged error names only the code;
    // the client sees the whole problem when it fetches the message from its inbox.
    let payload = super::validate::for_client(client, payload, &ctx.registry)
        .await
        .map_err(|p| {
            Failure::Transient(format!(
                "the outbound transform for client {} failed: {}",
                client.name, p.code
            ))
        })?;
    if let Some(dir) = &client.drop_dir {
        let manifest = match ctx.store.blob(&m.id, Blob::Attachments).await? {
            Some(b) => Some(crate::files::Manifest::decode(&b).map_err(|p| Failure::Transient(p.detail))?),
            None => None,
        };
        let (dir, id, files) = (dir.clone(), m.id.clone(), ctx.config().files());
        tokio::task::spawn_blocking(move || to_folder(&dir, &id, &payload, &files, manifest.as_ref()))
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?
            .map_err(|e| Failure::Transient(format!("drop folder {}: {e}", client.name)))?;
        crate::failpoint!("drop.after_write");
        tracing::info!(message_id = %m.id, client = %client.name, "message written to the client's drop folder");
        return delivered(
            ctx,
            job,
            m,
            format!("written to the drop folder of client {}", client.name),
        )
        .await;
    }
    if client.amqp_inbox.is_some() {
        return match to_queue(ctx, client, m, &payload).await {
            Ok(()) if client.delivered_on_confirm => {
                tracing::info!(message_id = %m.id, client = %client.name, "message published to the client's queue");
                delivered(
                    ctx,
                    job,
                    m,
                    format!("confirmed by the broker for client {}", client.name),
                )
                .await
            }
            // The client acknowledges through the HTTP API.
            Ok(()) => drop_job(ctx, job).await,
            Err(e) => Err(Failure::Transient(format!("client queue: {e}"))),
        };
    }
    let url = client.push_url.as_deref().unwrap_or_default();
    let response = ctx
        .push_client
        .post(url)
        .header("content-type", "application/xml")
        .header("idempotency-key", m.id.as_str())
        .header("x-poststelle-message-id", m.id.as_str())
        .body(payload)
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            crate::failpoint!("push.after_callback");
            tracing::info!(message_id = %m.id, client = %client.name, "message pushed to client");
            delivered(ctx, job, m, format!("pushed to client {}", client.name)).await
        }
        Ok(r) => Err(Failure::Transient(format!("client callback answered {}", r.status()))),
        Err(e) => Err(Failure::Transient(format!("client callback unreachable: {e}"))),
    }
}

/// An opened message handed to its client (push callback or confirmed queue publish): delivered,
/// and the sender is told.
async fn delivered(ctx: &Ctx, job: &Job, m: &Message, detail: String) -> Outcome {
    super::notice::end_with_notice(
        ctx,
        Change {
            message_id: m.id.clone(),
            finish_job: Some(job.id),
            expect: vec![Status::Opened],
            status: Some(Status::Delivered),
            detail: Some(detail),
            ..Change::default()
        },
    )
    .await
}

/// Publishes a received message to a client's inbox queue (confirmed, persistent, mandatory).
async fn to_queue(ctx: &Ctx, client: &Client, message: &crate::store::Message, payload: &[u8]) -> Result<(), String> {
    let queue = client.amqp_inbox.as_deref().ok_or("the client has no inbox queue")?;
    let mut headers = FieldTable::default();
    headers.insert(
        "x-poststelle-message-type".into(),
        crate::amqp::long(&message.message_type),
    );
    headers.insert("x-poststelle-author".into(), crate::amqp::long(&message.author));
    headers.insert("x-poststelle-reader".into(), crate::amqp::long(&message.reader));
    headers.insert("x-poststelle-xoev-uuid".into(), crate::amqp::long(&message.xoev_uuid));
    let properties = BasicProperties::default()
        .with_content_type("application/xml".into())
        .with_message_id(message.id.as_str().into())
        .with_headers(headers);
    ctx.broker.publish("", queue, payload, properties).await
}

/// Writes a received message into a drop folder: its attachments first, into `in/<id>/` (each
/// durable, names made safe), then `in/<id>.xml`, so that when the message appears everything
/// that belongs to it is there. Written again after a crash before `delivered` was committed:
/// the same files under the same names (the id is the legacy system's idempotency key).
fn to_folder(
    dir: &crate::dropdir::DropDir,
    id: &str,
    payload: &[u8],
    files: &crate::files::Files,
    manifest: Option<&crate::files::Manifest>,
) -> std::io::Result<()> {
    use crate::dropdir::{safe_name, sync_dir, write_durable};
    let inbox = dir.inbox();
    if let Some(manifest) = manifest.filter(|m| !m.files.is_empty()) {
        let folder = inbox.join(id);
        std::fs::create_dir_all(&folder)?;
        let mut names = std::collections::BTreeSet::new();
        for (n, a) in manifest.files.iter().enumerate() {
            let fallback = format!("attachment-{n}");
            let mut name = safe_name(a.filename.as_deref().unwrap_or_default(), &fallback);
            if !names.insert(name.clone()) {
                name = format!("{n}-{name}");
                names.insert(name.clone());
            }
            let mut from = std::fs::File::open(files.plain(&manifest.folder, n))?;
            crate::files::write_durably(&folder.join(&name), |out| std::io::copy(&mut from, out))?;
        }
        sync_dir(&inbox)?;
    }
    write_durable(&inbox, &format!("{id}.xml"), payload)
}
