//! Embeds the project's own schemas (`xsd/`), demo fixtures (`fixtures/messages/`) and the demo
//! standard's adapter manifest (`manifests/xumzug-1.0/`) into the
//! binary, so that `poststelle demo` and `poststelle serve` without a config work from any folder.

use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for sub in ["xsd", "fixtures/messages", "manifests/xumzug-1.0"] {
        println!("cargo:rerun-if-changed=../{sub}");
        walk(&root.join(sub), &mut files);
    }
    let mut code = String::from(
        "/// Files embedded at build time: (path relative to the repository root, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        let abs = std::fs::canonicalize(&f).unwrap();
        code.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.to_string_lossy()
        ));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}
