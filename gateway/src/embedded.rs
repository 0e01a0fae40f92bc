//! The project's own schemas and demo fixtures, embedded at build time (see `build.rs`).
//!
//! Schemas are compiled from file paths (so relative imports resolve), so they are written out
//! to a folder before use; [`write_schemas`] does that idempotently.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// Writes the embedded `xsd/` tree below `dir` (as `dir/envelope-1.0/…`, `dir/xumzug-1.0/…`)
/// and returns `dir`. Files whose content already matches are left alone.
pub fn write_schemas(dir: &Path) -> std::io::Result<PathBuf> {
    for (path, bytes) in FILES {
        if let Some(rel) = path.strip_prefix("xsd/") {
            let target = dir.join(rel);
            if std::fs::read(&target).ok().as_deref() == Some(*bytes) {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            replace(&target, bytes)?;
        }
    }
    Ok(dir.to_path_buf())
}

/// Writes the built-in adapter manifests (the demo standard's) below `dir` and returns their
/// directories. Their schema paths use `{schemas}/`, so they follow the configured schema root.
pub fn write_builtin_adapters(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for (path, bytes) in FILES {
        if let Some(rel) = path.strip_prefix("manifests/") {
            let target = dir.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
                if !dirs.iter().any(|d: &PathBuf| d == parent) {
                    dirs.push(parent.to_path_buf());
                }
            }
            if std::fs::read(&target).ok().as_deref() != Some(*bytes) {
                replace(&target, bytes)?;
            }
        }
    }
    Ok(dirs)
}

/// Writes `bytes` to `target` through a temporary file and a rename, so that another process
/// of the node starting at the same moment reads the old file or the new one, never half.
fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = target.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, target)
}

/// Embedded demo fixtures below `prefix` (e.g. `fixtures/messages/xumzug/valid/`), sorted by path.
pub fn fixtures(prefix: &str) -> Vec<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .filter(|(p, _)| p.starts_with(prefix))
        .map(|(p, b)| (*p, *b))
        .collect()
}
