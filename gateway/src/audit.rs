//! The audit log: append-only JSON lines in `<data_dir>/audit.log`, hash-chained. Each entry
//! carries its sequence number, the previous entry's hash (`prev`) and its own `hash`, the
//! SHA-256 of `prev` and the entry without `hash`; `audit.log.head` holds the last sequence
//! number and hash, so that deleting the newest entries is detected too. Every entry is written
//! and synced before the action it records is answered. Entries hold ids, codes and names,
//! never message content.
//!
//! `poststelle audit verify FILE` recomputes the chain and names the first line that was
//! edited, inserted or deleted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

/// The hash the first entry chains to.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug)]
struct Tail {
    file: std::fs::File,
    seq: u64,
    hash: String,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    tail: Mutex<Tail>,
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
            path: path.to_path_buf(),
            tail: Mutex::new(Tail { file, seq, hash }),
        })
    }

    /// The newest `n` entries, oldest first (read from the last MiB of the file).
    pub fn tail(&self, n: usize) -> std::io::Result<Vec<Value>> {
        use std::io::{Read, Seek, SeekFrom};
        // Holding the writer's lock: no entry is half-written while we read.
        let _tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = std::fs::File::open(&self.path)?;
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

    /// Appends an entry (`actor` did `action`; `fields` are ids, codes, names) and syncs it.
    pub fn record(&self, actor: &str, action: &str, fields: Value) -> std::io::Result<()> {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let mut entry = Map::new();
        entry.insert("seq".into(), json!(tail.seq + 1));
        entry.insert("time".into(), json!(crate::store::rfc3339(crate::store::now_millis())));
        entry.insert("actor".into(), json!(actor));
        entry.insert("action".into(), json!(action));
        if let Value::Object(f) = fields {
            for (k, v) in f {
                entry.entry(k).or_insert(v);
            }
        }
        entry.insert("prev".into(), json!(tail.hash));
        let hash = entry_hash(&tail.hash, &entry);
        entry.insert("hash".into(), json!(hash));
        let mut line = serde_json::to_vec(&Value::Object(entry))?;
        line.push(b'\n');
        tail.file.write_all(&line)?;
        tail.file.sync_data()?;
        let head = head_path(&self.path);
        let tmp = head.with_extension("head.tmp");
        std::fs::write(&tmp, format!("{} {hash}\n", tail.seq + 1))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &head)?;
        tail.seq += 1;
        tail.hash = hash;
        Ok(())
    }

    /// Records, and logs instead of failing when the log cannot be written (the action itself
    /// already happened; the node's logs then say that its audit entry is missing).
    pub fn note(&self, actor: &str, action: &str, fields: Value) {
        if let Err(e) = self.record(actor, action, fields) {
            tracing::error!(action, error = %e, "cannot write the audit log");
        }
    }
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
}

/// Where the chain breaks: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub line: u64,
    pub reason: String,
}

/// Recomputes the chain of the log at `path` and checks it against its head file.
pub fn verify(path: &Path) -> Result<Verified, Broken> {
    let broken = |line: u64, reason: String| Broken { line, reason };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !head_path(path).exists() => {
            return Ok(Verified {
                entries: 0,
                last_hash: GENESIS.to_owned(),
            });
        }
        Err(e) => return Err(broken(0, format!("cannot read {}: {e}", path.display()))),
    };
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    for line in std::io::BufReader::new(file).lines() {
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
    }
    let head = std::fs::read_to_string(head_path(path)).unwrap_or_default();
    let mut parts = head.split_whitespace();
    let (head_seq, head_hash) = (parts.next().and_then(|s| s.parse::<u64>().ok()), parts.next());
    match (head_seq, head_hash) {
        (Some(seq), Some(hash)) if seq == n && hash == prev => Ok(Verified {
            entries: n,
            last_hash: prev,
        }),
        (Some(seq), _) if seq > n => Err(broken(
            n + 1,
            format!("entries {} to {seq} are missing (deleted from the end)", n + 1),
        )),
        (None, _) if n == 0 => Ok(Verified {
            entries: 0,
            last_hash: prev,
        }),
        _ => Err(broken(n, "the head file does not match the last entry".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_edits_insertions_and_deletions_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..4 {
            log.record("admin", "retry", json!({"message_id": format!("m{i}")}))
                .unwrap();
        }
        drop(log);
        assert_eq!(verify(&path).unwrap().entries, 4);
        // Reopening continues the chain.
        AuditLog::open(&path)
            .unwrap()
            .record("admin", "cancel", json!({}))
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
}
