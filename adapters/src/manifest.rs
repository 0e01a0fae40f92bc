//! Manifests: an adapter described by an `adapter.toml` in its own directory, so that a new
//! message type needs data only — schemas, a manifest, fixtures — and no Rust.
//!
//! Paths in a manifest are relative to its directory, or start with `{xoev}/` (the configured
//! folder of official schemas, never copied into the project) or `{schemas}/` (the project's own
//! schema folder). The format is documented in `docs/adapters.md`; `poststelle adapter new`
//! writes a commented example.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::codelist::{CodeList, CodeListBinding};
use crate::header::{HeaderPaths, Party, Prefix};
use crate::{PathAdapter, SchemaSet, Transforms};

/// The file name of a manifest inside an adapter directory.
pub const FILE: &str = "adapter.toml";

/// What `{xoev}/` and `{schemas}/` in a manifest's paths stand for.
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Folder of the official schemas and samples (e.g. `../shared/xoev`).
    pub xoev: Option<PathBuf>,
    /// Folder of the project's own schemas (`envelope-1.0/`, `xumzug-1.0/`).
    pub schemas: Option<PathBuf>,
}

/// A loaded manifest: the adapter and the fixtures its conformance check runs.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub adapter: PathAdapter,
    /// Files that must validate and yield every header field.
    pub valid: Vec<PathBuf>,
    /// Files that must fail, each with a sidecar `<stem>.expected` naming the error code on its
    /// first line and, optionally, a text the error must contain on its second.
    pub invalid: Vec<PathBuf>,
}

/// Every problem found in one manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("adapter manifest {file}: {}", problems.join("; "))]
pub struct ManifestError {
    pub file: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    standard: String,
    version: String,
    /// Namespace of the root elements; `""` for documents in no namespace.
    namespace: String,
    #[serde(default)]
    roots: Vec<String>,
    schema: RawSchema,
    header: Option<RawHeader>,
    #[serde(default)]
    codelist: Vec<RawCodeList>,
    #[serde(default)]
    transform: RawTransform,
    #[serde(default)]
    fixtures: RawFixtures,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    entry: String,
    #[serde(default)]
    catalogs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    message_id: OneOrMany,
    type_code: Option<String>,
    author: RawParty,
    reader: RawParty,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    path: OneOrMany,
    prefix: Option<String>,
    prefix_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCodeList {
    file: String,
    #[serde(default)]
    elements: Vec<String>,
    column: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransform {
    inbound: Option<String>,
    outbound: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFixtures {
    valid: Vec<String>,
    invalid: Vec<String>,
}

impl Default for RawFixtures {
    fn default() -> Self {
        Self {
            valid: vec!["fixtures/valid/*.xml".into()],
            invalid: vec!["fixtures/invalid/*.xml".into()],
        }
    }
}

struct Resolver<'a> {
    dir: &'a Path,
    roots: &'a Roots,
    problems: Vec<String>,
}

impl Resolver<'_> {
    /// Resolves a manifest path; records a problem and returns `None` if it cannot.
    fn path(&mut self, field: &str, p: &str) -> Option<PathBuf> {
        let (root, rest, placeholder) = if let Some(rest) = p.strip_prefix("{xoev}/") {
            (self.roots.xoev.as_deref(), rest, "{xoev}")
        } else if let Some(rest) = p.strip_prefix("{schemas}/") {
            (self.roots.schemas.as_deref(), rest, "{schemas}")
        } else {
            return Some(self.dir.join(p));
        };
        match root {
            Some(root) => Some(root.join(rest)),
            None => {
                self.problems.push(format!(
                    "{field}: {p} uses {placeholder}, but no {} folder is configured",
                    if placeholder == "{xoev}" {
                        "official-schema ([adapters] xoev_root, --xoev-root)"
                    } else {
                        "project schema"
                    }
                ));
                None
            }
        }
    }

    /// Resolves a path to an existing file.
    fn file(&mut self, field: &str, p: &str) -> Option<PathBuf> {
        let path = self.path(field, p)?;
        if path.is_file() {
            Some(path)
        } else {
            self.problems
                .push(format!("{field}: {} does not exist", path.display()));
            None
        }
    }

    /// Files matching a pattern whose last component may contain `*`, sorted.
    fn glob(&mut self, field: &str, pattern: &str, required: bool) -> Vec<PathBuf> {
        let Some(path) = self.path(field, pattern) else {
            return Vec::new();
        };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            if required {
                self.problems
                    .push(format!("{field}: folder {} does not exist", dir.display()));
            }
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| crate::glob_match(name, n))
            })
            .collect();
        found.sort();
        if found.is_empty() && required {
            self.problems
                .push(format!("{field}: no file matches {}", path.display()));
        }
        found
    }
}

