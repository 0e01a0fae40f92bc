//! XBeteiligung 1.2 against the official schemas and the six public sample messages.
//!
//! The schemas and samples live outside the repository in `../shared/xoev/xbeteiligung-1.2`
//! (see `../shared/xoev/SOURCES.md`, section 1). They are read in place; every mutated message
//! exists only in memory.

use std::path::{Path, PathBuf};

use adapters::{Adapter, HeaderError, PathAdapter, RootName};
use gateway::problem::Diagnostic;
use gateway::xml::prescan::{Limits, prescan};
use gateway::xml::validate::{Failure, validate_on_this_thread};

const NAMESPACE: &str = "https://www.xleitstelle.de/xbeteiligung/12";

const COCKPIT: &str = "example402FromCockpit.xml";
const NO_BETEILIGUNGS_ID: &str = "example402NoBeteiligungsId.xml";
const TOEB_ONLY: &str = "example402ToebOnlyBeteiligungsId.xml";
const INIT: &str = "xmlv14/xbeteiligung-test-kommunal.Initiieren.0401.xml";
const INIT_GWID: &str = "xmlv14/xbeteiligung-test-kommunal.Initiieren.0401.gwid-format.xml";
const INIT_PIPE: &str = "xmlv14/xbeteiligung-test-kommunal.Initiieren.0401.pipe-format.xml";

fn xbeteiligung_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/xoev/xbeteiligung-1.2")
}

fn samples_dir() -> PathBuf {
    xbeteiligung_dir().join("tests/res")
}

/// The shipped manifest `manifests/xbeteiligung-1.2`, with `{xoev}` = `../shared/xoev`.
fn adapter() -> PathAdapter {
    let roots = adapters::Roots {
        xoev: Some(crate::harness::shared().join("xoev")),
        schemas: None,
    };
    adapters::Manifest::load_adapter(&crate::harness::repo().join("manifests/xbeteiligung-1.2"), &roots)
        .unwrap()
        .adapter
}

fn sample(name: &str) -> String {
    let path = samples_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read sample {}: {e}", path.display()))
}

/// Every `*.xml` directly in `tests/res` and in `tests/res/xmlv14`, as names relative to `tests/res`.
fn discovered_samples() -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["", "xmlv14"] {
        let dir = samples_dir().join(sub);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() && path.extension().is_some_and(|x| x == "xml") {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                found.push(if sub.is_empty() { file } else { format!("{sub}/{file}") });
            }
        }
    }
    found.sort();
    found
}

/// What each sample must yield. The three `0402` samples carry the header type code `0401`
/// (copied from an initiation message), so the adapter's consistency check must refuse them.
struct Expected {
    file: &'static str,
    root: &'static str,
    uuid: &'static str,
    type_code: &'static str,
    consistent: bool,
}

const EXPECTED: &[Expected] = &[
    Expected {
        file: COCKPIT,
        root: "kommunal.Aktualisieren.0402",
        uuid: "f4d3b213-1ce1-4ec5-a7b1-763ca250dcf1",
        type_code: "0401",
        consistent: false,
    },
    Expected {
        file: NO_BETEILIGUNGS_ID,
        root: "kommunal.Aktualisieren.0402",
        uuid: "f4d3b213-1ce1-4ec5-a7b1-763ca250dcf1",
        type_code: "0401",
        consistent: false,
    },
    Expected {
        file: TOEB_ONLY,
        root: "kommunal.Aktualisieren.0402",
        uuid: "f4d3b213-1ce1-4ec5-a7b1-763ca250dcf1",
        type_code: "0401",
        consistent: false,
    },
    Expected {
        file: INIT,
        root: "kommunal.Initiieren.0401",
        uuid: "60f6667b-fa45-4bd7-b717-f4d6c65e5edb",
        type_code: "0401",
        consistent: true,
    },
    Expected {
        file: INIT_GWID,
        root: "kommunal.Initiieren.0401",
        uuid: "60f6667b-fa45-4bd7-b717-f4d6c65e5edb",
        type_code: "0401",
        consistent: true,
    },
    Expected {
        file: INIT_PIPE,
        root: "kommunal.Initiieren.0401",
        uuid: "60f6667b-fa45-4bd7-b717-f4d6c65e5edb",
        type_code: "0401",
        consistent: true,
    },
];

