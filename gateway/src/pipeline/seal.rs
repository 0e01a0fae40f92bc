//! The seal stage (sending node): the envelope of an accepted message — its content signed for
//! the author authority and encrypted for the recipient authority, the whole signed by this
//! node (`envelope::seal`) — made once and stored (`sealed`), so that every retry sends the very
//! same envelope (same message id, same digest).

use super::validate::Checked;
use super::{Failure, Outcome, attachments};
use crate::ctx::Ctx;
use crate::envelope::{EnvelopeHeader, seal};
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Message, SealedEnvelope, Status, now_millis, rfc3339};

/// The message's envelope: the stored one, or a new one, sealed and stored now. A message that
/// cannot be sealed (no key for its author, no certificate of its reader) fails for good.
pub async fn sealed(ctx: &Ctx, m: &Message) -> Result<Vec<u8>, Failure> {
    if let Some(e) = ctx.store.blob(&m.id, Blob::Envelope).await? {
        return Ok(e);
    }
    let payload = ctx
        .store
        .blob(&m.id, Blob::Payload)
        .await?
        .ok_or_else(|| Failure::transient("payload missing"))?;
    let manifest = match ctx.store.blob(&m.id, Blob::Attachments).await? {
        Some(b) => Some(crate::files::Manifest::decode(&b).map_err(|p| Failure::Transient(p.detail))?),
        None => None,
    };
    let header = EnvelopeHeader {
        message_id: m.id.clone(),
        xoev_uuid: m.xoev_uuid.clone(),
        sender_node: ctx.config().node_name.clone(),
        sender: m.author.clone(),
        recipient: m.reader.clone(),
        message_type: m.message_type.clone(),
        created: rfc3339(m.created_at),
    };
    let env = seal_now(ctx, header, payload, manifest, &m.partner_node)
        .await
        .inspect_err(|f| {
            if let Failure::Permanent(p) = f {
                tracing::error!(message_id = %m.id, code = %p.code, error = %p.detail, "cannot seal the message");
            }
        })?;
    store_sealed(ctx, m, env.clone()).await?;
    Ok(env)
}

/// A checked submission's envelope, sealed before the message is stored, so that it is stored
/// `sealed` in the same write as `accepted`: one durable transition less, and the relay need
/// not read the message back to seal it. `id` is the id the client chose, else a new one.
/// `None` where it cannot be sealed now (no key for its author, no certificate of its reader):
/// the relay then tries again, and fails it where that fails for good. Not for a message with
/// attachments, which the relay seals from their files.
pub async fn at_intake(ctx: &Ctx, id: Option<&str>, checked: &Checked) -> Option<SealedEnvelope> {
    let id = id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let created_at = now_millis();
    let header = EnvelopeHeader {
        message_id: id.clone(),
        xoev_uuid: checked.header.message_uuid.clone(),
        sender_node: ctx.config().node_name.clone(),
        sender: checked.header.author.clone(),
        recipient: checked.header.reader.clone(),
        message_type: checked.message_type.to_string(),
        created: rfc3339(created_at),
    };
    let envelope = seal_now(ctx, header, checked.payload.clone(), None, &checked.partner_node)
        .await
        .ok()?;
    Some(SealedEnvelope {
        id,
        created_at,
        envelope,
    })
}

/// Seals on a blocking thread: the content signed for its author and encrypted for its reader
/// (the envelope header's sender and recipient), small attachments inside it, larger ones as
/// streams beside the envelope, the whole signed by this node.
async fn seal_now(
    ctx: &Ctx,
    header: EnvelopeHeader,
    payload: impl AsRef<[u8]> + Send + 'static,
    manifest: Option<crate::files::Manifest>,
    partner_node: &str,
) -> Result<Vec<u8>, Failure> {
    let keys = ctx.keys();
    let config = ctx.config();
    let limits = config.limits;
    let files = config.files();
    let broker = config
        .partners
        .iter()
        .any(|p| p.node == partner_node && p.amqp_queue.is_some());
    tokio::task::spawn_blocking(move || {
        let (author, reader) = (&header.sender, &header.recipient);
        // Small attachments inside the content; larger ones as streams beside the envelope.
        let (attachments, streams) = match &manifest {
            Some(m) if attachments::travel_inline(m, broker) => {
                (attachments::inline(&files, m, limits.max_bytes as u64)?, None)
            }
            Some(m) => (attachments::streamed(m), Some(m)),
            None => (Vec::new(), None),
        };
        let author_id = keys.authorities.get(author).ok_or_else(|| {
            Failure::Permanent(Problem::new(
                Code::CertificateInvalid,
                format!("no key for the local authority {author}"),
            ))
        })?;
        // The first of the reader's certificates (during its key migration, the one it reads).
        let recipient = keys
            .partner_authorities
            .get(reader)
            .and_then(|c| c.first())
            .ok_or_else(|| {
                Failure::Permanent(Problem::new(
                    Code::CertificateInvalid,
                    format!("the directory has no certificate of {reader}"),
                ))
            })?;
        let parties = seal::Parties {
            author: author_id,
            recipient,
            node: &keys.node,
        };
        seal::seal_with_files(
            &header,
            payload.as_ref(),
            &attachments,
            &parties,
            &limits.for_envelopes(),
            |content_key| match streams {
                Some(m) => attachments::seal_files(&files, m, content_key),
                None => Ok(Vec::new()),
            },
        )
        .map_err(|p| {
            if p.code == Code::Internal {
                Failure::Transient(p.detail)
            } else {
                Failure::Permanent(p)
            }
        })
    })
    .await
    .map_err(Failure::transient)?
}

async fn store_sealed(ctx: &Ctx, m: &Message, env: Vec<u8>) -> Outcome {
    ctx.store
        .apply(Change {
            message_id: m.id.clone(),
            expect: vec![Status::Accepted],
            status: Some(Status::Sealed),
            blobs: vec![(Blob::Envelope, env)],
            ..Change::default()
        })
        .await?;
    Ok(())
}
