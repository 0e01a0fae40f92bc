//! Partner transport, receiving side of attachment streams: `HEAD` and `PATCH` on
//! `/v1/transport/files/{message id}/{n}`, resumable as in the tus resumable upload protocol
//! 1.0 (`Upload-Offset`, `Upload-Length`), over the same mutual TLS as envelopes.
//!
//! - `HEAD` answers in `Upload-Offset` how many bytes of the stream this node holds durably
//!   (fsynced before it answers).
//! - `PATCH` with `Upload-Offset: o` and `Upload-Length: total` appends the body at `o` to
//!   `in/<partner>/<id>/N.sealed.part`, hashing it (after the bytes before `o`, read again), and
//!   when `total` bytes are there, fsyncs and names it `N.sealed` with its SHA-256 beside it.
//!   A body cut off keeps what arrived (fsynced), for the next `PATCH` to resume. One request
//!   writes a stream at a time (a lock on the file); another gets `409` with the offset.
//! - When the envelope arrives, [`check`] requires every stream its header names complete,
//!   with the size and SHA-256 the partner's signature covers, before anything is stored:
//!   a missing one is `attachment-incomplete` (the sender sends it, then the envelope again),
//!   a wrong one `signature-invalid` (and its file is discarded).
//!
//! Only the partner the TLS certificate names writes, and only into its own folder. The
//! stream stays encrypted here; the open worker decrypts it (`pipeline::attachments`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::send::{UPLOAD_LENGTH, UPLOAD_OFFSET};
use crate::config::Partner;
use crate::ctx::Ctx;
use crate::envelope::{MAX_ATTACHMENTS, SealedFile};
use crate::files::{Files, io_problem};
use crate::problem::{Code, Problem};
use crate::tls::PeerCert;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::InvalidRequest, detail)
}

/// Where stream `n` of message `id` from `partner` goes, checked.
fn staging(ctx: &Ctx, peer: &PeerCert, id: &str, n: usize) -> Result<(Partner, PathBuf), Problem> {
    let partner = super::receive::partner_of(ctx, peer).ok_or_else(|| {
        Problem::new(
            Code::SenderMismatch,
            "the TLS client certificate is not a partner's in the directory",
        )
    })?;
    if uuid::Uuid::try_parse(id).is_err() || n >= MAX_ATTACHMENTS {
        return Err(invalid(
            "the stream's message id must be a UUID and its position below 100",
        ));
    }
    let folder = Files::inbound(&partner.node, id).ok_or_else(|| invalid("no folder for this partner"))?;
    Ok((partner, ctx.config().files().folder(&folder)))
}

fn done(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("{n}.sealed"))
}

fn part(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("{n}.sealed.part"))
}

fn digest_file(dir: &Path, n: usize) -> PathBuf {
    Files::digest_beside(&done(dir, n))
}

fn offset_answer(status: StatusCode, offset: u64) -> Response {
    (status, [(UPLOAD_OFFSET, offset.to_string())]).into_response()
}

/// A complete stream's answer: its length as both `Upload-Offset` and `Upload-Length`.
fn complete_answer(len: u64) -> Response {
    let len = len.to_string();
    (
        StatusCode::NO_CONTENT,
        [(UPLOAD_OFFSET, len.clone()), (UPLOAD_LENGTH, len)],
    )
        .into_response()
}

/// The length of stream `n` if it is here whole: received, or already opened (its plaintext
/// is here and the stream's length follows from it), so that a resend after a lost receipt
/// does not send it again.
async fn complete(dir: &Path, n: usize) -> Option<u64> {
    if let Ok(m) = tokio::fs::metadata(done(dir, n)).await {
        return Some(m.len());
    }
    let plain = tokio::fs::metadata(dir.join(n.to_string())).await.ok()?;
    Some(crate::xmlsec::stream::ciphertext_len(plain.len()))
}

/// How many bytes of the part so far this node holds durably (fsynced).
async fn held(dir: &Path, n: usize) -> Result<u64, Problem> {
    match tokio::fs::OpenOptions::new().write(true).open(part(dir, n)).await {
        Ok(f) => {
            f.sync_all().await.map_err(io_problem)?;
            Ok(f.metadata().await.map_err(io_problem)?.len())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_problem(e)),
    }
}

