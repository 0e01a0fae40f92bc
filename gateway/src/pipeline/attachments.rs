//! Attachment files on the message path (`files.rs` has the layout).
//!
//! - Seal (sending node): small attachments, and all for a partner reached through the broker,
//!   travel inline in the encrypted content ([`inline`]); larger ones each as their own
//!   encrypted stream beside the envelope ([`seal_files`]): `N.sealed`, AES-256-GCM in
//!   segments under a key derived from the content key (`xmlsec::stream`), its size and
//!   SHA-256 named in the envelope's header (under the node's signature); the plaintext's size
//!   and SHA-256 are in the signed content (under the author's signature).
//! - Open (receiving node): [`open_files`] writes inline attachments as files and decrypts the
//!   streamed ones (`N.sealed`, checked against the header when the envelope arrived) into
//!   plaintext files, checking every segment's tag and the author's digest while streaming.

use std::path::Path;

use super::Failure;
use crate::envelope::{self, Attachment, Carried, SealedFile};
use crate::files::{Entry, Files, HashingReader, HashingWriter, Manifest, write_durably};
use crate::problem::{Code, Problem};
use crate::xmlsec::stream;

/// Attachments up to this many bytes in all travel inline, inside the encrypted content.
pub const INLINE_UP_TO: u64 = 256 * 1024;

/// Whether a message's attachments travel inline (small, or a partner reached through the
/// broker, which carries one message per request).
pub fn travel_inline(manifest: &Manifest, broker: bool) -> bool {
    broker || manifest.files.iter().map(|f| f.size).sum::<u64>() <= INLINE_UP_TO
}

fn io_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Transient(format!("{what}: {e}"))
}

/// The manifest's attachments read whole, to travel inside the content (blocking).
pub fn inline(files: &Files, manifest: &Manifest, limit: u64) -> Result<Vec<Attachment>, Failure> {
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    if total > limit {
        return Err(Failure::Permanent(Problem::new(
            Code::LimitExceeded,
            format!(
                "the attachments ({total} bytes) exceed {limit} bytes, more than a partner reached through the broker takes"
            ),
        )));
    }
    manifest
        .files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let data = std::fs::read(files.plain(&manifest.folder, n)).map_err(|e| io_failure("attachment file", e))?;
            if envelope::hex(&envelope::sha256(&data)) != f.sha256 {
                return Err(Failure::Transient(format!("attachment file {n} changed on disk")));
            }
            Ok(Attachment {
                content_type: f.content_type.clone(),
                filename: f.filename.clone(),
                body: Carried::Inline(data),
            })
        })
        .collect()
}

/// The manifest's attachments as the signed content names streamed ones.
pub fn streamed(manifest: &Manifest) -> Vec<Attachment> {
    manifest
        .files
        .iter()
        .map(|f| Attachment {
            content_type: f.content_type.clone(),
            filename: f.filename.clone(),
            body: Carried::Streamed {
                size: f.size,
                sha256: envelope::unhex(&f.sha256).unwrap_or_default(),
            },
        })
        .collect()
}

/// Encrypts each attachment file into `N.sealed` under its key from `content_key`, checking
/// the plaintext against the manifest on the way (blocking). What the envelope names.
pub fn seal_files(files: &Files, manifest: &Manifest, content_key: &[u8]) -> Result<Vec<SealedFile>, Problem> {
    let failed = |n: usize, e: &dyn std::fmt::Display| {
        tracing::error!(attachment = n, error = %e, "cannot seal an attachment file");
        Problem::new(Code::Internal, format!("attachment file {n} cannot be sealed"))
    };
    let mut sealed = Vec::with_capacity(manifest.files.len());
    for (n, f) in manifest.files.iter().enumerate() {
        let key = stream::derive_key(content_key, n as u32)?;
        let plain = std::fs::File::open(files.plain(&manifest.folder, n)).map_err(|e| failed(n, &e))?;
        let mut reader = HashingReader::new(std::io::BufReader::with_capacity(1 << 20, plain));
        let (size, sha256) = write_durably(&files.sealed(&manifest.folder, n), |out| {
            let mut w = HashingWriter::new(out);
            stream::encrypt(&key, &mut reader, &mut w).map_err(std::io::Error::other)?;
            Ok((w.len, w.hash.finish()?))
        })
        .map_err(|e| failed(n, &e))?;
        let plain_len = reader.len;
        let plain_digest = reader.hash.finish().map_err(|e| failed(n, &e))?;
        if envelope::hex(&plain_digest) != f.sha256 || plain_len != f.size {
            return Err(failed(n, &"the file changed on disk since it was accepted"));
        }
        sealed.push(SealedFile {
            n,
            size,
            sha256: sha256.to_vec(),
        });
    }
    Ok(sealed)
}

