//! The open stage (receiving node): a received envelope's content decrypted with the recipient
//! authority's key, the author's signature checked against its directory certificate, the
//! content validated like a client's submission (`validate.rs`, no legacy formats from
//! partners) and matched against the envelope's header; then `opened` (and a push job where
//! the client takes pushes), or a permanent failure that refuses the message.

use std::sync::Arc;

use super::worker::{apply, drop_job};
use super::{Failure, Outcome};
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Job, JobKind, Message, Status, now_millis};

pub async fn open(ctx: &Ctx, job: &Job, m: &Message) -> Outcome {
    if m.status != Status::Received {
        return drop_job(ctx, job).await;
    }
    // A poison message: opening it failed (or killed the node) this often. Attempts are counted
    // when a job is claimed, so a crash counts too; refuse it instead of looping.
    let limit = ctx.config().relay.poison_attempts;
    if job.attempts > limit {
        return Err(Failure::Poison(limit));
    }
    let env = ctx
        .store
        .blob(&m.id, Blob::Envelope)
        .await?
        .ok_or_else(|| Failure::transient("envelope missing"))?;
    let opened = decrypt_and_verify(ctx, m, env).await?;
    let (mut attachments, mut content_key) = (Vec::new(), Vec::new());
    let checked = match opened {
        Ok(opened) => {
            (attachments, content_key) = (opened.attachments, opened.content_key);
            let content = opened.content;
            let content: Arc<[u8]> = Arc::from(content);
            match super::validate::identify_and_validate(ctx, &content, false).await {
                Ok(super::validate::Validated {
                    message_type: t,
                    header: h,
                    ..
                }) => {
                    if h.author != m.author || h.reader != m.reader || h.message_uuid != m.xoev_uuid {
                        Err(Problem::new(
                            Code::HeaderInvalid,
                            "the message header does not match the envelope (author, reader or UUID)",
                        ))
                    } else if t.to_string() != m.message_type {
                        Err(Problem::new(
                            Code::HeaderInvalid,
                            "the message type does not match the envelope",
                        ))
                    } else {
                        Ok(content)
                    }
                }
                Err(p) if p.code == Code::Overloaded => return Err(Failure::transient("validation pool full")),
                Err(p) => Err(p),
            }
        }
        Err(p) => Err(p),
    };
    let content = checked.map_err(Failure::Permanent)?;
    let manifest = if attachments.is_empty() {
        None
    } else {
        let folder = m
            .remote_id
            .as_deref()
            .and_then(|r| crate::files::Files::inbound(&m.partner_node, r))
            .ok_or_else(|| Failure::transient("no attachment folder for this message"))?;
        let files = ctx.config().files();
        let manifest = tokio::task::spawn_blocking(move || {
            super::attachments::open_files(&files, &folder, &attachments, &content_key)
        })
        .await
        .map_err(Failure::transient)??;
        Some(manifest)
    };
    let push = ctx
        .config()
        .clients
        .iter()
        .any(|c| c.authority == m.reader && c.takes_pushes());
    let mut enqueue = Vec::new();
    if push {
        enqueue.push((JobKind::Push, now_millis()));
    }
    crate::failpoint!("open.before_commit");
    tracing::info!(message_id = %m.id, "message opened");
    let r = apply(
        ctx,
        Change {
            message_id: m.id.clone(),
            finish_job: Some(job.id),
            expect: vec![Status::Received],
            status: Some(Status::Opened),
            blobs: match &manifest {
                None => vec![(Blob::Payload, content.to_vec())],
                Some(manifest) => vec![
                    (Blob::Payload, content.to_vec()),
                    (Blob::Attachments, manifest.encode()),
                ],
            },
            enqueue,
            ..Change::default()
        },
    )
    .await;
    if push {
        ctx.wake(JobKind::Push);
    }
    if r.is_ok() {
        ctx.inbox_arrivals.notify_waiters();
        // The encrypted streams are opened: the plaintext files replace them.
        if let Some(manifest) = &manifest {
            let files = ctx.config().files();
            for n in 0..manifest.files.len() {
                let sealed = files.sealed(&manifest.folder, n);
                let _ = tokio::fs::remove_file(crate::files::Files::digest_beside(&sealed)).await;
                let _ = tokio::fs::remove_file(sealed).await;
            }
        }
    }
    r
}

/// The envelope decrypted with our authority's key (or its previous one) and the content
/// signature verified against the author's certificate (or its previous one), not revoked.
async fn decrypt_and_verify(
    ctx: &Ctx,
    m: &Message,
    env: Vec<u8>,
) -> Result<Result<crate::envelope::seal::Opened, Problem>, Failure> {
    let keys = ctx.keys();
    let limits = ctx.config().limits.for_envelopes();
    let (author, reader, partner) = (m.author.clone(), m.reader.clone(), m.partner_node.clone());
    let revocation = ctx.revocation.clone();
    tokio::task::spawn_blocking(move || {
        // Our authority's key, and during its key migration the previous one too.
        let recipient_keys: Vec<_> = [keys.authorities.get(&reader), keys.previous_authorities.get(&reader)]
            .into_iter()
            .flatten()
            .map(|i| &i.key)
            .collect();
        if recipient_keys.is_empty() {
            return Err(crate::xmlsec::encrypt::failed());
        }
        // The author's certificate; during the author's key migration its old and new one.
        let author_certs = keys
            .partner_authorities
            .get(&author)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Problem::new(
                    Code::SignerMismatch,
                    format!("the directory has no certificate of the author {author}"),
                )
            })?;
        let policy = keys.content_for(&partner);
        // One attempt in the common case (one key, one certificate). Of several failures the
        // one that is not the generic decryption failure says more.
        let mut failure: Option<Problem> = None;
        for key in &recipient_keys {
            for cert in author_certs {
                match crate::envelope::seal::open(&env, key, cert, &policy, &limits) {
                    Ok(opened) => {
                        // The author's certificate must not be revoked (OCSP).
                        revocation.usable(cert, crate::revocation::CertRole::Authority)?;
                        return Ok(opened);
                    }
                    Err(p) => {
                        if failure.as_ref().is_none_or(|f| f.code == Code::DecryptionFailed) {
                            failure = Some(p);
                        }
                    }
                }
            }
        }
        Err(failure.unwrap_or_else(crate::xmlsec::encrypt::failed))
    })
    .await
    .map_err(Failure::transient)
}