#[test]
fn all_six_samples_validate_and_yield_headers() {
    let adapter = adapter();
    let files = discovered_samples();
    assert_eq!(
        files.len(),
        6,
        "expected exactly 6 XBeteiligung samples in {}, found {files:?}",
        samples_dir().display()
    );
    let mut known: Vec<&str> = EXPECTED.iter().map(|e| e.file).collect();
    known.sort();
    assert_eq!(files, known, "the sample files are not the six listed in SOURCES.md");

    let mut checked = 0;
    for exp in EXPECTED {
        let xml = sample(exp.file);
        let scan = prescan(xml.as_bytes(), &Limits::default())
            .unwrap_or_else(|p| panic!("{}: prescan refused the sample: {p:?}", exp.file));
        assert_eq!(
            scan.root.namespace.as_deref(),
            Some(NAMESPACE),
            "{}: root namespace",
            exp.file
        );
        assert_eq!(scan.root.local, exp.root, "{}: root element", exp.file);

        let message_type = adapter
            .identify(&scan.root)
            .unwrap_or_else(|| panic!("{}: adapter does not identify root {}", exp.file, scan.root));
        assert_eq!(
            message_type.to_string(),
            format!("xbeteiligung/1.2 {}", exp.root),
            "{}: message type",
            exp.file
        );

        if let Err(f) = validate_on_this_thread(adapter.schema(), xml.as_bytes()) {
            panic!("{}: the official sample does not validate: {f:?}", exp.file);
        }

        let header = adapter
            .extract_header(xml.as_bytes())
            .unwrap_or_else(|e| panic!("{}: header not extracted: {e}", exp.file));
        assert_eq!(header.message_uuid, exp.uuid, "{}: nachrichtenUUID", exp.file);
        assert_eq!(
            header.type_code.as_deref(),
            Some(exp.type_code),
            "{}: type code",
            exp.file
        );
        assert_eq!(header.author, "xyz:0001", "{}: author", exp.file);
        assert_eq!(header.reader, "xyz:0002", "{}: reader", exp.file);
        assert!(
            !header.message_uuid.is_empty() && !header.author.is_empty() && !header.reader.is_empty(),
            "{}: empty header field in {header:?}",
            exp.file
        );

        let check = adapter.check_header(&message_type, &header);
        if exp.consistent {
            assert_eq!(check, Ok(()), "{}: check_header", exp.file);
        } else {
            assert!(
                matches!(&check, Err(HeaderError::Inconsistent(m)) if m.contains(exp.root)),
                "{}: header code {} on root {} must be refused as inconsistent, got {check:?}",
                exp.file,
                exp.type_code,
                exp.root
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `Failure::SchemaInvalid`
    Invalid,
    /// `Failure::NotWellFormed`
    Malformed,
}

use Kind::{Invalid, Malformed};

/// (name, sample, from, to, expected failure). `from` is replaced once (its first occurrence).
type Mutation = (&'static str, &'static str, &'static str, &'static str, Kind);

const UUID_ELEMENT: &str = "<ns2:nachrichtenUUID>60f6667b-fa45-4bd7-b717-f4d6c65e5edb</ns2:nachrichtenUUID>";
const VERZEICHNISDIENST_NS3: &str =
    r#"<ns3:verzeichnisdienst listURI="urn:xoev-de:kosit:codeliste:verzeichnisdienst" listVersionID="3">"#;
const PLANART_NS5: &str =
    r#"<ns5:planartKommunal listURI="urn:xoev-de:xleitstelle:codeliste:planartkommunal" listVersionID="1">"#;

const MUTATIONS: &[Mutation] = &[
    // --- g2g header --------------------------------------------------------------------------
    (
        "header: required nachrichtenUUID removed",
        COCKPIT,
        "<bn-g2g:nachrichtenUUID>f4d3b213-1ce1-4ec5-a7b1-763ca250dcf1</bn-g2g:nachrichtenUUID>",
        "",
        Invalid,
    ),
    (
        "header: nachrichtenUUID duplicated",
        INIT,
        UUID_ELEMENT,
        "<ns2:nachrichtenUUID>60f6667b-fa45-4bd7-b717-f4d6c65e5edb</ns2:nachrichtenUUID>\
         <ns2:nachrichtenUUID>60f6667b-fa45-4bd7-b717-f4d6c65e5edb</ns2:nachrichtenUUID>",
        Invalid,
    ),
    (
        "header: nachrichtenUUID is not a UUID",
        INIT,
        "60f6667b-fa45-4bd7-b717-f4d6c65e5edb",
        "60f6667b-fa45-4bd7-b717-f4d6c65e5edZ",
        Invalid,
    ),
    (
        "header: nachrichtenUUID empty (pattern)",
        INIT_GWID,
        ">60f6667b-fa45-4bd7-b717-f4d6c65e5edb<",
        "><",
        Invalid,
    ),
    (
        "header: nachrichtenUUID in the content namespace",
        INIT,
        UUID_ELEMENT,
        "<ns5:nachrichtenUUID>60f6667b-fa45-4bd7-b717-f4d6c65e5edb</ns5:nachrichtenUUID>",
        Invalid,
    ),
    (
        "header: erstellungszeitpunkt not an xs:dateTime",
        INIT,
        "2025-02-20T16:41:19.880Z",
        "20.02.2025 16:41:19",
        Invalid,
    ),
    (
        "header: erstellungszeitpunkt without time of day",
        COCKPIT,
        "<bn-g2g:erstellungszeitpunkt>2024-05-24T11:27:50.141+02:00</bn-g2g:erstellungszeitpunkt>",
        "<bn-g2g:erstellungszeitpunkt>2024-05-24</bn-g2g:erstellungszeitpunkt>",
        Invalid,
    ),
    (
        "header: required erstellungszeitpunkt removed",
        INIT_PIPE,
        "<ns2:erstellungszeitpunkt>2025-02-20T16:41:19.880Z</ns2:erstellungszeitpunkt>",
        "",
        Invalid,
    ),
    (
        "header: nachrichtentyp without required code",
        INIT,
        "<code>0401</code>",
        "",
        Invalid,
    ),
    (
        "header: unknown element after identifikation.nachricht",
        COCKPIT,
        "</bn-g2g:identifikation.nachricht>",
        "</bn-g2g:identifikation.nachricht><bn-g2g:prioritaet>hoch</bn-g2g:prioritaet>",
        Invalid,
    ),
    (
        "header: text in element-only identifikation.nachricht",
        COCKPIT,
        "<bn-g2g:identifikation.nachricht>",
        "<bn-g2g:identifikation.nachricht>Freitext",
        Invalid,
    ),
    (
        "header: attribute not allowed on nachrichtenkopf.g2g",
        COCKPIT,
        "<bn-g2g:nachrichtenkopf.g2g>",
        r#"<bn-g2g:nachrichtenkopf.g2g prioritaet="hoch">"#,
        Invalid,
    ),
    (
        "header: required listVersionID removed from verzeichnisdienst",
        INIT_GWID,
        VERZEICHNISDIENST_NS3,
        r#"<ns3:verzeichnisdienst listURI="urn:xoev-de:kosit:codeliste:verzeichnisdienst">"#,
        Invalid,
    ),
    (
        "header: verzeichnisdienst listURI differs from its fixed value",
        COCKPIT,
        r#"listURI="urn:xoev-de:kosit:codeliste:verzeichnisdienst""#,
        r#"listURI="urn:xoev-de:kosit:codeliste:verzeichnisdienst-2""#,
        Invalid,
    ),
    (
        "header: verzeichnisdienst code with a name the restriction forbids",
        COCKPIT,
        "<code>DVDV</code>",
        "<code>DVDV</code><name>DVDV</name>",
        Invalid,
    ),
    (
        "header: leser kennung outside DIN 91379 datatype C (Cyrillic)",
        INIT,
        "<ns3:kennung>xyz:0002</ns3:kennung>",
        "<ns3:kennung>xyz:\u{416}002</ns3:kennung>",
        Invalid,
    ),
    (
        "header: erreichbarkeit without required kennung",
        INIT,
        "<ns4:kennung>+49 30 123456</ns4:kennung>",
        "",
        Invalid,
    ),
    // --- root element ------------------------------------------------------------------------
    (
        "root: required attribute produkthersteller removed",
        COCKPIT,
        r#" produkthersteller="]init[ AG""#,
        "",
        Invalid,
    ),
    (
        "root: namespace of a version the schema does not declare",
        INIT,
        r#"xmlns:ns5="https://www.xleitstelle.de/xbeteiligung/12""#,
        r#"xmlns:ns5="https://www.xleitstelle.de/xbeteiligung/13""#,
        Invalid,
    ),
    // --- message content ---------------------------------------------------------------------
    (
        "content: required vorgangsID removed",
        INIT_GWID,
        "<ns5:vorgangsID>ID_3d4d41e8-0088-451e-bf88-2aaeb3eb45c9</ns5:vorgangsID>",
        "",
        Invalid,
    ),
    (
        "content: unknown element after vorgangsID",
        INIT,
        "</ns5:vorgangsID>",
        "</ns5:vorgangsID><ns5:bemerkung>eilig</ns5:bemerkung>",
        Invalid,
    ),
    (
        "content: required planID removed",
        INIT,
        "<ns5:planID>ID_0f8d6117-043f-4b83-941b-e219390e7c68</ns5:planID>",
        "",
        Invalid,
    ),
    (
        "content: planname duplicated",
        INIT,
        "<ns5:planname>TestAdrian33</ns5:planname>",
        "<ns5:planname>TestAdrian33</ns5:planname><ns5:planname>TestAdrian34</ns5:planname>",
        Invalid,
    ),
    (
        "content: verfahrensartKommunal code outside its enumeration",
        INIT,
        "</ns5:verfahrensschrittKommunal>",
        "</ns5:verfahrensschrittKommunal><ns5:verfahrensartKommunal><code>9999</code></ns5:verfahrensartKommunal>",
        Invalid,
    ),
    (
        "content: verfahrensartKommunal listVersionID differs from its fixed 1.0",
        INIT,
        "</ns5:verfahrensschrittKommunal>",
        r#"</ns5:verfahrensschrittKommunal><ns5:verfahrensartKommunal listVersionID="2.0"><code>1000</code></ns5:verfahrensartKommunal>"#,
        Invalid,
    ),
    (
        "content: required listVersionID removed from planartKommunal",
        INIT,
        PLANART_NS5,
        r#"<ns5:planartKommunal listURI="urn:xoev-de:xleitstelle:codeliste:planartkommunal">"#,
        Invalid,
    ),
    (
        "content: durchgang 0 is not an xs:positiveInteger",
        COCKPIT,
        "<xbeteiligung:durchgang>1</xbeteiligung:durchgang>",
        "<xbeteiligung:durchgang>0</xbeteiligung:durchgang>",
        Invalid,
    ),
    (
        "content: bekanntmachung (Tagesdatum) with a time zone",
        COCKPIT,
        "<xbeteiligung:bekanntmachung>2024-05-24</xbeteiligung:bekanntmachung>",
        "<xbeteiligung:bekanntmachung>2024-05-24+02:00</xbeteiligung:bekanntmachung>",
        Invalid,
    ),
    (
        "content: zeitraum beginn not an xs:date",
        NO_BETEILIGUNGS_ID,
        "<xbeteiligung:beginn>2024-05-24+02:00</xbeteiligung:beginn>",
        "<xbeteiligung:beginn>24.05.2024</xbeteiligung:beginn>",
        Invalid,
    ),
    (
        "content: anhang filesize negative",
        TOEB_ONLY,
        r#"filesize="3908""#,
        r#"filesize="-3908""#,
        Invalid,
    ),
    (
        "content: required listURI removed from mimeType",
        COCKPIT,
        r#"<mimeType listURI="urn:xoev-de:xbeteiligung:codeliste:xbau-mime" listVersionID="1">"#,
        r#"<mimeType listVersionID="1">"#,
        Invalid,
    ),
    (
        "content: anhangOderVerlinkung with both choices",
        COCKPIT,
        "</xbeteiligung:anhang>",
        "</xbeteiligung:anhang><xbeteiligung:uriVerlinkung>https://example.org/a.pdf</xbeteiligung:uriVerlinkung>",
        Invalid,
    ),
    (
        "content: unqualified local element versionsnummer qualified",
        COCKPIT,
        "<versionsnummer>1.0</versionsnummer>",
        "<xbeteiligung:versionsnummer>1.0</xbeteiligung:versionsnummer>",
        Invalid,
    ),
    (
        "content: veranlasser name without required inner name",
        INIT_PIPE,
        "<name>de-a1b2c3d4e5f6a7b8c9d0e1|Stadtplanung</name>",
        "",
        Invalid,
    ),
    (
        "content: veranlasser name with a DEL character (DIN 91379)",
        INIT_GWID,
        "de-a1b2c3d4e5f6a7b8c9d0e1",
        "de-a1b2c3d4e5f6&#x7F;a7b8c9d0e1",
        Invalid,
    ),
    // --- not well-formed ---------------------------------------------------------------------
    (
        "xml: broken end tag",
        INIT,
        "</ns2:nachrichtenUUID>",
        "</ns2:nachrichtenUUI>",
        Malformed,
    ),
    (
        "xml: unescaped ampersand",
        COCKPIT,
        "<bn-beh:name>behoerde2</bn-beh:name>",
        "<bn-beh:name>Bau & Planung</bn-beh:name>",
        Malformed,
    ),
    (
        "xml: duplicate attribute",
        INIT_GWID,
        r#"listVersionID="1.2""#,
        r#"listVersionID="1.2" listVersionID="1.3""#,
        Malformed,
    ),
    (
        "xml: truncated document",
        INIT_PIPE,
        "</ns5:kommunal.Initiieren.0401>",
        "",
        Malformed,
    ),
];

/// Near misses of some mutations that must still validate, so that each of those mutations fails
/// for the reason its name gives and not because the edit itself is broken.
const CONTROLS: &[(&str, &str, &str, &str)] = &[
    (
        "verfahrensartKommunal with an enumerated code and the fixed listVersionID",
        INIT,
        "</ns5:verfahrensschrittKommunal>",
        r#"</ns5:verfahrensschrittKommunal><ns5:verfahrensartKommunal listVersionID="1.0"><code>1000</code></ns5:verfahrensartKommunal>"#,
    ),
    (
        "durchgang 2",
        COCKPIT,
        "<xbeteiligung:durchgang>1</xbeteiligung:durchgang>",
        "<xbeteiligung:durchgang>2</xbeteiligung:durchgang>",
    ),
    (
        "erstellungszeitpunkt without fractional seconds",
        INIT,
        "2025-02-20T16:41:19.880Z",
        "2025-02-20T16:41:19Z",
    ),
    (
        "leser kennung with a Latin umlaut",
        INIT,
        "<ns3:kennung>xyz:0002</ns3:kennung>",
        "<ns3:kennung>xyz:\u{c4}002</ns3:kennung>",
    ),
    (
        "verzeichnisdienst without the optional listURI",
        INIT_GWID,
        VERZEICHNISDIENST_NS3,
        r#"<ns3:verzeichnisdienst listVersionID="3">"#,
    ),
];

/// The result of replacing the first occurrence of `from` by `to`.
struct Edited {
    xml: String,
    /// 1-based line on which the replacement starts.
    first: u32,
    /// 1-based line on which the replacement ends.
    last: u32,
    /// Byte offset just after the replacement.
    end: usize,
}

/// Applies `from` → `to` once; `None` if `from` does not occur.
fn mutate(text: &str, from: &str, to: &str) -> Option<Edited> {
    let at = text.find(from)?;
    let first = line_at(text, at);
    let last = first + to.matches('\n').count() as u32;
    let mut xml = String::with_capacity(text.len() + to.len());
    xml.push_str(&text[..at]);
    xml.push_str(to);
    xml.push_str(&text[at + from.len()..]);
    Some(Edited {
        xml,
        first,
        last,
        end: at + to.len(),
    })
}

/// The 1-based line of byte offset `pos`.
fn line_at(text: &str, pos: usize) -> u32 {
    text[..pos].matches('\n').count() as u32 + 1
}

fn line_count(text: &str) -> u32 {
    text.lines().count() as u32
}

/// The line on which the first start tag that ends at or after `pos` ends (the tag `pos` is in,
/// or else the next one). libxml2 numbers an element by the line its start tag ends on.
fn next_start_tag_end_line(text: &str, pos: usize) -> u32 {
    let mut i = match text[..pos].rfind('<') {
        Some(lt) if !text[lt..pos].contains('>') => lt,
        _ => pos,
    };
    while let Some(lt) = text[i..].find('<').map(|o| i + o) {
        let gt = text[lt..].find('>').map_or(text.len(), |o| lt + o);
        if !matches!(text[lt + 1..].chars().next(), Some('/' | '!' | '?')) {
            return line_at(text, gt);
        }
        i = gt;
    }
    line_count(text)
}

/// Checks one mutation; `Err` says what went wrong.
fn check_mutation(adapter: &PathAdapter, m: &Mutation) -> Result<(), String> {
    let (_, file, from, to, kind) = *m;
    let original = sample(file);
    let Edited { xml, first, last, end } =
        mutate(&original, from, to).ok_or_else(|| format!("`{from}` does not occur in {file}"))?;
    if xml == original {
        return Err("the mutation changes nothing".into());
    }
    let lines = line_count(&xml);
    let diagnostics: Vec<Diagnostic> = match (kind, validate_on_this_thread(adapter.schema(), xml.as_bytes())) {
        (Invalid, Err(Failure::SchemaInvalid(d))) | (Malformed, Err(Failure::NotWellFormed(d))) => d,
        (_, other) => return Err(format!("expected {kind:?}, got {other:?}")),
    };
    let diag = diagnostics
        .first()
        .ok_or_else(|| format!("{kind:?} without any diagnostic"))?;
    let line = diag
        .line
        .ok_or_else(|| format!("first diagnostic has no line number: {diag:?}"))?;
    if line < 1 {
        return Err(format!("line 0 in {diag:?}"));
    }
    match kind {
        // The unmutated sample is valid, and libxml2 reports the first error of a walk in
        // document order: on the edited lines, at an enclosing element that starts earlier, or
        // (for a removed element) at the next element, where the missing one was expected.
        Invalid => {
            let bound = last.max(next_start_tag_end_line(&xml, end)).min(lines);
            if line > bound {
                return Err(format!(
                    "schema error reported on line {line}, after the edit (lines {first}-{last}, \
                     next element ends on line {bound}, {lines} lines): {diag:?}"
                ));
            }
            Ok(())
        }
        // The text before the edit is well-formed, so the parser cannot fail before it.
        Malformed if line < first || line > lines + 1 => Err(format!(
            "well-formedness error reported on line {line}, before the edit (lines {first}-{last} of {lines}): {diag:?}"
        )),
        Malformed => Ok(()),
    }
}

#[test]
fn mutations_are_rejected_with_line_numbers() {
    assert!(MUTATIONS.len() >= 20, "only {} mutations", MUTATIONS.len());
    assert!(MUTATIONS.iter().filter(|m| m.4 == Malformed).count() >= 2);
    let adapter = adapter();

    // Every sample used must be valid as published, so that each failure below is the mutation's.
    let mut used: Vec<&str> = MUTATIONS
        .iter()
        .map(|m| m.1)
        .chain(CONTROLS.iter().map(|c| c.1))
        .collect();
    used.sort();
    used.dedup();
    for file in used {
        if let Err(f) = validate_on_this_thread(adapter.schema(), sample(file).as_bytes()) {
            panic!("unmutated sample {file} does not validate: {f:?}");
        }
    }

    let mut failures = Vec::new();
    for (name, file, from, to) in CONTROLS {
        let result = mutate(&sample(file), from, to)
            .ok_or_else(|| format!("`{from}` does not occur in {file}"))
            .and_then(|e| validate_on_this_thread(adapter.schema(), e.xml.as_bytes()).map_err(|f| format!("{f:?}")));
        if let Err(e) = result {
            failures.push(format!("control `{name}` must stay valid: {e}"));
        }
    }
    for m in MUTATIONS {
        if let Err(e) = check_mutation(&adapter, m) {
            failures.push(format!("mutation `{}` ({}): {e}", m.0, m.1));
        }
    }
    assert!(
        failures.is_empty(),
        "{} row(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn adapter_ignores_foreign_roots() {
    let adapter = adapter();
    let root = |ns: Option<&str>, local: &str| RootName {
        namespace: ns.map(str::to_owned),
        local: local.to_owned(),
    };
    // The control: the right namespace is ours.
    assert!(
        adapter
            .identify(&root(Some(NAMESPACE), "kommunal.Initiieren.0401"))
            .is_some()
    );

    for foreign in [
        root(Some("urn:poststelle:demo:xumzug:1.0"), "kommunal.Initiieren.0401"),
        root(
            Some("https://www.xleitstelle.de/xbeteiligung/11"),
            "kommunal.Initiieren.0401",
        ),
        root(
            Some("http://www.xleitstelle.de/xbeteiligung/12"),
            "kommunal.Initiieren.0401",
        ),
        root(
            Some("http://xoev.de/schemata/basisnachricht/g2g/1_1"),
            "nachrichtenkopf.g2g",
        ),
        root(None, "kommunal.Initiieren.0401"),
    ] {
        assert_eq!(adapter.identify(&foreign), None, "{foreign} must not be identified");
    }

    // The same through the pre-scan, as the intake pipeline does it.
    let xml = sample(INIT).replace(NAMESPACE, "https://www.xleitstelle.de/xbeteiligung/13");
    let scan = prescan(xml.as_bytes(), &Limits::default()).expect("prescan of a foreign-namespace message");
    assert_eq!(scan.root.local, "kommunal.Initiieren.0401");
    assert_eq!(adapter.identify(&scan.root), None);
}
