//! Drop-folder intake: a client that only reads and writes folders (`crate::dropdir`). Files
//! renamed into `out/` are picked up (inotify events, and a scan every `drop_poll_ms` because
//! network file systems deliver none), go through [`crate::intake::submit`] like a REST body,
//! and move to `sent/` after the durable commit or to `rejected/` with the problem; each sent
//! message's state is kept in `status/<id>.json` until it ends.
//!
//! Crash safety: a file leaves `out/` only after its message is committed (or its refusal is
//! written). A crash between commit and move finds the file again, and submitting it again
//! answers the same id (same client, same XÖV message UUID): nothing lost, nothing doubled.
//! Files that cannot be read (permissions) and transient failures (store busy or full) leave the
//! file where it is, to be tried again.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::config::Client;
use crate::ctx::Ctx;
use crate::dropdir::{DropDir, free_name, move_durable, write_durable};
use crate::intake::Submitted;
use crate::problem::{Code, Problem};
use crate::store::{ENDED, Status};

/// Files of one scan handled at once.
const CONCURRENT: usize = 8;
/// A file that ends early and was written to this recently may still be being written (by a
/// writer that does not rename): it is tried again at the next scan instead of being refused.
const SETTLE: Duration = Duration::from_secs(2);

/// What became of one file.
#[derive(Debug)]
enum Picked {
    /// Committed (or committed before): moved to `sent/`.
    Sent { id: String, status: Status },
    /// Refused: moved to `rejected/` with its problem.
    Rejected,
    /// Left in `out/` for the next scan (transient failure, still being written, unreadable).
    Left,
    /// Gone before it could be read (taken back by the legacy system).
    Gone,
}

