//! Attachment files beside the store: every attachment of a message is a file, never a blob,
//! so that a message of any size passes in flat memory.
//!
//! ```text
//! attachments_dir/
//!   out/<upload>/N          outbound: attachment N as the client sent it (folder per upload)
//!   out/<upload>/N.sealed   … encrypted for the recipient (`xmlsec::stream`), made by the seal stage
//!   in/<node>/<remote id>/N.sealed.part   inbound: an upload from partner <node> in progress
//!   in/<node>/<remote id>/N.sealed        … complete (its SHA-256 in N.sealed.sha256)
//!   in/<node>/<remote id>/N               … opened: the plaintext, checked against the author's digest
//! ```
//!
//! The store's `attachments` blob of a message is its [`Manifest`]: the folder and, per file,
//! media type, file name, size and SHA-256 of the plaintext. A file is complete and fsynced (and
//! its folder too) before anything that names it is committed; a folder that no manifest names
//! is removed by [`Files::sweep`] once it has not changed for a grace period (an upload that
//! never committed, a partner's transfer that was never finished).
//!
//! On a PostgreSQL store shared by several processes of one node, `attachments_dir` must be the
//! same folder for all of them: on one machine the data folder's, across machines a shared file
//! system mounted at the same path (README, "Large attachments").

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::problem::{Code, Problem};

mod hash;
pub use hash::{HashBeside, HashingReader, HashingWriter};

/// The attachment folder of a node.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

/// What a message's `attachments` blob holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The message's folder, relative to the attachment folder (`out/…` or `in/…`).
    pub folder: String,
    pub files: Vec<Entry>,
}

/// One attachment: file `N` of the folder, `N` its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub content_type: String,
    pub filename: Option<String>,
    pub size: u64,
    /// Hex SHA-256 of the plaintext.
    pub sha256: String,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads what [`Manifest::encode`] wrote (our own store's bytes).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, Problem> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|_| Problem::new(Code::Internal, "a stored attachment list is unreadable"))?;
        if !safe_folder(&m.folder) {
            return Err(Problem::new(Code::Internal, "a stored attachment folder is not ours"));
        }
        Ok(m)
    }
}