/// `HEAD`: a complete stream answers its length in both `Upload-Offset` and `Upload-Length`
/// (as in tus: the length once known). A part answers only its offset, even when all its
/// bytes are there: a process that died between the last byte and naming the file `N.sealed`
/// leaves such a part, and the sender then finishes it with an empty `PATCH` at that offset.
pub async fn offset(
    State(ctx): State<Arc<Ctx>>,
    UrlPath((id, n)): UrlPath<(String, usize)>,
    req: Request,
) -> Result<Response, Problem> {
    let peer = req.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    let (_, dir) = staging(&ctx, &peer, &id, n)?;
    if let Some(len) = complete(&dir, n).await {
        return Ok(complete_answer(len));
    }
    Ok(offset_answer(StatusCode::NO_CONTENT, held(&dir, n).await?))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64, Problem> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .ok_or_else(|| invalid(format!("the {name} header is missing or not a number")))
}

pub async fn append(
    State(ctx): State<Arc<Ctx>>,
    UrlPath((id, n)): UrlPath<(String, usize)>,
    req: Request,
) -> Result<Response, Problem> {
    let peer = req.extensions().get::<PeerCert>().cloned().unwrap_or_default();
    let (partner, dir) = staging(&ctx, &peer, &id, n)?;
    let (from, total) = (
        header_u64(req.headers(), UPLOAD_OFFSET)?,
        header_u64(req.headers(), UPLOAD_LENGTH)?,
    );
    let max = crate::xmlsec::stream::ciphertext_len(ctx.config().limits.max_attachment_bytes);
    if total > max || from > total {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("an attachment stream may hold at most {max} bytes"),
        ));
    }
    if let Some(len) = complete(&dir, n).await {
        // Complete already (a resend): nothing more to take.
        return Ok(complete_answer(len));
    }
    within_staging_limit(&ctx, &partner, &dir, total - from).await?;
    crate::wire::room_for_files(&ctx, total - from).await?;
    tokio::fs::create_dir_all(&dir).await.map_err(io_problem)?;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part(&dir, n))
        .await
        .map_err(io_problem)?;
    let have = file.metadata().await.map_err(io_problem)?.len();
    // One writer per stream (a stale request of the sender may still be running): the lock
    // goes with the file handle at the end of this request.
    let mut std_file = file.into_std().await;
    match std_file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(offset_answer(StatusCode::CONFLICT, have)),
        Err(std::fs::TryLockError::Error(e)) => return Err(io_problem(e)),
    }
    if from > have {
        return Ok(offset_answer(StatusCode::CONFLICT, have));
    }
    // What came before `from` is hashed again, then the body appended at `from`.
    std_file.set_len(from).map_err(io_problem)?;
    let mut hash = crate::files::HashBeside::new();
    let prefix = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        std_file.seek(std::io::SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = std_file.read(&mut buf)?;
            if k == 0 {
                break;
            }
            hash.update(&buf[..k]);
        }
        Ok::<_, std::io::Error>((std_file, hash))
    })
    .await
    .map_err(|_| Problem::new(Code::Internal, "the attachment stream cannot be stored"))?
    .map_err(io_problem)?;
    let (std_file, mut hash) = prefix;
    let mut file = tokio::fs::File::from_std(std_file);
    file.seek(std::io::SeekFrom::Start(from)).await.map_err(io_problem)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut len = from;
    let mut body = req.into_body().into_data_stream();
    let idle = ctx.config().server.body_timeout();
    let cut = loop {
        let next = match tokio::time::timeout(idle, futures_lite::StreamExt::next(&mut body)).await {
            Ok(next) => next,
            Err(_) => break Some("stalled"),
        };
        match next {
            None => break None,
            Some(Err(_)) => break Some("cut off"),
            Some(Ok(chunk)) => {
                crate::failpoint!("transport.file_chunk");
                if len + chunk.len() as u64 > total {
                    break Some("longer than its Upload-Length");
                }
                hash.update(&chunk);
                out.write_all(&chunk).await.map_err(|e| write_failed(e, &dir, n))?;
                len += chunk.len() as u64;
                crate::telemetry::attachment_received(chunk.len() as u64);
            }
        }
    };
    // What arrived is kept durably either way, for the next request to resume from.
    out.flush().await.map_err(|e| write_failed(e, &dir, n))?;
    let file = out.into_inner();
    if cut == Some("longer than its Upload-Length") {
        file.set_len(from).await.map_err(io_problem)?;
    }
    file.sync_all().await.map_err(|e| write_failed(e, &dir, n))?;
    if let Some(why) = cut {
        tracing::warn!(remote_id = %id, partner = %partner.node, attachment = n, held = len, "attachment stream {why}");
        return Err(invalid(format!("the attachment stream was {why}")));
    }
    if len < total {
        return Ok(offset_answer(StatusCode::NO_CONTENT, len));
    }
    drop(file);
    crate::failpoint!("transport.file_before_rename");
    let digest = crate::envelope::hex(&hash.finish().map_err(io_problem)?);
    let dir2 = dir.clone();
    tokio::task::spawn_blocking(move || {
        crate::files::write_durably(&digest_file(&dir2, n), |w| {
            std::io::Write::write_all(w, digest.as_bytes())
        })?;
        std::fs::rename(part(&dir2, n), done(&dir2, n))?;
        crate::dropdir::sync_dir(&dir2)
    })
    .await
    .map_err(|_| Problem::new(Code::Internal, "the attachment stream cannot be stored"))?
    .map_err(io_problem)?;
    tracing::info!(remote_id = %id, partner = %partner.node, attachment = n, bytes = len, resumed_at = from, "attachment stream received");
    Ok(offset_answer(StatusCode::NO_CONTENT, len))
}

