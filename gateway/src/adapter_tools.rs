//! Adapters from manifests: loading a node's registry, the offline pipeline behind `poststelle
//! validate`, and the developer tools `poststelle adapter new` and `adapter check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adapters::{Adapter, Header, Manifest, MessageType, Registry, Roots};

use crate::problem::{Code, Problem};
use crate::xml::prescan::{Limits, prescan};

/// Loads adapter directories into one registry, compiling each schema set and stylesheet once
/// on this thread, so that a broken adapter stops a node at start and not at its first message.
/// `builtin` ones are skipped when `dirs` holds an adapter of the same name. With
/// `with_fixtures` (the developer tools) the fixtures of `dirs` are resolved too. Returns the
/// manifests of `dirs`; reports every broken adapter at once.
pub fn load_registry(
    builtin: &[PathBuf],
    dirs: &[PathBuf],
    roots: &Roots,
    with_fixtures: bool,
) -> Result<(Registry, Vec<Manifest>), Vec<String>> {
    let mut registry = Registry::new();
    let mut problems = Vec::new();
    let mut manifests = Vec::new();
    for dir in dirs {
        let loaded = if with_fixtures {
            Manifest::load(dir, roots)
        } else {
            Manifest::load_adapter(dir, roots)
        };
        match loaded {
            Ok(m) => manifests.push(m),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let mut all = Vec::new();
    for dir in builtin {
        match Manifest::load_adapter(dir, roots) {
            Ok(m) if manifests.iter().any(|u| u.adapter.name == m.adapter.name) => {}
            Ok(m) => all.push(m),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let first_own = all.len();
    all.extend(manifests);
    // Two adapters that claim the same roots would shadow one another: the registry asks in
    // order, so the second would never see a message.
    for (i, a) in all.iter().enumerate() {
        for b in &all[..i] {
            let (a, b) = (&a.adapter, &b.adapter);
            if a.namespace == b.namespace
                && (a.roots.is_empty() || b.roots.is_empty() || a.roots.iter().any(|r| b.roots.contains(r)))
            {
                problems.push(format!(
                    "adapters {} and {} both claim root elements in namespace {}",
                    b.name,
                    a.name,
                    a.namespace.as_deref().unwrap_or("(none)")
                ));
            }
        }
    }
    let mut kept = Vec::new();
    for (i, m) in all.into_iter().enumerate() {
        if let Err(e) = compile(&m.adapter) {
            problems.push(format!("adapter {}: {e}", m.adapter.name));
            continue;
        }
        if let Err(e) = registry.register(Arc::new(m.adapter.clone())) {
            problems.push(e.to_string());
            continue;
        }
        if i >= first_own {
            kept.push(m);
        }
    }
    if problems.is_empty() {
        Ok((registry, kept))
    } else {
        Err(problems)
    }
}

fn compile(adapter: &dyn Adapter) -> Result<(), String> {
    crate::xml::validate::compile_on_this_thread(adapter.schema())?;
    let t = adapter.transforms();
    for sheet in [&t.inbound, &t.outbound].into_iter().flatten() {
        crate::xml::xslt::stylesheet(sheet)?;
    }
    Ok(())
}

/// What the offline pipeline found in a valid document.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The adapter that identified the document as given (for a legacy document: the legacy one).
    pub adapter: String,
    pub message_type: MessageType,
    pub header: Header,
    /// The standard message, when the document was a legacy one transformed on the way.
    pub transformed: Option<(String, Vec<u8>)>,
    /// Why intake would still refuse it although it is valid (header consistency).
    pub warning: Option<String>,
}

/// The intake pipeline, offline and on this thread: pre-scan, adapter, XSD, inbound transform
/// (then everything again on its result), code lists, header. With `lenient`, a header
/// consistency failure (type code vs. root) is returned as a warning instead of an error.
pub fn check_document(registry: &Registry, bytes: &[u8], lenient: bool) -> Result<Accepted, Problem> {
    let limits = Limits::default();
    let mut bytes = bytes.to_vec();
    let mut transformed: Option<(String, Vec<u8>)> = None;
    let mut first: Option<String> = None;
    loop {
        let scan = prescan(&bytes, &limits)?;
        let (adapter, message_type) = registry
            .identify(&scan.root)
            .ok_or_else(|| Problem::new(Code::UnknownMessageType, format!("no adapter handles {}", scan.root)))?;
        first.get_or_insert_with(|| adapter.name().to_owned());
        crate::xml::validate::validate_on_this_thread(adapter.schema(), &bytes).map_err(|f| f.into_problem())?;
        if let Some(sheet) = &adapter.transforms().inbound {
            if transformed.is_some() {
                return Err(Problem::new(
                    Code::TransformFailed,
                    format!("the transform produced another legacy document ({})", adapter.name()),
                ));
            }
            let out = crate::xml::xslt::transform(adapter.name(), sheet, &bytes)?;
            transformed = Some((adapter.name().to_owned(), out.clone()));
            bytes = out;
            continue;
        }
        // Code lists and header as at intake, but a consistency failure is a warning here:
        // the document is valid, and the conformance check reports what intake would say.
        crate::pipeline::validate::check_codes(adapter.as_ref(), &bytes)?;
        let header = adapter
            .extract_header(&bytes)
            .map_err(|e| Problem::new(Code::HeaderInvalid, e.to_string()))?;
        let warning = match adapter.check_header(&message_type, &header) {
            Ok(()) => None,
            Err(e) if lenient => Some(format!("intake would refuse it: header-invalid: {e}")),
            Err(e) => return Err(Problem::new(Code::HeaderInvalid, e.to_string())),
        };
        return Ok(Accepted {
            adapter: first.unwrap_or_default(),
            message_type,
            header,
            transformed,
            warning,
        });
    }
}

/// One line per error, as `poststelle validate` prints them: `file:LINE:COL: code: reason`.
pub fn problem_lines(name: &str, p: &Problem) -> Vec<String> {
    if p.errors.is_empty() {
        return vec![format!("{name}: {}: {}", p.code.as_str(), p.detail)];
    }
    p.errors
        .iter()
        .map(|e| {
            format!(
                "{name}:{}:{}: {}: {}",
                e.line.unwrap_or(0),
                e.column.unwrap_or(0),
                p.code.as_str(),
                e.message
            )
        })
        .collect()
}

/// The result of `adapter check` for one adapter.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub lines: Vec<String>,
    pub valid_passed: usize,
    pub valid_total: usize,
    pub invalid_passed: usize,
    pub invalid_total: usize,
    pub round_trips: usize,
    /// Valid fixtures that intake would still refuse (header consistency).
    pub refused: usize,
    pub failures: usize,
}

/// The conformance check of one adapter directory. The registry holds the adapter and every
/// adapter its transforms lead to (for a legacy format: the standard it maps to).
pub fn check_adapter(manifest: &Manifest, registry: &Registry) -> CheckReport {
    let mut r = CheckReport::default();
    let adapter = &manifest.adapter;
    r.lines.push(format!(
        "adapter {} ({} {}): schema {} compiles offline",
        adapter.name,
        adapter.standard,
        adapter.version,
        adapter.schema.entry.display()
    ));
    for file in &manifest.valid {
        check_valid(&mut r, registry, &adapter.name, file);
    }
    for file in &manifest.invalid {
        check_invalid(&mut r, registry, file);
    }
    if r.valid_total == 0 {
        r.failures += 1;
        r.lines
            .push("FAIL no valid fixture: the header mapping is never exercised".to_owned());
    }
    r.lines.push(format!(
        "{}: valid {}/{}{}, invalid {}/{}, round trips {}, {}",
        adapter.name,
        r.valid_passed,
        r.valid_total,
        if r.refused > 0 {
            format!(" ({} of them refused at intake: header type code)", r.refused)
        } else {
            String::new()
        },
        r.invalid_passed,
        r.invalid_total,
        r.round_trips,
        if r.failures == 0 {
            "PASS".to_owned()
        } else {
            format!("FAIL ({} failures)", r.failures)
        }
    ));
    r
}

/// One valid fixture: it must pass every check, be identified by this adapter, and (a legacy
/// format with an outbound transform) survive the round trip.
fn check_valid(r: &mut CheckReport, registry: &Registry, adapter_name: &str, file: &Path) {
    r.valid_total += 1;
    let name = display(file);
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            r.failures += 1;
            r.lines.push(format!("FAIL {name}: cannot read: {e}"));
            return;
        }
    };
    match check_document(registry, &bytes, true) {
        Ok(a) if a.adapter != adapter_name => {
            r.failures += 1;
            r.lines.push(format!(
                "FAIL {name}: identified by adapter {}, not by {} (shadowed)",
                a.adapter, adapter_name
            ));
        }
        Ok(a) => {
            let h = &a.header;
            r.valid_passed += 1;
            r.lines.push(format!(
                "ok   {name}: valid ({}); id {}, type code {}, author {}, reader {}",
                a.message_type,
                h.message_uuid,
                h.type_code.as_deref().unwrap_or("-"),
                h.author,
                h.reader
            ));
            if let Some(w) = a.warning {
                r.refused += 1;
                r.lines.push(format!("     warning: {w}"));
            }
            if let Some((legacy, standard)) = &a.transformed
                && registry.get(legacy).is_some_and(|l| l.transforms().outbound.is_some())
            {
                match round_trip(registry, legacy, &bytes, standard) {
                    Ok(()) => {
                        r.round_trips += 1;
                        r.lines
                            .push(format!("ok   {name}: round trip through {}", a.message_type));
                    }
                    Err(e) => {
                        r.failures += 1;
                        r.lines.push(format!("FAIL {name}: round trip: {e}"));
                    }
                }
            }
        }
        Err(p) => {
            r.failures += 1;
            r.lines.push(format!("FAIL {name}: expected valid, got:"));
            r.lines
                .extend(problem_lines(&name, &p).into_iter().map(|l| format!("     {l}")));
        }
    }
}