/// Writes an opened message's attachments as plaintext files of `folder` (blocking): inline
/// ones as they are, streamed ones decrypted from `N.sealed`, each segment's tag and the
/// author's size and digest checked. A failed check is permanent; the file is not kept.
pub fn open_files(
    files: &Files,
    folder: &str,
    attachments: &[Attachment],
    content_key: &[u8],
) -> Result<Manifest, Failure> {
    std::fs::create_dir_all(files.folder(folder)).map_err(|e| io_failure("attachment folder", e))?;
    let mut entries = Vec::with_capacity(attachments.len());
    for (n, a) in attachments.iter().enumerate() {
        let target = files.plain(folder, n);
        let (size, sha256) = match &a.body {
            Carried::Inline(data) => write_durably(&target, |out| {
                std::io::Write::write_all(out, data)?;
                Ok((data.len() as u64, envelope::sha256(data)))
            })
            .map_err(|e| io_failure("attachment file", e))?,
            Carried::Streamed { size, sha256 } => {
                let written = decrypt_file(&files.sealed(folder, n), &target, content_key, n)?;
                if written.0 != *size || &written.1 != sha256 {
                    let _ = std::fs::remove_file(&target);
                    return Err(Failure::Permanent(Problem::new(
                        Code::SignatureInvalid,
                        format!("attachment {n} differs from the size and SHA-256 its author signed"),
                    )));
                }
                written
            }
        };
        entries.push(Entry {
            content_type: a.content_type.clone(),
            filename: a.filename.clone(),
            size,
            sha256: envelope::hex(&sha256),
        });
    }
    Ok(Manifest {
        folder: folder.to_owned(),
        files: entries,
    })
}

/// Decrypts `from` into `to` durably; the plaintext's size and SHA-256.
fn decrypt_file(from: &Path, to: &Path, content_key: &[u8], n: usize) -> Result<(u64, Vec<u8>), Failure> {
    let key = stream::derive_key(content_key, n as u32).map_err(Failure::Permanent)?;
    let sealed = std::fs::File::open(from).map_err(|e| io_failure("sealed attachment file", e))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, sealed);
    let mut crypto = None;
    let result = write_durably(to, |out| {
        let mut w = HashingWriter::new(out);
        match stream::decrypt(&key, &mut reader, &mut w) {
            Ok(_) => Ok((w.len, w.hash.finish()?.to_vec())),
            Err(stream::StreamError::Crypto(p)) => {
                crypto = Some(p);
                Err(std::io::Error::other("decryption failed"))
            }
            Err(stream::StreamError::Io(e)) => Err(e),
        }
    });
    match (result, crypto) {
        (Ok(done), _) => Ok(done),
        (Err(_), Some(p)) => Err(Failure::Permanent(p)),
        (Err(e), None) => Err(io_failure("attachment file", e)),
    }
}

/// How long an attachment folder that no manifest names stays untouched before the sweep
/// removes it: uploads in progress and partners' streams awaiting their envelope are younger.
pub const SWEEP_GRACE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Removes the attachment folders of purged messages and of uploads that never committed (run
/// by the maintenance task after the retention purge). A received message's folder counts as
/// named until it is opened.
pub async fn sweep(ctx: &crate::ctx::Ctx) {
    use crate::store::{Blob, Direction, Filter, Status};
    let manifests = ctx.store.blobs_of_kind(Blob::Attachments).await;
    let received = ctx
        .store
        .list(Filter {
            direction: Some(Direction::Inbound),
            status: vec![Status::Received],
            limit: 1_000_000,
            ..Filter::default()
        })
        .await;
    let (Ok(manifests), Ok(received)) = (manifests, received) else {
        tracing::warn!("attachment sweep skipped: the store did not answer");
        return;
    };
    let mut named: std::collections::HashSet<String> = manifests
        .iter()
        .filter_map(|b| Manifest::decode(b).ok())
        .map(|m| m.folder)
        .collect();
    named.extend(
        received
            .iter()
            .filter_map(|m| Files::inbound(&m.partner_node, m.remote_id.as_deref()?)),
    );
    let files = ctx.config().files();
    match tokio::task::spawn_blocking(move || files.sweep(&named, SWEEP_GRACE)).await {
        Ok((0, _)) => {}
        Ok((folders, bytes)) => tracing::info!(folders, bytes, "attachment folders removed"),
        Err(e) => tracing::warn!(error = %e, "attachment sweep failed"),
    }
}
