//! Adapters: everything Poststelle knows about one family of XÖV message types.
//!
//! An adapter identifies a message by its root element, names the schema files that validate it
//! and extracts the header fields the gateway routes by (message UUID, type code, author, reader).
//! This crate is pure on purpose: it lists no I/O runtime (tokio, axum, lapin, reqwest) and does
//! no validation itself — the gateway compiles the named schemas with libxml2 on its own threads.
//! It knows nothing about HTTP, stores, partners or cryptography.

mod codelist;
mod header;
pub mod manifest;
mod registry;

pub use codelist::{CodeList, CodeListBinding, CodeListError};
pub use header::{HeaderError, HeaderPaths, Party, Prefix, extract_header, find_paths, is_authority};
pub use manifest::{Manifest, ManifestError, Roots};
pub use registry::{Registry, RegistryError};

use std::fmt;
use std::path::PathBuf;

/// A qualified XML element name as found on a document's root element.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RootName {
    /// Namespace URI, `None` for elements in no namespace.
    pub namespace: Option<String>,
    pub local: String,
}

impl fmt::Display for RootName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{{{ns}}}{}", self.local),
            None => f.write_str(&self.local),
        }
    }
}

/// A message type: standard, version and root element, e.g. `xbeteiligung/1.2 kommunal.Initiieren.0401`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageType {
    pub standard: String,
    pub version: String,
    /// The root element's local name, which in XÖV names the message.
    pub name: String,
}

impl MessageType {
    /// Parses the display form `standard/version name`.
    pub fn parse(s: &str) -> Option<Self> {
        let (sv, name) = s.split_once(' ')?;
        let (standard, version) = sv.split_once('/')?;
        if standard.is_empty() || version.is_empty() || name.is_empty() || name.contains(' ') {
            return None;
        }
        Some(Self {
            standard: standard.to_owned(),
            version: version.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The trailing numeric code of an XÖV message name (`kommunal.Initiieren.0401` → `0401`).
    pub fn code(&self) -> Option<&str> {
        let last = self.name.rsplit('.').next()?;
        (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())).then_some(last)
    }

    /// Whether a permission pattern covers this type: `*`, `standard/*`, `standard/version *`,
    /// or the exact display form.
    pub fn matches(&self, pattern: &str) -> bool {
        let pattern = pattern.trim();
        if pattern == "*" {
            return true;
        }
        if let Some(standard) = pattern.strip_suffix("/*") {
            return standard == self.standard;
        }
        if let Some(sv) = pattern.strip_suffix(" *") {
            return sv == format!("{}/{}", self.standard, self.version);
        }
        pattern == self.to_string()
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.standard, self.version, self.name)
    }
}

/// The header fields every message must carry for the gateway to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The XÖV message UUID (`nachrichtenUUID`), lower-cased.
    pub message_uuid: String,
    /// The message type code from the header (`nachrichtentyp/code`), when the standard has one.
    pub type_code: Option<String>,
    /// Author authority, DVDV-style `prefix:kennung`.
    pub author: String,
    /// Reader (recipient) authority, DVDV-style `prefix:kennung`.
    pub reader: String,
}

/// Files that make up one schema set. Compiled from file paths (never from buffers), so that
/// relative imports resolve against the entry file and not against the process's working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaSet {
    /// The entry schema.
    pub entry: PathBuf,
    /// OASIS XML catalogs mapping remote `schemaLocation`s to local files, if the schemas import any.
    pub catalogs: Vec<PathBuf>,
}

/// Stylesheets (XSLT 1.0) that map a legacy format to a standard and back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transforms {
    /// Applied on intake to a document this adapter identifies; the result is identified and
    /// validated again like any input (it must belong to an adapter without an inbound transform).
    pub inbound: Option<PathBuf>,
    /// Applied on delivery to a client configured to receive this adapter's format.
    pub outbound: Option<PathBuf>,
}

static NO_TRANSFORMS: Transforms = Transforms {
    inbound: None,
    outbound: None,
};

/// A finding of a check beyond the schema, positioned like a schema error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// One family of message types (usually one standard in one version).
///
/// Optional behaviour lives in methods with documented defaults, so that a simple adapter only
/// names its types, its schemas and its header paths.
pub trait Adapter: Send + Sync + fmt::Debug {
    /// A stable name, e.g. `xumzug-1.0`; used in config, logs and metrics.
    fn name(&self) -> &str;

    /// The message type of a document with this root element, or `None` if it is not ours.
    fn identify(&self, root: &RootName) -> Option<MessageType>;

    /// The schemas that validate every message type of this adapter.
    fn schema(&self) -> &SchemaSet;

    /// Extracts the routing header from a document that has already passed schema validation.
    fn extract_header(&self, xml: &[u8]) -> Result<Header, HeaderError>;

    /// Checks beyond the schema. By default: the header's type code, if present, must equal
    /// the trailing code of the root element's name, because a mismatch means the legacy system
    /// labelled one message as another.
    fn check_header(&self, message_type: &MessageType, header: &Header) -> Result<(), HeaderError> {
        match (message_type.code(), header.type_code.as_deref()) {
            (Some(expected), Some(found)) if expected != found => Err(HeaderError::Inconsistent(format!(
                "header message type code {found} does not match the root element {}",
                message_type.name
            ))),
            _ => Ok(()),
        }
    }

