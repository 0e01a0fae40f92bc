//! Adapters: everything Poststelle knows about one family of XÖV message types.
//!
//! An adapter identifies a message by its root element, names the schema files that validate it
//! and extracts the header fields the gateway routes by (message UUID, type code, author, reader).
//! This crate is pure on purpose: it lists no I/O runtime (tokio, axum, lapin, reqwest) and does
//! no validation itself — the gateway compiles the named schemas with libxml2 on its own threads.
//! It knows nothing about HTTP, stores, partners or cryptography.

mod header;
mod registry;

pub use header::{HeaderError, HeaderPaths, extract_header, find_paths, is_authority};
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
}

/// An adapter described by data: a namespace, root-name patterns, a schema set and header paths.
/// Both built-in adapters are of this kind; manifest files will produce the same struct.
#[derive(Debug, Clone)]
pub struct PathAdapter {
    pub name: String,
    pub standard: String,
    pub version: String,
    /// The namespace every root element of this standard lives in.
    pub namespace: String,
    /// Root local names accepted; empty = every root in `namespace` (XÖV names messages by their root).
    pub roots: Vec<String>,
    pub schema: SchemaSet,
    pub header: HeaderPaths,
}

impl Adapter for PathAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn identify(&self, root: &RootName) -> Option<MessageType> {
        if root.namespace.as_deref() != Some(self.namespace.as_str()) {
            return None;
        }
        if !self.roots.is_empty() && !self.roots.iter().any(|r| r == &root.local) {
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
        extract_header(xml, &self.header)
    }
}

/// The header paths of an XÖV g2g 1.1 (`nachrichtenkopf.g2g`) header, qualified or not.
/// The project's demo standard uses the same shape.
pub fn g2g_header_paths() -> HeaderPaths {
    HeaderPaths {
        message_uuid: "nachrichtenkopf.g2g/identifikation.nachricht/nachrichtenUUID".into(),
        type_code: Some("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code".into()),
        author: "nachrichtenkopf.g2g/autor/kennung".into(),
        reader: "nachrichtenkopf.g2g/leser/kennung".into(),
    }
}

/// The project's own demo standard, XUmzug 1.0 (registration office: a person moves), whose
/// schemas live in the project's `xsd/xumzug-1.0/`.
pub fn xumzug(schema_root: &std::path::Path) -> PathAdapter {
    PathAdapter {
        name: "xumzug-1.0".into(),
        standard: "xumzug".into(),
        version: "1.0".into(),
        namespace: "urn:poststelle:demo:xumzug:1.0".into(),
        roots: Vec::new(),
        schema: SchemaSet {
            entry: schema_root.join("xumzug-1.0").join("xumzug.xsd"),
            catalogs: Vec::new(),
        },
        header: g2g_header_paths(),
    }
}

/// XBeteiligung 1.2 (XLeitstelle) with the XÖV g2g 1.1 header. `schema_dir` is the folder holding
/// the official `xbeteiligung.xsd` and its local imports (obtained from XRepository, never copied
/// into this project).
pub fn xbeteiligung_1_2(schema_dir: &std::path::Path, catalogs: Vec<PathBuf>) -> PathAdapter {
    PathAdapter {
        name: "xbeteiligung-1.2".into(),
        standard: "xbeteiligung".into(),
        version: "1.2".into(),
        namespace: "https://www.xleitstelle.de/xbeteiligung/12".into(),
        roots: Vec::new(),
        schema: SchemaSet {
            entry: schema_dir.join("xbeteiligung.xsd"),
            catalogs,
        },
        header: g2g_header_paths(),
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
    fn default_check_refuses_a_mismatched_type_code() {
        let a = xumzug(std::path::Path::new("xsd"));
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
