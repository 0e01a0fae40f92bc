//! The audit log: append-only JSON entries, hash-chained. Each entry carries its sequence
//! number, the previous entry's hash (`prev`) and its own `hash`, the SHA-256 of `prev` and the
//! entry without `hash`; a head (last sequence number and hash) is kept beside the entries, so
//! that deleting the newest entries is detected too. Every entry is durable before the action
//! it records is answered. Entries hold ids, codes and names, never message content.
//!
//! Where it lives: with an embedded store, as JSON lines in `<data_dir>/audit.log` with the
//! head in `audit.log.head`; with a store that keeps an audit log ([`Store::keeps_audit`],
//! PostgreSQL), in the store, so that every process of a logical node appends to one chain
//! (appends are serialised in the database; each is its own transaction).
//!
//! `poststelle audit verify FILE` (a file) and `audit verify --config FILE` (the node's log,
//! wherever it lives) recompute the chain and name the first entry that was edited, inserted
//! or deleted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::store::Store;

/// The hash the first entry chains to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug)]
struct Tail {
    file: std::fs::File,
    seq: u64,
    hash: String,
}

/// An open audit log.
pub struct AuditLog {
    backend: Backend,
}

enum Backend {
    File {
        path: PathBuf,
        tail: Mutex<Tail>,
    },
    /// The store, and the name of this process (each entry names the process that wrote it).
    Store(Arc<dyn Store>, String),
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::File { path, .. } => write!(f, "AuditLog({})", path.display()),
            Backend::Store(..) => f.write_str("AuditLog(store)"),
        }
    }
}

fn head_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// The hash of an entry (without its `hash` field), chained to `prev`.
fn entry_hash(prev: &str, entry: &Map<String, Value>) -> String {
    let mut entry = entry.clone();
    entry.remove("hash");
    let text = serde_json::to_string(&Value::Object(entry)).unwrap_or_default();
    let mut data = prev.as_bytes().to_vec();
    data.push(b'\n');
    data.extend_from_slice(text.as_bytes());
    crate::envelope::hex(&crate::envelope::sha256(&data))
}

impl AuditLog {
    /// Opens (or creates) the log and continues its chain. A log that does not verify is still
    /// appended to (the break stays visible to `audit verify`), and the problem is logged.
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        let (seq, hash) = match verify(path) {
            Ok(v) => (v.entries, v.last_hash),
            Err(e) => {
                tracing::error!(line = e.line, reason = %e.reason, "the audit log does not verify");
                last_entry(path).unwrap_or((0, GENESIS.to_owned()))
            }
        };
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog {
            backend: Backend::File {
                path: path.to_path_buf(),
                tail: Mutex::new(Tail { file, seq, hash }),
            },
        })
    }

    /// The audit log kept in `store` (which [`Store::keeps_audit`]), written by the process
    /// named `process` (one of the node's processes sharing the chain).
    pub fn in_store(store: Arc<dyn Store>, process: &str) -> AuditLog {
        AuditLog {
            backend: Backend::Store(store, process.to_owned()),
        }
    }

    /// The newest `n` entries, oldest first (of a file: read from its last MiB).
    pub async fn tail(&self, n: usize) -> std::io::Result<Vec<Value>> {
        let (path, tail) = match &self.backend {
            Backend::File { path, tail } => (path, tail),
            Backend::Store(store, _) => {
                let head = store.audit_head().await.map_err(std::io::Error::other)?;
                let after = head.map_or(0, |(seq, _)| seq.saturating_sub(n as u64));
                let entries = store.audit_read(after, n).await.map_err(std::io::Error::other)?;
                return Ok(entries
                    .iter()
                    .filter_map(|(_, e)| serde_json::from_str(e).ok())
                    .collect());
            }
        };
        use std::io::{Read, Seek, SeekFrom};
        // Holding the writer's lock: no entry is half-written while we read.
        let _tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        let start = len.saturating_sub(1 << 20);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // The cut may fall inside a character of the first (dropped) line.
        let text = String::from_utf8_lossy(&bytes);
        let mut lines: Vec<&str> = text.lines().collect();
        if start > 0 && !lines.is_empty() {
            lines.remove(0); // cut in the middle
        }
        let skip = lines.len().saturating_sub(n);
        Ok(lines[skip..]
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Appends an entry (`actor` did `action`; `fields` are ids, codes, names), durably.
    pub async fn record(&self, actor: &str, action: &str, fields: Value) -> std::io::Result<()> {
        let mut entry = Map::new();
        entry.insert("time".into(), json!(crate::store::rfc3339(crate::store::now_millis())));
        entry.insert("actor".into(), json!(actor));
        entry.insert("action".into(), json!(action));
        if let Backend::Store(_, process) = &self.backend {
            entry.insert("process".into(), json!(process));
        }
        if let Value::Object(f) = fields {
            for (k, v) in f {
                if k != "seq" && k != "prev" && k != "hash" {
                    entry.entry(k).or_insert(v);
                }
            }
        }
        match &self.backend {
            Backend::File { path, tail } => append_to_file(path, tail, entry),
            Backend::Store(store, _) => {
                let chain = move |seq: u64, prev: Option<&str>| chained(&entry, seq, prev.unwrap_or(GENESIS));
                store.audit_append(&chain).await.map_err(std::io::Error::other)
            }
        }
    }

    /// Records, and logs instead of failing when the log cannot be written (the action itself
    /// already happened; the node's logs then say that its audit entry is missing).
    pub async fn note(&self, actor: &str, action: &str, fields: Value) {
        if let Err(e) = self.record(actor, action, fields).await {
            tracing::error!(action, error = %e, "cannot write the audit log");
        }
    }
}

/// `entry` as the chain's entry number `seq` after the entry whose hash is `prev`: its JSON
/// text (`seq` first, `prev` and `hash` last) and its hash.
fn chained(entry: &Map<String, Value>, seq: u64, prev: &str) -> (String, String) {
    let mut full = Map::new();
    full.insert("seq".into(), json!(seq));
    full.extend(entry.clone());
    full.insert("prev".into(), json!(prev));
    let hash = entry_hash(prev, &full);
    full.insert("hash".into(), json!(hash));
    (serde_json::to_string(&Value::Object(full)).unwrap_or_default(), hash)
}

fn append_to_file(path: &Path, tail: &Mutex<Tail>, entry: Map<String, Value>) -> std::io::Result<()> {
    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
    let (line, hash) = chained(&entry, tail.seq + 1, &tail.hash);
    tail.file.write_all(format!("{line}\n").as_bytes())?;
    tail.file.sync_data()?;
    let head = head_path(path);
    let tmp = head.with_extension("head.tmp");
    std::fs::write(&tmp, format!("{} {hash}\n", tail.seq + 1))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &head)?;
    tail.seq += 1;
    tail.hash = hash;
    Ok(())
}