fn check_path(problems: &mut Vec<String>, field: &str, p: &str) {
    if p.is_empty() || p.split('/').any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
        problems.push(format!("{field}: {p:?} is not a path of element names separated by /"));
    }
}

fn party(problems: &mut Vec<String>, field: &str, raw: RawParty) -> Party {
    let paths = raw.path.into_vec();
    if paths.is_empty() {
        problems.push(format!("{field}.path: names no path"));
    }
    for p in &paths {
        check_path(problems, &format!("{field}.path"), p);
    }
    let prefix = match (raw.prefix, raw.prefix_path) {
        (None, None) => Prefix::InValue,
        (Some(p), None) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric()) {
                problems.push(format!("{field}.prefix: {p:?} is not an alphanumeric DVDV prefix"));
            }
            Prefix::Fixed(p)
        }
        (None, Some(p)) => {
            check_path(problems, &format!("{field}.prefix_path"), &p);
            Prefix::Path(p)
        }
        (Some(_), Some(_)) => {
            problems.push(format!("{field}: give prefix or prefix_path, not both"));
            Prefix::InValue
        }
    };
    Party { paths, prefix }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl Manifest {
    /// Loads `dir/adapter.toml`, resolving and checking every file it names, fixtures
    /// included. Reports every problem at once.
    pub fn load(dir: &Path, roots: &Roots) -> Result<Manifest, ManifestError> {
        Self::load_inner(dir, roots, true)
    }

    /// Loads the adapter only, as a node does: the fixtures are neither resolved nor checked.
    pub fn load_adapter(dir: &Path, roots: &Roots) -> Result<Manifest, ManifestError> {
        Self::load_inner(dir, roots, false)
    }

    fn load_inner(dir: &Path, roots: &Roots, with_fixtures: bool) -> Result<Manifest, ManifestError> {
        let file = dir.join(FILE);
        let fail = |problems: Vec<String>| ManifestError {
            file: file.display().to_string(),
            problems,
        };
        let text = std::fs::read_to_string(&file).map_err(|e| fail(vec![format!("cannot read: {e}")]))?;
        let raw: RawManifest = toml::from_str(&text).map_err(|e| fail(vec![e.to_string()]))?;
        let mut r = Resolver {
            dir,
            roots,
            problems: Vec::new(),
        };
        if !is_name(&raw.name) {
            r.problems
                .push(format!("name: {:?} must be letters, digits, '.', '-' or '_'", raw.name));
        }
        for (field, v) in [("standard", &raw.standard), ("version", &raw.version)] {
            if !is_name(v) {
                r.problems
                    .push(format!("{field}: {v:?} must be letters, digits, '.', '-' or '_'"));
            }
        }
        for p in &raw.roots {
            if p.is_empty() || p.contains(char::is_whitespace) || p.contains(':') {
                r.problems
                    .push(format!("roots: {p:?} is not a local element name pattern"));
            }
        }
        let entry = r.file("schema.entry", &raw.schema.entry);
        let catalogs: Vec<PathBuf> = raw
            .schema
            .catalogs
            .iter()
            .filter_map(|c| r.file("schema.catalogs", c))
            .collect();
        let mut problems = Vec::new();
        let header = match raw.header {
            Some(h) => {
                let message_uuid = h.message_id.into_vec();
                if message_uuid.is_empty() {
                    problems.push("header.message_id: names no path".to_owned());
                }
                for p in message_uuid.iter().filter(|p| *p != crate::header::ROOT_TOKEN) {
                    check_path(&mut problems, "header.message_id", p);
                }
                if message_uuid == [crate::header::ROOT_TOKEN] {
                    problems.push("header.message_id: {root} alone does not identify a message".to_owned());
                }
                if let Some(p) = &h.type_code {
                    check_path(&mut problems, "header.type_code", p);
                }
                Some(HeaderPaths {
                    message_uuid,
                    type_code: h.type_code,
                    author: party(&mut problems, "header.author", h.author),
                    reader: party(&mut problems, "header.reader", h.reader),
                })
            }
            None => None,
        };
        if header.is_none() && raw.transform.inbound.is_none() {
            problems.push("header: missing (only a legacy format with an inbound transform may omit it)".to_owned());
        }
        if header.is_none() && !raw.codelist.is_empty() {
            problems.push(
                "codelist: a legacy format (no [header]) has no code lists; pin them in the standard's adapter"
                    .to_owned(),
            );
        }
        r.problems.append(&mut problems);
        let mut codelists = Vec::new();
        for (i, c) in raw.codelist.iter().enumerate() {
            let field = format!("codelist[{i}]");
            for p in &c.elements {
                check_path(&mut r.problems, &format!("{field}.elements"), p);
            }
            if let Some(path) = r.file(&format!("{field}.file"), &c.file) {
                match CodeList::load(&path, c.column.as_deref()) {
                    Ok(list) => codelists.push(CodeListBinding {
                        list,
                        elements: c.elements.clone(),
                    }),
                    Err(e) => r.problems.push(format!("{field}: {e}")),
                }
            }
        }
        let transforms = Transforms {
            inbound: raw
                .transform
                .inbound
                .as_deref()
                .and_then(|p| r.file("transform.inbound", p)),
            outbound: raw
                .transform
                .outbound
                .as_deref()
                .and_then(|p| r.file("transform.outbound", p)),
        };
        let defaults = RawFixtures::default();
        let mut fixture_files = |patterns: &[String], default: &[String], field: &str| -> Vec<PathBuf> {
            let required = patterns != default;
            patterns.iter().flat_map(|p| r.glob(field, p, required)).collect()
        };
        let (valid, invalid) = if with_fixtures {
            (
                fixture_files(&raw.fixtures.valid, &defaults.valid, "fixtures.valid"),
                fixture_files(&raw.fixtures.invalid, &defaults.invalid, "fixtures.invalid"),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        if !r.problems.is_empty() {
            return Err(fail(r.problems));
        }
        let Some(entry) = entry else {
            return Err(fail(vec!["schema.entry: missing".into()]));
        };
        Ok(Manifest {
            dir: dir.to_path_buf(),
            adapter: PathAdapter {
                name: raw.name,
                standard: raw.standard,
                version: raw.version,
                namespace: Some(raw.namespace).filter(|n| !n.is_empty()),
                roots: raw.roots,
                schema: SchemaSet { entry, catalogs },
                header,
                codelists,
                transforms,
            },
            valid,
            invalid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn loads_a_manifest_with_prefix_rules_and_fixtures() {
        let (dir, xoev) = (scratch(), scratch());
        let (dir, xoev) = (dir.path(), xoev.path().to_path_buf());
        write(&xoev, "std/main schema.xsd", "<xs:schema/>");
        write(dir, "fixtures/valid/a.xml", "<a/>");
        write(dir, "fixtures/valid/notes.txt", "");
        write(dir, "fixtures/invalid/b.xml", "<b/>");
        write(
            dir,
            FILE,
            r#"
name = "demo-1"
standard = "demo"
version = "1"
namespace = ""
roots = ["Nachricht.*"]
[schema]
entry = "{xoev}/std/main schema.xsd"
[header]
message_id = ["Kopf/Prozess", "Kopf/Typ"]
author = { path = ["Kopf/Abs/a", "Kopf/Abs/b"], prefix = "demo" }
reader = { path = "Kopf/Empf/kennung", prefix_path = "Kopf/Empf/praefix" }
"#,
        );
        let roots = Roots {
            xoev: Some(xoev.clone()),
            schemas: None,
        };
        let m = Manifest::load(dir, &roots).unwrap();
        assert_eq!(m.adapter.namespace, None);
        assert_eq!(m.adapter.schema.entry, xoev.join("std/main schema.xsd"));
        assert_eq!(m.valid, vec![dir.join("fixtures/valid/a.xml")]);
        assert_eq!(m.invalid, vec![dir.join("fixtures/invalid/b.xml")]);
        let h = m.adapter.header.unwrap();
        assert_eq!(h.author.prefix, Prefix::Fixed("demo".into()));
        assert_eq!(h.reader.prefix, Prefix::Path("Kopf/Empf/praefix".into()));
        let err = Manifest::load(dir, &Roots::default()).unwrap_err();
        assert!(err.problems[0].contains("{xoev}"), "{err}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let dir = scratch();
        let dir = dir.path();
        write(
            dir,
            FILE,
            r#"
name = "bad name"
standard = "demo"
version = "1"
namespace = "urn:x"
[schema]
entry = "missing.xsd"
catalogs = ["nope.xml"]
[header]
message_id = "Kopf//id"
author = { path = "a", prefix = "x", prefix_path = "b" }
reader = { path = [] }
[[codelist]]
file = "codes.xml"
[fixtures]
valid = ["samples/*.xml"]
"#,
        );
        let err = Manifest::load(dir, &Roots::default()).unwrap_err();
        let text = err.to_string();
        for needle in [
            "name:",
            "schema.entry:",
            "schema.catalogs:",
            "header.message_id:",
            "header.author: give prefix or prefix_path",
            "header.reader.path: names no path",
            "codelist[0].file:",
            "fixtures.valid: folder",
        ] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
        write(dir, FILE, "name = \"x\"\nunknown = 1\n");
        assert!(Manifest::load(dir, &Roots::default()).is_err());
    }
}