/// Whether a folder name stays inside the attachment folder: `out/X` or `in/X/Y`, each part
/// a plain name.
fn safe_folder(folder: &str) -> bool {
    let parts: Vec<&str> = folder.split('/').collect();
    let plain = |p: &&str| {
        !p.is_empty() && *p != "." && *p != ".." && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(parts.as_slice(), ["out", _] | ["in", _, _]) && parts[1..].iter().all(plain)
}

impl Files {
    pub fn new(root: impl Into<PathBuf>) -> Files {
        Files { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a manifest's folder.
    pub fn folder(&self, folder: &str) -> PathBuf {
        self.root.join(folder)
    }

    /// Plaintext file `n` of a folder.
    pub fn plain(&self, folder: &str, n: usize) -> PathBuf {
        self.folder(folder).join(n.to_string())
    }

    /// Encrypted file `n` of a folder (`xmlsec::stream`).
    pub fn sealed(&self, folder: &str, n: usize) -> PathBuf {
        self.folder(folder).join(format!("{n}.sealed"))
    }

    /// The SHA-256 (hex) the receiving node keeps beside a complete encrypted stream.
    pub fn digest_beside(sealed: &Path) -> PathBuf {
        sealed.with_extension("sealed.sha256")
    }

    /// The folder of a message received from partner `node` under its id `remote_id`, or
    /// `None` for names that could leave the attachment folder.
    pub fn inbound(node: &str, remote_id: &str) -> Option<String> {
        let folder = format!("in/{node}/{remote_id}");
        safe_folder(&folder).then_some(folder)
    }

    /// A new, empty folder for an upload's attachments; removed again when the guard is
    /// dropped unless [`Upload::keep`] was called (after the commit that names it).
    pub async fn upload(&self) -> Result<Upload, Problem> {
        let name = format!("out/{}", uuid::Uuid::new_v4());
        let path = self.folder(&name);
        tokio::fs::create_dir_all(&path).await.map_err(io_problem)?;
        Ok(Upload {
            name,
            path,
            keep: false,
        })
    }

    /// Bytes free for an unprivileged writer on the attachment folder's file system (of its
    /// nearest existing folder), or `None` where it cannot be told (blocking).
    pub fn available(&self) -> Option<u64> {
        let mut at = self.root.as_path();
        while !at.exists() {
            at = at.parent()?;
        }
        let st = rustix::fs::statvfs(at).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Bytes in all attachment files.
    pub fn usage(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.root)
    }

    /// Removes every message folder that no manifest in `referenced` names and that has not
    /// changed for `grace` (blocking). Returns the folders and bytes removed.
    pub fn sweep(&self, referenced: &HashSet<String>, grace: Duration) -> (usize, u64) {
        let mut folders = Vec::new();
        let list = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
                .unwrap_or_default()
        };
        for upload in list(&self.root.join("out")) {
            folders.push(format!("out/{upload}"));
        }
        for node in list(&self.root.join("in")) {
            for id in list(&self.root.join("in").join(&node)) {
                folders.push(format!("in/{node}/{id}"));
            }
        }
        let now = SystemTime::now();
        let (mut removed, mut bytes) = (0, 0);
        for folder in folders {
            if referenced.contains(&folder) || !safe_folder(&folder) {
                continue;
            }
            let path = self.folder(&folder);
            if newest_change(&path).is_some_and(|t| now.duration_since(t).unwrap_or_default() < grace) {
                continue;
            }
            let size = Files::new(&path).usage();
            if std::fs::remove_dir_all(&path).is_ok() {
                removed += 1;
                bytes += size;
            }
        }
        (removed, bytes)
    }
}

/// The latest modification time of a folder and the files in it.
fn newest_change(dir: &Path) -> Option<SystemTime> {
    let own = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
        .chain(own)
        .max()
}

/// A failed file operation as a problem: a full disk is `503 overloaded` (the client or the
/// partner retries later), anything else the node's own failure.
pub fn io_problem(e: std::io::Error) -> Problem {
    tracing::error!(error = %e, "attachment folder");
    if e.raw_os_error() == Some(28) {
        let mut p = Problem::overloaded(60);
        p.detail = "the attachment folder's disk is full".into();
        return p;
    }
    Problem::new(Code::Internal, "the attachment folder cannot be written")
}

/// A new upload folder (see [`Files::upload`]).
#[derive(Debug)]
pub struct Upload {
    name: String,
    path: PathBuf,
    keep: bool,
}

impl Upload {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A writer for file `n`, refusing to grow past `limit` bytes.
    pub async fn create(&self, n: usize, limit: u64) -> Result<Writer, Problem> {
        self.create_named(&n.to_string(), limit).await
    }

    /// A writer for a file of another name (a part still to be placed).
    pub async fn create_named(&self, name: &str, limit: u64) -> Result<Writer, Problem> {
        Writer::create(self.path.join(name), limit).await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fsyncs the folder, so that its files' names survive a crash.
    pub async fn sync(&self) -> Result<(), Problem> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::dropdir::sync_dir(&path))
            .await
            .map_err(|_| Problem::new(Code::Internal, "the attachment folder cannot be written"))?
            .map_err(io_problem)
    }

    /// The commit named the folder: it stays.
    pub fn keep(mut self) -> String {
        self.keep = true;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes one file in pieces, counting and hashing them; durable after [`Writer::finish`].
pub struct Writer {
    file: tokio::io::BufWriter<tokio::fs::File>,
    hash: HashBeside,
    len: u64,
    limit: u64,
}

/// A write refused or failed.
#[derive(Debug)]
pub enum WriteError {
    /// The file would grow past its limit.
    TooLarge(u64),
    Io(Problem),
}

impl Writer {
    pub async fn create(path: PathBuf, limit: u64) -> Result<Writer, Problem> {
        let file = tokio::fs::File::create(&path).await.map_err(io_problem)?;
        Ok(Writer {
            file: tokio::io::BufWriter::with_capacity(1 << 20, file),
            hash: HashBeside::new(),
            len: 0,
            limit,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(WriteError::TooLarge(self.limit));
        }
        self.hash.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| WriteError::Io(io_problem(e)))
    }

    /// Flushes and fsyncs the file; its size and SHA-256.
    pub async fn finish(mut self) -> Result<(u64, [u8; 32]), Problem> {
        self.file.flush().await.map_err(io_problem)?;
        self.file.get_mut().sync_all().await.map_err(io_problem)?;
        Ok((self.len, self.hash.finish().map_err(io_problem)?))
    }
}

/// Writes `data` as file `n` of an upload (attachments that arrived whole, as XTA's).
pub async fn write_whole(upload: &Upload, n: usize, data: &[u8]) -> Result<(u64, [u8; 32]), Problem> {
    let mut w = upload.create(n, u64::MAX).await?;
    w.write(data).await.map_err(|e| match e {
        WriteError::Io(p) => p,
        WriteError::TooLarge(_) => Problem::new(Code::LimitExceeded, "attachment too large"),
    })?;
    w.finish().await
}

/// A partner's encrypted streams waiting at this node: arriving (`N.sealed.part`) or arrived
/// and not yet opened (`N.sealed`), under `in/<partner>/*/`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    pub streams: u64,
    pub bytes: u64,
    /// Since the least recently written of them was last written.
    pub oldest_age_seconds: u64,
}

/// What waits under one partner's folder (blocking).
pub fn staged(partner_dir: &Path) -> Staged {
    let Ok(messages) = std::fs::read_dir(partner_dir) else {
        return Staged::default();
    };
    let streams = messages
        .flatten()
        .filter_map(|m| std::fs::read_dir(m.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| {
            let name = f.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".sealed") || name.ends_with(".sealed.part")
        })
        .filter_map(|f| f.metadata().ok());
    streams.fold(Staged::default(), |mut s, m| {
        s.streams += 1;
        s.bytes += m.len();
        let age = m.modified().ok().and_then(|t| t.elapsed().ok());
        s.oldest_age_seconds = s.oldest_age_seconds.max(age.map_or(0, |d| d.as_secs()));
        s
    })
}

/// Every partner with streams waiting at this node, for operators (blocking): what a partner
/// sent without its envelope following shows here with its age until the sweep removes it.
pub fn staged_by_partner(files: &Files) -> Vec<(String, Staged)> {
    let Ok(partners) = std::fs::read_dir(files.root().join("in")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Staged)> = partners
        .flatten()
        .map(|p| (p.file_name().to_string_lossy().into_owned(), staged(&p.path())))
        .filter(|(_, s)| s.streams > 0)
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes a file through a temporary name: `make` fills it (and returns what it learnt), then
/// fsync and rename into place and fsync of the folder (blocking).
pub fn write_durably<T>(
    path: &Path,
    make: impl FnOnce(&mut std::io::BufWriter<&std::fs::File>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
        let out = make(&mut w)?;
        std::io::Write::flush(&mut w)?;
        drop(w);
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        crate::dropdir::sync_dir(dir)?;
        Ok(out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_stay_inside() {
        assert!(safe_folder("out/0190a0b0-0000-7000-8000-000000000001"));
        assert!(safe_folder("in/b/0190a0b0-0000-7000-8000-000000000001"));
        for bad in [
            "out/..", "in/../x", "in/a/..", "out", "out/a/b", "/etc", "in/a/b/c", "out/",
        ] {
            assert!(!safe_folder(bad), "{bad}");
        }
        assert_eq!(Files::inbound("..", "x"), None);
    }

    #[test]
    fn the_sweep_removes_only_unnamed_settled_folders() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        for f in ["out/kept", "out/orphan", "in/b/kept", "in/b/orphan"] {
            std::fs::create_dir_all(files.folder(f)).unwrap();
            std::fs::write(files.plain(f, 0), b"12345").unwrap();
        }
        let referenced: HashSet<String> = ["out/kept".to_owned(), "in/b/kept".to_owned()].into();
        // Within the grace period nothing goes.
        assert_eq!(files.sweep(&referenced, Duration::from_secs(3600)), (0, 0));
        assert_eq!(files.sweep(&referenced, Duration::ZERO), (2, 10));
        assert!(files.plain("out/kept", 0).exists() && files.plain("in/b/kept", 0).exists());
        assert!(!files.folder("out/orphan").exists() && !files.folder("in/b/orphan").exists());
        assert_eq!(files.usage(), 10);
    }
}
