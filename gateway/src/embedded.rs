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
            std::fs::write(&target, bytes)?;
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
                std::fs::write(&target, bytes)?;
            }
        }
    }
    Ok(dirs)
}

/// Embedded demo fixtures below `prefix` (e.g. `fixtures/messages/xumzug/valid/`), sorted by path.
pub fn fixtures(prefix: &str) -> Vec<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .filter(|(p, _)| p.starts_with(prefix))
        .map(|(p, b)| (*p, *b))
        .collect()
}