fn last_entry(path: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(text.lines().last()?).ok()?;
    Some((v["seq"].as_u64()?, v["hash"].as_str()?.to_owned()))
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub last_hash: String,
    /// Entries per process that wrote them (a chain in the store of several processes).
    pub by_process: std::collections::BTreeMap<String, u64>,
}

/// Where the chain breaks: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub line: u64,
    pub reason: String,
}

/// Recomputes the chain of the log at `path` and checks it against its head file.
pub fn verify(path: &Path) -> Result<Verified, Broken> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !head_path(path).exists() => {
            return Ok(Verified {
                entries: 0,
                last_hash: GENESIS.to_owned(),
                by_process: Default::default(),
            });
        }
        Err(e) => {
            return Err(Broken {
                line: 0,
                reason: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let head = std::fs::read_to_string(head_path(path)).unwrap_or_default();
    let mut parts = head.split_whitespace();
    let head = (
        parts.next().and_then(|s| s.parse::<u64>().ok()),
        parts.next().map(str::to_owned),
    );
    let lines = std::io::BufReader::new(file)
        .lines()
        .map(|l| l.map_err(|e| e.to_string()));
    verify_chain(lines, head)
}

/// Recomputes the chain of the audit log kept in `store` and checks it against its head;
/// `line` of a break is the entry's position in the chain.
pub async fn verify_store(store: &dyn Store) -> Result<Verified, Broken> {
    let unreadable = |e: crate::store::StoreError| Broken {
        line: 0,
        reason: format!("cannot read the audit log from the store: {e}"),
    };
    // The node may append while we read: a read is consistent when the head is the same
    // before and after it (an append commits its entry and the head together).
    for _ in 0..5 {
        let before = store.audit_head().await.map_err(unreadable)?;
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let page = store.audit_read(after, 1000).await.map_err(unreadable)?;
            let Some((last, _)) = page.last() else { break };
            after = *last;
            entries.extend(page.into_iter().map(|(_, e)| Ok(e)));
        }
        if store.audit_head().await.map_err(unreadable)? != before {
            continue;
        }
        let head = before.map_or((None, None), |(seq, hash)| (Some(seq), Some(hash)));
        return verify_chain(entries.into_iter(), head);
    }
    Err(Broken {
        line: 0,
        reason: "the log kept growing while it was read; try again".into(),
    })
}

/// Checks the chain of `lines` (entries in order) against the head (last sequence number and
/// hash).
fn verify_chain(
    lines: impl Iterator<Item = Result<String, String>>,
    head: (Option<u64>, Option<String>),
) -> Result<Verified, Broken> {
    let broken = |line: u64, reason: String| Broken { line, reason };
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    let mut by_process = std::collections::BTreeMap::new();
    for line in lines {
        let line = line.map_err(|e| broken(n + 1, format!("cannot read: {e}")))?;
        n += 1;
        let Ok(Value::Object(entry)) = serde_json::from_str::<Value>(&line) else {
            return Err(broken(n, "not a JSON object (edited?)".into()));
        };
        if entry.get("seq").and_then(Value::as_u64) != Some(n) {
            return Err(broken(
                n,
                format!(
                    "sequence number {} where {n} belongs (an entry before it was deleted or inserted)",
                    entry.get("seq").map(|v| v.to_string()).unwrap_or_else(|| "none".into())
                ),
            ));
        }
        if entry.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(broken(n, "does not chain to the entry before it".into()));
        }
        let hash = entry_hash(&prev, &entry);
        if entry.get("hash").and_then(Value::as_str) != Some(hash.as_str()) {
            return Err(broken(n, "its hash does not match its content (edited)".into()));
        }
        prev = hash;
        if let Some(p) = entry.get("process").and_then(Value::as_str) {
            *by_process.entry(p.to_owned()).or_default() += 1;
        }
    }
    match head {
        (Some(seq), Some(hash)) if seq == n && hash == prev => Ok(Verified {
            entries: n,
            last_hash: prev,
            by_process,
        }),
        (Some(seq), _) if seq > n => Err(broken(
            n + 1,
            format!("entries {} to {seq} are missing (deleted from the end)", n + 1),
        )),
        (None, _) if n == 0 => Ok(Verified {
            entries: 0,
            last_hash: prev,
            by_process,
        }),
        _ => Err(broken(n, "the head does not match the last entry".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detects_edits_insertions_and_deletions_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..4 {
            log.record("admin", "retry", json!({"message_id": format!("m{i}")}))
                .await
                .unwrap();
        }
        drop(log);
        assert_eq!(verify(&path).unwrap().entries, 4);
        // Reopening continues the chain.
        AuditLog::open(&path)
            .unwrap()
            .record("admin", "cancel", json!({}))
            .await
            .unwrap();
        assert_eq!(verify(&path).unwrap().entries, 5);
        let original = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let write = |ls: Vec<String>| std::fs::write(&path, ls.join("\n") + "\n").unwrap();
        let own = |ls: &[&str]| ls.iter().map(|s| s.to_string()).collect::<Vec<_>>();

        let mut edited = own(&lines);
        edited[2] = edited[2].replace("m2", "m9");
        write(edited);
        assert_eq!(verify(&path).unwrap_err().line, 3);

        let mut deleted = own(&lines);
        deleted.remove(1);
        write(deleted);
        assert_eq!(verify(&path).unwrap_err().line, 2);

        let mut truncated = own(&lines);
        truncated.pop();
        write(truncated);
        let e = verify(&path).unwrap_err();
        assert_eq!(e.line, 5, "{e:?}");

        write(own(&lines));
        assert!(verify(&path).is_ok());
    }

    /// Two processes on one PostgreSQL store append to one chain, one after the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_sharing_a_postgres_store_append_to_one_chain() {
        use crate::store::pg::{PgSettings, PgStore, drop_schemas};
        struct Dropped(String, String);
        impl Drop for Dropped {
            fn drop(&mut self) {
                let _ = drop_schemas(&self.0, std::slice::from_ref(&self.1));
            }
        }
        let url = std::env::var("POSTSTELLE_TEST_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
        let settings = PgSettings {
            url: url.clone(),
            schema: format!("audit_test_{}", uuid::Uuid::new_v4().simple()),
            pool_size: 4,
            password: None,
            holder: "audit-test".into(),
            max_size_mb: 0,
            ca: None,
        };
        let _dropped = Dropped(url, settings.schema.clone());
        let open = || async { Arc::new(PgStore::open(&settings).await.unwrap()) as Arc<dyn Store> };
        let (one, two) = (open().await, open().await);
        assert!(one.keeps_audit());
        let logs = Arc::new([AuditLog::in_store(one.clone(), "p0"), AuditLog::in_store(two, "p1")]);
        // Thirty appends at once, half through each process's handle.
        let mut appends = tokio::task::JoinSet::new();
        for p in 0..2 {
            for i in 0..15 {
                let logs = logs.clone();
                appends.spawn(async move {
                    logs[p]
                        .record("admin", "retry", json!({"message_id": format!("p{p}-{i}")}))
                        .await
                });
            }
        }
        while let Some(r) = appends.join_next().await {
            r.unwrap().unwrap();
        }
        let v = verify_store(one.as_ref()).await.unwrap();
        assert_eq!(v.entries, 30);
        let by: Vec<(&str, u64)> = v.by_process.iter().map(|(p, n)| (p.as_str(), *n)).collect();
        assert_eq!(by, [("p0", 15), ("p1", 15)], "each entry names its process");
        let tail = logs[0].tail(4).await.unwrap();
        let seqs: Vec<u64> = tail.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [27, 28, 29, 30]);
        assert_eq!(tail[3]["hash"], json!(v.last_hash));
    }
}
