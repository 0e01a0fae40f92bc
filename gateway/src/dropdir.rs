//! Drop folders: the layout a legacy system that only reads and writes folders shares with the
//! node, and the few file operations the node does in it, each durable before it counts.
//!
//! ```text
//! drop_dir/
//!   out/      the legacy system renames finished files in; the node picks them up
//!   sent/     NAME and NAME.json ({"id", "status"}) once NAME's message is committed
//!   rejected/ NAME and NAME.json (the problem, as the REST API answers it)
//!   status/   <id>.json: each sent message's state, rewritten until it ends
//!   in/       <id>.xml: received messages (attachments in <id>/), written durably
//! ```
//!
//! Writes go to a hidden temporary file, are fsynced, renamed into place, and the folder is
//! fsynced, so a reader sees a file whole or not at all and a crash leaves no half-written
//! file under a real name. Names starting with `.` or ending in `.part` / `.tmp` are in-progress
//! files and are never picked up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One client's drop folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropDir {
    pub root: PathBuf,
}

impl DropDir {
    pub fn new(root: impl Into<PathBuf>) -> DropDir {
        DropDir { root: root.into() }
    }

    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }

    pub fn sent(&self) -> PathBuf {
        self.root.join("sent")
    }

    pub fn rejected(&self) -> PathBuf {
        self.root.join("rejected")
    }

    pub fn status(&self) -> PathBuf {
        self.root.join("status")
    }

    pub fn inbox(&self) -> PathBuf {
        self.root.join("in")
    }

    /// Creates the five folders (and the root) where missing.
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [self.out(), self.sent(), self.rejected(), self.status(), self.inbox()] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    /// The finished files waiting in `out/`, oldest first, with their modification times.
    /// Entries that are not regular files (folders, links, pipes) are not listed.
    pub fn waiting(&self) -> std::io::Result<Vec<(String, SystemTime)>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(self.out())? {
            let Ok(entry) = entry else { continue };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !finished(&name) {
                continue;
            }
            // `file_type` does not follow links: a link is not a file of the legacy system's.
            let Ok(meta) = entry.metadata() else { continue };
            if meta.file_type().is_file() {
                files.push((name, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
        files.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        Ok(files)
    }
}

/// What an operator sees of a drop folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Finished files waiting in `out/`.
    pub waiting: u64,
    /// Seconds since the oldest of them was written (0 when none waits).
    pub oldest_age_seconds: u64,
    /// Files refused into `rejected/` (their `.json` answers not counted).
    pub rejected: u64,
}

impl DropDir {
    /// Counts what waits and what was refused (folders that cannot be read count as empty).
    pub fn summary(&self) -> Summary {
        let waiting = self.waiting().unwrap_or_default();
        let oldest = waiting
            .first()
            .and_then(|(_, t)| t.elapsed().ok())
            .map_or(0, |d| d.as_secs());
        let rejected = std::fs::read_dir(self.rejected())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && !name.ends_with(".json")
            })
            .count();
        Summary {
            waiting: waiting.len() as u64,
            oldest_age_seconds: oldest,
            rejected: rejected as u64,
        }
    }
}

/// Whether a name in `out/` is a finished file (not hidden, not `.part` or `.tmp`).
pub fn finished(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp"))
}

/// Writes `bytes` to `dir/name` durably: a hidden temporary file, fsync, rename, fsync of the
/// folder. An existing file of that name is replaced whole.
pub fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves `from/name` to `to/target` and fsyncs both folders.
pub fn move_durable(from: &Path, name: &str, to: &Path, target: &str) -> std::io::Result<()> {
    std::fs::rename(from.join(name), to.join(target))?;
    sync_dir(to)?;
    sync_dir(from)
}

/// Fsyncs a folder, so that a rename or a new name in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A name in `dir` for `name` that no file (nor its `.json` sidecar) has yet: `name` itself,
/// else `name.1`, `name.2`, …
pub fn free_name(dir: &Path, name: &str) -> String {
    let taken = |n: &str| dir.join(n).exists() || dir.join(format!("{n}.json")).exists();
    if !taken(name) {
        return name.to_owned();
    }
    (1..)
        .map(|i| format!("{name}.{i}"))
        .find(|n| !taken(n))
        .unwrap_or_default()
}

/// A file name from an untrusted one (an attachment's): its last path component, only
/// letters, digits, `-`, `_` and `.`, never hidden, at most 100 characters; `fallback` when
/// nothing is left.
pub fn safe_name(untrusted: &str, fallback: &str) -> String {
    let last = untrusted.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    name = name.trim_start_matches('.').to_owned();
    if name.is_empty() || name.chars().all(|c| c == '_') {
        fallback.to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_progress_are_not_finished() {
        for name in [".x.xml", "x.xml.part", "x.tmp", ".hidden"] {
            assert!(!finished(name), "{name}");
        }
        for name in ["x.xml", "part.xml", "tmp"] {
            assert!(finished(name), "{name}");
        }
    }

    #[test]
    fn attachment_names_stay_inside_the_folder() {
        assert_eq!(safe_name("../../etc/passwd", "a0"), "passwd");
        assert_eq!(safe_name("..", "a0"), "a0");
        assert_eq!(safe_name("C:\\x\\plan.pdf", "a0"), "plan.pdf");
        assert_eq!(safe_name(".bashrc", "a0"), "bashrc");
        assert_eq!(safe_name("Bauplan Straße 1.pdf", "a0"), "Bauplan_Stra_e_1.pdf");
        assert_eq!(safe_name("", "a3"), "a3");
        assert_eq!(safe_name("äöü", "a3"), "a3");
    }

    #[test]
    fn durable_writes_replace_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        write_durable(dir.path(), "a.json", b"1").unwrap();
        write_durable(dir.path(), "a.json", b"22").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"22");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A folder that is not there: an error, nothing written.
        assert!(write_durable(&dir.path().join("gone"), "a", b"1").is_err());
    }

    #[test]
    fn free_names_count_up_past_files_and_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "m.xml"), "m.xml");
        std::fs::write(dir.path().join("m.xml"), b"").unwrap();
        assert_eq!(free_name(dir.path(), "m.xml"), "m.xml.1");
        std::fs::write(dir.path().join("m.xml.1.json"), b"").unwrap();
        assert_eq!(free_name(dir.path(), "m.xml"), "m.xml.2");
    }

    #[test]
    fn waiting_lists_finished_regular_files_oldest_first() {
        let d = DropDir::new(tempfile::tempdir().unwrap().keep());
        d.create().unwrap();
        let old = std::fs::File::create(d.out().join("b.xml")).unwrap();
        old.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10))
            .unwrap();
        std::fs::write(d.out().join("a.xml"), b"x").unwrap();
        std::fs::write(d.out().join("c.xml.part"), b"x").unwrap();
        std::fs::create_dir(d.out().join("folder.xml")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.out().join("link.xml")).unwrap();
        let names: Vec<String> = d.waiting().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b.xml", "a.xml"]);
        std::fs::write(d.rejected().join("r.xml"), b"x").unwrap();
        std::fs::write(d.rejected().join("r.xml.json"), b"{}").unwrap();
        let s = d.summary();
        assert_eq!((s.waiting, s.rejected), (2, 1));
        assert!(s.oldest_age_seconds > 1_000_000_000, "{s:?}");
        std::fs::remove_dir_all(&d.root).unwrap();
    }
}