/// Watches one client's drop folder until shutdown.
pub async fn run(ctx: Arc<Ctx>, client: Client, mut shutdown: watch::Receiver<bool>) {
    let Some(dir) = client.drop_dir.clone() else { return };
    let events = Arc::new(Notify::new());
    // Without events (a file system that has none, or no inotify watches left) the scan alone
    // finds the files.
    let _watcher = watcher(&dir.out(), events.clone())
        .inspect_err(
            |e| tracing::warn!(client = %client.name, error = %e, "no file events for the drop folder; scanning only"),
        )
        .ok();
    let d = dir.clone();
    let mut follow = blocking(move || pending_statuses(&d)).await.unwrap_or_default();
    let mut unreadable = HashSet::new();
    let client = Arc::new(client);
    // Statuses are followed once per poll interval, however often files arrive.
    let mut next_follow = tokio::time::Instant::now();
    loop {
        if let Err(e) = scan(&ctx, &client, &dir, &mut follow, &mut unreadable).await {
            tracing::warn!(client = %client.name, error = %e, "drop folder not readable");
        }
        if tokio::time::Instant::now() >= next_follow {
            follow_statuses(&ctx, &dir, &mut follow).await;
            next_follow = tokio::time::Instant::now() + client.drop_poll;
        }
        tokio::select! {
            _ = events.notified() => {}
            _ = tokio::time::sleep(client.drop_poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// An inotify watch on `out/` that wakes the scan when a file is created, renamed in or
/// closed after writing — not on the node's own reads and moves, which would wake it again.
fn watcher(out: &Path, wake: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::{EventKind, RecursiveMode, Watcher};
    let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e
            && matches!(
                e.kind,
                EventKind::Create(_)
                    | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
                    | EventKind::Access(AccessKind::Close(AccessMode::Write))
            )
        {
            wake.notify_one();
        }
    })?;
    w.watch(out, RecursiveMode::NonRecursive)?;
    Ok(w)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
}

/// One pass over `out/`: every finished file, oldest first, [`CONCURRENT`] at a time.
async fn scan(
    ctx: &Arc<Ctx>,
    client: &Arc<Client>,
    dir: &DropDir,
    follow: &mut BTreeMap<String, Status>,
    unreadable: &mut HashSet<String>,
) -> Result<(), String> {
    let d = dir.clone();
    let files = blocking(move || d.waiting()).await?.map_err(|e| e.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    let mut files = files.into_iter();
    loop {
        while tasks.len() < CONCURRENT
            && let Some((name, modified)) = files.next()
        {
            let (ctx, client, dir) = (ctx.clone(), client.clone(), dir.clone());
            tasks.spawn(async move {
                let picked = pick_up(&ctx, &client, &dir, &name, modified).await;
                (name, picked)
            });
        }
        let Some(done) = tasks.join_next().await else { break };
        let Ok((name, picked)) = done else { continue };
        match picked {
            Ok(Picked::Sent { id, status }) => {
                unreadable.remove(&name);
                if !ENDED.contains(&status) {
                    follow.insert(id, status);
                }
            }
            Ok(Picked::Rejected | Picked::Left | Picked::Gone) => {
                unreadable.remove(&name);
            }
            // Logged once per file, not once per scan; the file stays.
            Err(e) => {
                if unreadable.insert(name.clone()) {
                    tracing::warn!(client = %client.name, file = %name, error = %e, "drop file cannot be read; left in out/");
                }
            }
        }
    }
    Ok(())
}

/// Reads one file (not following links, not blocking on a pipe) and submits it; refuses it
/// into `rejected/` or moves it to `sent/`. `Err`: it cannot be read and stays.
async fn pick_up(
    ctx: &Ctx,
    client: &Client,
    dir: &DropDir,
    name: &str,
    modified: SystemTime,
) -> Result<Picked, String> {
    let limit = ctx.config().limits.max_bytes;
    let path = dir.out().join(name);
    let bytes = match blocking(move || read_limited(&path, limit)).await? {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            let p = Problem::new(
                Code::LimitExceeded,
                format!("the file is larger than the limit of {limit} bytes"),
            );
            return reject(dir, name, p).await;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Picked::Gone),
        Err(e) => return Err(e.to_string()),
    };
    crate::failpoint!("drop.before_submit");
    match crate::intake::submit(ctx, client, Arc::from(bytes)).await {
        Ok(Submitted::Accepted(id)) => sent(ctx, dir, name, id, true).await,
        Ok(Submitted::AlreadyAccepted(id)) => sent(ctx, dir, name, id, false).await,
        // Busy, full, unavailable: the file stays and is tried again.
        Err(p) if p.code.status().is_server_error() => Ok(Picked::Left),
        Err(p) if p.code == Code::NotWellFormed && recently(modified) => Ok(Picked::Left),
        Err(p) => reject(dir, name, p).await,
    }
}

fn recently(modified: SystemTime) -> bool {
    modified.elapsed().map_or(true, |age| age < SETTLE)
}

/// The file's bytes, or `None` when it has more than `limit`; a link or a pipe is refused by
/// the open itself (`O_NOFOLLOW`, `O_NONBLOCK`).
fn read_limited(path: &Path, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

/// A committed message's file: `status/<id>.json`, `sent/NAME.json`, then the file itself to
/// `sent/NAME` (each durable), so the legacy system finds the answer beside the file. The
/// answer's status is REST's: `accepted` for a new message (`fresh`), else its state now.
async fn sent(ctx: &Ctx, dir: &DropDir, name: &str, id: String, fresh: bool) -> Result<Picked, String> {
    crate::failpoint!("drop.before_move");
    let m = ctx.store.message(&id).await.ok().flatten();
    let status = match &m {
        Some(m) if !fresh => m.status,
        _ => Status::Accepted,
    };
    let body = match &m {
        Some(m) => crate::intake::http::status_json(ctx, m).await.ok(),
        None => None,
    };
    let answer = serde_json::to_vec_pretty(&json!({"id": id, "status": status})).unwrap_or_default();
    let (dir, name, status_id) = (dir.clone(), name.to_owned(), id.clone());
    let moved = blocking(move || {
        if let Some(body) = body {
            write_durable(
                &dir.status(),
                &format!("{status_id}.json"),
                &serde_json::to_vec_pretty(&body)?,
            )?;
        }
        let target = free_name(&dir.sent(), &name);
        write_durable(&dir.sent(), &format!("{target}.json"), &answer)?;
        move_or_unanswer(&dir.out(), &name, &dir.sent(), &target)
    })
    .await?;
    match moved {
        Ok(()) => Ok(Picked::Sent { id, status }),
        // Taken away after it was read: the message is committed all the same.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Picked::Sent { id, status }),
        Err(e) => Err(format!("committed as {id}, but not moved to sent/: {e}")),
    }
}

/// A refused file: `rejected/NAME.json` (the problem as the REST API answers it), then the
/// file to `rejected/NAME`.
async fn reject(dir: &DropDir, name: &str, p: Problem) -> Result<Picked, String> {
    let problem = serde_json::to_vec_pretty(&p).unwrap_or_default();
    let (dir, name) = (dir.clone(), name.to_owned());
    let code = p.code;
    let moved = blocking(move || {
        let target = free_name(&dir.rejected(), &name);
        write_durable(&dir.rejected(), &format!("{target}.json"), &problem)?;
        move_or_unanswer(&dir.out(), &name, &dir.rejected(), &target)
    })
    .await?;
    match moved {
        Ok(()) => {
            tracing::info!(code = %code, "drop file refused");
            Ok(Picked::Rejected)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Picked::Gone),
        Err(e) => Err(format!("refused ({code}), but not moved to rejected/: {e}")),
    }
}

/// Moves `from/name` to `to/target`; when the file is gone (taken back by the legacy system, or
/// moved by another process of the node that picked it up at the same time), the answer just
/// written for it, `to/target.json`, goes too, so no answer stands without its file.
fn move_or_unanswer(from: &Path, name: &str, to: &Path, target: &str) -> std::io::Result<()> {
    let moved = move_durable(from, name, to, target);
    if let Err(e) = &moved
        && e.kind() == std::io::ErrorKind::NotFound
        && !to.join(target).exists()
    {
        let _ = std::fs::remove_file(to.join(format!("{target}.json")));
    }
    moved
}

/// The messages whose `status/<id>.json` names a state that has not ended (after a restart).
fn pending_statuses(dir: &DropDir) -> BTreeMap<String, Status> {
    let mut pending = BTreeMap::new();
    for entry in std::fs::read_dir(dir.status()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".json").filter(|_| !name.starts_with('.')) else {
            continue;
        };
        let status = std::fs::read(entry.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["status"].as_str().and_then(Status::parse));
        if let Some(status) = status.filter(|s| !ENDED.contains(s)) {
            pending.insert(id.to_owned(), status);
        }
    }
    pending
}

/// Rewrites `status/<id>.json` of every followed message whose state changed; an ended one is
/// no longer followed.
async fn follow_statuses(ctx: &Ctx, dir: &DropDir, follow: &mut BTreeMap<String, Status>) {
    let ids: Vec<(String, Status)> = follow.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (id, known) in ids {
        let m = match ctx.store.message(&id).await {
            Ok(Some(m)) => m,
            // Purged (or never ours): nothing more to follow.
            Ok(None) => {
                follow.remove(&id);
                continue;
            }
            Err(_) => return,
        };
        if m.status == known {
            continue;
        }
        let Ok(body) = crate::intake::http::status_json(ctx, &m).await else {
            return;
        };
        let (status_dir, file) = (dir.status(), format!("{id}.json"));
        let bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
        match blocking(move || write_durable(&status_dir, &file, &bytes)).await {
            Ok(Ok(())) if ENDED.contains(&m.status) => {
                follow.remove(&id);
            }
            Ok(Ok(())) => {
                follow.insert(id, m.status);
            }
            Ok(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "status file not written");
                return;
            }
            Err(_) => return,
        }
    }
}