/// One invalid fixture: it must be refused with the code its sidecar names (and the text, if
/// the sidecar gives one).
fn check_invalid(r: &mut CheckReport, registry: &Registry, file: &Path) {
    r.invalid_total += 1;
    let name = display(file);
    let sidecar = file.with_extension("expected");
    let expected = match std::fs::read_to_string(&sidecar) {
        Ok(t) => t,
        Err(_) => {
            r.failures += 1;
            r.lines.push(format!(
                "FAIL {name}: no sidecar {} naming the expected error",
                display(&sidecar)
            ));
            return;
        }
    };
    let mut lines = expected.lines().map(str::trim);
    let code = lines.next().unwrap_or("");
    let needle = lines.next().filter(|l| !l.is_empty());
    let outcome = std::fs::read(file)
        .map_err(|e| Problem::new(Code::NotFound, format!("cannot read: {e}")))
        .and_then(|b| check_document(registry, &b, false));
    match outcome {
        Ok(a) => {
            r.failures += 1;
            r.lines.push(format!(
                "FAIL {name}: expected {code}, but it is valid ({})",
                a.message_type
            ));
        }
        Err(p) => {
            let text = format!(
                "{} {}",
                p.detail,
                p.errors
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if p.code.as_str() != code {
                r.failures += 1;
                r.lines.push(format!(
                    "FAIL {name}: expected {code}, got {}: {}",
                    p.code.as_str(),
                    p.detail
                ));
            } else if let Some(n) = needle
                && !text.contains(n)
            {
                r.failures += 1;
                r.lines.push(format!(
                    "FAIL {name}: {code} as expected, but without {n:?}: {}",
                    p.detail
                ));
            } else {
                r.invalid_passed += 1;
                r.lines.push(format!("ok   {name}: {code} as expected ({})", p.detail));
            }
        }
    }
}

/// legacy → standard → legacy must give back the original document (compared canonically).
fn round_trip(registry: &Registry, legacy: &str, original: &[u8], standard: &[u8]) -> Result<(), String> {
    let adapter = registry.get(legacy).ok_or("adapter vanished")?;
    let outbound = adapter.transforms().outbound.clone().ok_or("no outbound transform")?;
    let back = crate::xml::xslt::transform(legacy, &outbound, standard).map_err(|p| p.detail)?;
    crate::xml::validate::validate_on_this_thread(adapter.schema(), &back)
        .map_err(|f| format!("the outbound result is not valid: {}", f.into_problem().detail))?;
    let (a, b) = (canonical(original)?, canonical(&back)?);
    if a == b {
        Ok(())
    } else {
        Err("the outbound transform does not give back the original document".into())
    }
}

/// Inclusive C14N of a whole document, with whitespace-only text dropped, for comparisons.
fn canonical(xml: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_owned())?;
    let options = libxml::parser::ParserOptions {
        no_blanks: true,
        ..crate::xml::parser_options()
    };
    let doc = libxml::parser::Parser::default()
        .parse_string_with_options(text, options)
        .map_err(|e| e.to_string())?;
    crate::xml::libxml::c14n(&crate::xml::libxml::C14nInput {
        doc: &doc,
        apex: None,
        exclude: None,
        exclusive: false,
        inclusive_prefixes: &[],
    })
    .map_err(|e| format!("{e:?}"))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Why `adapter new` wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("adapter name {0:?} must be letters, digits, '.', '-' or '_'")]
    Name(String),
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Writes a new adapter directory `parent/name` with a commented manifest, an empty schema
/// folder and fixture folders.
pub fn scaffold(parent: &Path, name: &str) -> Result<PathBuf, ScaffoldError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(ScaffoldError::Name(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let (standard, version) = match name.rsplit_once('-') {
        Some((s, v)) if v.bytes().next().is_some_and(|b| b.is_ascii_digit()) => (s, v),
        _ => (name, "1.0"),
    };
    for sub in ["schema", "fixtures/valid", "fixtures/invalid"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    std::fs::write(dir.join(adapters::manifest::FILE), template(name, standard, version))?;
    std::fs::write(
        dir.join("fixtures/invalid/README.txt"),
        "Each NAME.xml here must fail. NAME.expected names the error: the code on its first line\n\
         (schema-invalid, header-invalid, not-well-formed, unknown-message-type, ...), and\n\
         optionally a text the error message must contain on its second line.\n",
    )?;
    Ok(dir)
}

fn template(name: &str, standard: &str, version: &str) -> String {
    format!(
        r#"# Adapter manifest: everything Poststelle needs to know about one standard in one version.
# Check it with: poststelle adapter check {name} [--xoev-root DIR]
# Paths are relative to this folder, or start with {{xoev}}/ (the official schemas folder given
# by [adapters] xoev_root or --xoev-root) or {{schemas}}/ (the project's own schemas).

name = "{name}"            # unique; used in config, logs and metrics
standard = "{standard}"
version = "{version}"
# The namespace of the messages' root elements ("" for documents in no namespace).
namespace = "urn:example:{standard}:{version}"
# Root element names that are messages of this adapter; `*` matches any run of characters.
# Leave empty to accept every root element in the namespace.
roots = []

[schema]
# The schema that declares the messages (put the official XSDs into schema/, or use {{xoev}}/).
entry = "schema/{standard}.xsd"
# OASIS XML catalogs mapping remote schemaLocations to local files (nothing is ever fetched).
catalogs = []

# Where the routing header lives: paths of element names below the root element (namespace
# prefixes are ignored, so qualified and unqualified headers read alike).
[header]
# The message UUID. Several paths: the id is derived from all of them (for headers without a
# per-message id); "{{root}}" stands for the root element's name.
message_id = "nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID"
# Optional: the message type code, which must equal the root element name's trailing digits.
type_code = "nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code"
# Author and reader authorities, as DVDV prefix:kennung. `path` may list alternatives (the first
# present wins). If the value has no prefix of its own, give `prefix = "psw"` or
# `prefix_path = "path/to/praefix/code"`.
author = {{ path = "nachrichtenkopf.g2g/autor/kennung" }}
reader = {{ path = "nachrichtenkopf.g2g/leser/kennung" }}

# Optional code lists (genericode). A code outside the list, or a listVersionID naming another
# version, is reported like a schema error. Without `elements`, the list governs every element
# whose listURI attribute is the list's canonical URI.
# [[codelist]]
# file = "codes/example_1.0.xml"
# elements = ["nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp"]

# Optional XSLT 1.0 stylesheets for a legacy format: inbound maps it to a standard message on
# intake, outbound maps the standard back for clients configured with deliver_as = "{name}".
# A legacy format needs no [header]: the header is read from the standard message.
# [transform]
# inbound = "xslt/to-standard.xsl"
# outbound = "xslt/from-standard.xsl"

# Fixtures the check runs (these are the defaults).
[fixtures]
valid = ["fixtures/valid/*.xml"]
invalid = ["fixtures/invalid/*.xml"]
"#
    )
}