/// Refuses `incoming` more bytes from `partner` when its streams waiting here (arriving, or
/// complete and not yet opened: `in/<partner>/*/N.sealed[.part]`) would pass
/// `limits.max_partner_staging_bytes`: `503 overloaded`, so the sender tries again once the
/// open worker has caught up (or the sweep removed streams no envelope followed).
async fn within_staging_limit(ctx: &Ctx, partner: &Partner, dir: &Path, incoming: u64) -> Result<(), Problem> {
    let limit = ctx.config().limits.max_partner_staging_bytes;
    let Some(root) = dir.parent().map(Path::to_path_buf) else {
        return Ok(());
    };
    let staged = tokio::task::spawn_blocking(move || crate::files::staged(&root).bytes)
        .await
        .unwrap_or(0);
    if staged + incoming <= limit {
        return Ok(());
    }
    tracing::warn!(partner = %partner.node, staged, incoming, limit, "partner's attachment streams at their limit");
    let mut p = Problem::overloaded(60);
    p.detail = format!(
        "this partner's attachment streams waiting here hold {staged} bytes; {incoming} more would pass limits.max_partner_staging_bytes ({limit})"
    );
    Err(p)
}

/// A write that failed: with the disk full the partial stream goes (nothing half-written stays;
/// the sender starts again once there is room), otherwise it stays for the next request.
fn write_failed(e: std::io::Error, dir: &Path, n: usize) -> Problem {
    if e.raw_os_error() == Some(28) {
        let _ = std::fs::remove_file(part(dir, n));
    }
    io_problem(e)
}

/// Every stream an arriving envelope names must be here whole, with the size and SHA-256 its
/// (verified) header gives. A resend of an envelope already opened passes (its plaintext files
/// are there: only the open worker writes those).
pub async fn check(ctx: &Ctx, partner: &Partner, id: &str, files: &[SealedFile]) -> Result<(), Problem> {
    if files.is_empty() {
        return Ok(());
    }
    let folder = Files::inbound(&partner.node, id)
        .ok_or_else(|| Problem::new(Code::EnvelopeInvalid, "no attachment folder for this message"))?;
    let local = ctx.config().files();
    let dir = local.folder(&folder);
    for f in files {
        if tokio::fs::metadata(local.plain(&folder, f.n)).await.is_ok() {
            continue;
        }
        let size = tokio::fs::metadata(done(&dir, f.n)).await.map(|m| m.len());
        let digest = tokio::fs::read_to_string(digest_file(&dir, f.n)).await;
        let (Ok(size), Ok(digest)) = (size, digest) else {
            return Err(Problem::new(
                Code::AttachmentIncomplete,
                format!("attachment stream {} has not arrived whole", f.n),
            ));
        };
        if size != f.size || digest.trim() != crate::envelope::hex(&f.sha256) {
            for path in [done(&dir, f.n), digest_file(&dir, f.n)] {
                let _ = tokio::fs::remove_file(path).await;
            }
            return Err(Problem::new(
                Code::SignatureInvalid,
                format!(
                    "attachment stream {} differs from the size and SHA-256 the envelope's signature covers; it was discarded",
                    f.n
                ),
            ));
        }
    }
    Ok(())
}