    /// Checks of a schema-valid document beyond its schema, reported like schema errors (with
    /// line and column). By default none; manifest adapters check their code lists here.
    fn check_document(&self, _xml: &[u8]) -> Vec<Finding> {
        Vec::new()
    }

    /// Legacy ↔ standard stylesheets. By default none.
    fn transforms(&self) -> &Transforms {
        &NO_TRANSFORMS
    }

    /// The namespace of this adapter's root elements, where it has one. By default unknown.
    /// (Transport metadata names it, e.g. XTA's `payloadSchema`.)
    fn namespace(&self) -> Option<&str> {
        None
    }
}

/// An adapter described by data: a namespace, root-name patterns, a schema set, header paths,
/// code lists and transforms. Every adapter the gateway ships is one, loaded from an
/// `adapter.toml` manifest (see [`manifest`]).
#[derive(Debug, Clone)]
pub struct PathAdapter {
    pub name: String,
    pub standard: String,
    pub version: String,
    /// The namespace every root element of this adapter lives in (`None`: no namespace, as in
    /// many legacy formats).
    pub namespace: Option<String>,
    /// Root local names accepted, `*` matching any run of characters; empty = every root in
    /// `namespace` (XÖV names messages by their root).
    pub roots: Vec<String>,
    pub schema: SchemaSet,
    /// Where the routing header lives; `None` for a legacy format, whose header is read from the
    /// standard message its inbound transform produces.
    pub header: Option<HeaderPaths>,
    pub codelists: Vec<CodeListBinding>,
    pub transforms: Transforms,
}

impl Adapter for PathAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn identify(&self, root: &RootName) -> Option<MessageType> {
        if root.namespace != self.namespace {
            return None;
        }
        if !self.roots.is_empty() && !self.roots.iter().any(|r| glob_match(r, &root.local)) {
            return None;
        }
        Some(MessageType {
            standard: self.standard.clone(),
            version: self.version.clone(),
            name: root.local.clone(),
        })
    }

    fn schema(&self) -> &SchemaSet {
        &self.schema
    }

    fn extract_header(&self, xml: &[u8]) -> Result<Header, HeaderError> {
        match &self.header {
            Some(paths) => extract_header(xml, paths),
            None => Err(HeaderError::Unreadable(format!(
                "{} is a legacy format without a header of its own; its inbound transform must run first",
                self.name
            ))),
        }
    }

    fn check_document(&self, xml: &[u8]) -> Vec<Finding> {
        codelist::check(xml, &self.codelists)
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn transforms(&self) -> &Transforms {
        &self.transforms
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The header paths of an XÖV g2g 1.1 (`nachrichtenkopf.g2g`) header, qualified or not.
/// The project's demo standard uses the same shape.
pub fn g2g_header_paths() -> HeaderPaths {
    HeaderPaths {
        message_uuid: vec!["nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID".into()],
        type_code: Some("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code".into()),
        author: Party::at("nachrichtenkopf.g2g/autor/kennung"),
        reader: Party::at("nachrichtenkopf.g2g/leser/kennung"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_and_matches_patterns() {
        let t = MessageType::parse("xbeteiligung/1.2 kommunal.Initiieren.0401").unwrap();
        assert_eq!(t.to_string(), "xbeteiligung/1.2 kommunal.Initiieren.0401");
        assert_eq!(t.code(), Some("0401"));
        assert!(t.matches("*"));
        assert!(t.matches("xbeteiligung/*"));
        assert!(t.matches("xbeteiligung/1.2 *"));
        assert!(t.matches("xbeteiligung/1.2 kommunal.Initiieren.0401"));
        assert!(!t.matches("xbeteiligung/1.1 *"));
        assert!(!t.matches("xumzug/*"));
        assert!(MessageType::parse("nonsense").is_none());
    }

    #[test]
    fn root_patterns_match_with_stars() {
        assert!(glob_match("Aussonderung.*", "Aussonderung.Aussonderung.0503"));
        assert!(!glob_match("Aussonderung.*", "Abgabe.Abgabe.0401"));
        assert!(glob_match(
            "*.0005005",
            "nachricht.gds.uebermittlungSchriftgutobjekte.0005005"
        ));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXcYYb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn default_check_refuses_a_mismatched_type_code() {
        let a = PathAdapter {
            name: "xumzug-1.0".into(),
            standard: "xumzug".into(),
            version: "1.0".into(),
            namespace: Some("urn:poststelle:demo:xumzug:1.0".into()),
            roots: Vec::new(),
            schema: SchemaSet {
                entry: "xumzug.xsd".into(),
                catalogs: Vec::new(),
            },
            header: Some(g2g_header_paths()),
            codelists: Vec::new(),
            transforms: Transforms::default(),
        };
        let t = a
            .identify(&RootName {
                namespace: Some("urn:poststelle:demo:xumzug:1.0".into()),
                local: "umzug.Rueckmeldung.0101".into(),
            })
            .unwrap();
        let mut h = Header {
            message_uuid: "u".into(),
            type_code: Some("0101".into()),
            author: "psw:1".into(),
            reader: "psw:2".into(),
        };
        assert!(a.check_header(&t, &h).is_ok());
        h.type_code = Some("0102".into());
        assert!(matches!(a.check_header(&t, &h), Err(HeaderError::Inconsistent(_))));
    }
}
