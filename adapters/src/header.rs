//! Header extraction: reads the routing fields out of a message by simple element paths.
//!
//! Paths are `/`-separated local names below the root element (`nachrichtenkopf.g2g/autor/kennung`).
//! Namespaces are deliberately ignored when matching, because XÖV headers exist both qualified
//! and unqualified; the schema has already pinned down which one a standard uses. The first
//! element on a path wins. Runs on a document that passed schema validation.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::Header;

/// Where the routing fields live in a standard's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPaths {
    /// The message id. One path: its value is the message UUID. Several paths (for standards
    /// whose header has no per-message id, such as xdomea's `ProzessID` shared by every message
    /// of a process): the id is the UUID v5 of their values, so that a retry of the same message
    /// gets the same id and two messages of one process do not.
    pub message_uuid: Vec<String>,
    pub type_code: Option<String>,
    pub author: Party,
    pub reader: Party,
}

/// Where an authority identifier lives and how its DVDV prefix is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// Paths tried in order; the first non-empty value wins (e.g. the alternatives of a choice).
    pub paths: Vec<String>,
    pub prefix: Prefix,
}

/// The DVDV prefix of an authority identifier (`prefix:kennung`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefix {
    /// The value already reads `prefix:kennung` (XÖV g2g `kennung`).
    InValue,
    /// A fixed prefix for a standard whose header names authorities without one.
    Fixed(String),
    /// A separate header element holds the prefix (XInneres `praefix`, xdomea `Praefix/code`).
    Path(String),
}

impl Party {
    /// A party read from one path whose value is already `prefix:kennung`.
    pub fn at(path: &str) -> Self {
        Self {
            paths: vec![path.to_owned()],
            prefix: Prefix::InValue,
        }
    }

    fn all_paths(&self) -> impl Iterator<Item = &str> {
        let prefix = match &self.prefix {
            Prefix::Path(p) => Some(p.as_str()),
            _ => None,
        };
        self.paths.iter().map(String::as_str).chain(prefix)
    }
}

impl HeaderPaths {
    /// Every path this mapping reads.
    pub fn all_paths(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .message_uuid
            .iter()
            .map(String::as_str)
            .filter(|p| *p != ROOT_TOKEN)
            .collect();
        v.extend(self.type_code.as_deref());
        v.extend(self.author.all_paths());
        v.extend(self.reader.all_paths());
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// In `message_id`, stands for the root element's qualified name, `{namespace}local` (the
/// message's name and its standard's version in XÖV).
pub const ROOT_TOKEN: &str = "{root}";

fn root_name(xml: &[u8]) -> Result<String, HeaderError> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e) | Event::Empty(e)) => {
                // The root's namespace is declared on the root itself: nothing encloses it.
                let declaration = match e.name().prefix() {
                    Some(p) => format!("xmlns:{}", String::from_utf8_lossy(p.as_ref())),
                    None => "xmlns".to_owned(),
                };
                let namespace = e
                    .attributes()
                    .flatten()
                    .find(|a| a.key.as_ref() == declaration.as_bytes())
                    .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                    .unwrap_or_default();
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                return Ok(format!("{{{namespace}}}{local}"));
            }
            Ok(Event::Eof) => return Err(HeaderError::Unreadable("no root element".into())),
            Err(e) => return Err(HeaderError::Unreadable(e.to_string())),
            Ok(_) => buf.clear(),
        }
    }
}

/// Namespace of the UUID v5 message ids derived from several header fields.
const DERIVED_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x8c1b_5e0e_6a4f_4d57_9a51_2f0c_7d3e_b4a1);

/// Why a header could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header field {0} is missing or empty")]
    Missing(String),
    #[error("header field {field} is invalid: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    Inconsistent(String),
    #[error("message could not be read for its header: {0}")]
    Unreadable(String),
}

/// Extracts the routing header following `paths`.
pub fn extract_header(xml: &[u8], paths: &HeaderPaths) -> Result<Header, HeaderError> {
    let wanted = paths.all_paths();
    let found = find_paths(xml, &wanted)?;
    let get = |p: &str| -> Option<String> {
        wanted
            .iter()
            .position(|w| *w == p)
            .and_then(|i| found[i].clone())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let message_uuid = match paths.message_uuid.as_slice() {
        [one] => {
            let id = get(one)
                .ok_or_else(|| HeaderError::Missing(one.clone()))?
                .to_ascii_lowercase();
            if !is_uuid(&id) {
                return Err(HeaderError::Invalid {
                    field: one.clone(),
                    reason: "not a UUID".into(),
                });
            }
            id
        }
        several => {
            let mut parts = Vec::with_capacity(several.len());
            for p in several {
                parts.push(if p == ROOT_TOKEN {
                    root_name(xml)?
                } else {
                    get(p).ok_or_else(|| HeaderError::Missing(p.clone()))?
                });
            }
            uuid::Uuid::new_v5(&DERIVED_ID_NAMESPACE, parts.join("\n").as_bytes()).to_string()
        }
    };
    let party = |party: &Party| -> Result<String, HeaderError> {
        let first = party.paths.first().cloned().unwrap_or_default();
        let value = party
            .paths
            .iter()
            .find_map(|p| get(p))
            .ok_or_else(|| HeaderError::Missing(party.paths.join(" | ")))?;
        let value = match &party.prefix {
            Prefix::InValue => value,
            Prefix::Fixed(prefix) => format!("{prefix}:{value}"),
            Prefix::Path(p) => format!("{}:{value}", get(p).ok_or_else(|| HeaderError::Missing(p.clone()))?),
        };
        check_authority(&first, &value)?;
        Ok(value)
    };
    let author = party(&paths.author)?;
    let reader = party(&paths.reader)?;
    let type_code = match &paths.type_code {
        Some(p) => Some(get(p).ok_or_else(|| HeaderError::Missing(p.clone()))?),
        None => None,
    };
    Ok(Header {
        message_uuid,
        type_code,
        author,
        reader,
    })
}

/// A DVDV-style authority identifier: `prefix:kennung`, both parts non-empty, no white space.
pub fn is_authority(s: &str) -> bool {
    match s.split_once(':') {
        Some((prefix, kennung)) => {
            !prefix.is_empty()
                && !kennung.is_empty()
                && prefix.bytes().all(|b| b.is_ascii_alphanumeric())
                && kennung
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        }
        None => false,
    }
}

fn check_authority(field: &str, value: &str) -> Result<(), HeaderError> {
    if is_authority(value) {
        Ok(())
    } else {
        Err(HeaderError::Invalid {
            field: field.to_owned(),
            reason: "not a DVDV-style prefix:kennung".into(),
        })
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The character an entity or character reference stands for (only the five predefined
/// entities exist: documents with a DOCTYPE never get this far).
pub(crate) fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<char, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        return Ok(c);
    }
    let name: &[u8] = r;
    match name {
        b"amp" => Ok('&'),
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"quot" => Ok('"'),
        b"apos" => Ok('\''),
        other => Err(format!("unknown entity &{};", String::from_utf8_lossy(other))),
    }
}

/// Returns the text of the first element at each path (below the root), for any caller that
/// needs a few fields of a small, schema-validated document.
pub fn find_paths(xml: &[u8], wanted: &[&str]) -> Result<Vec<Option<String>>, HeaderError> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    // Index into `wanted` of the path being collected, with its text so far.
    let mut collecting: Option<(usize, String)> = None;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| HeaderError::Unreadable(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                stack.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                if collecting.is_none() && stack.len() > 1 {
                    let path = stack[1..].join("/");
                    if let Some(i) = wanted.iter().position(|w| *w == path)
                        && found[i].is_none()
                    {
                        collecting = Some((i, String::new()));
                    }
                }
            }
            Event::Empty(_) => {}
            Event::Text(t) => {
                if let Some((_, text)) = collecting.as_mut() {
                    let t = t.xml_content().map_err(|e| HeaderError::Unreadable(e.to_string()))?;
                    text.push_str(&t);
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = collecting.as_mut() {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, text)) = collecting.as_mut() {
                    text.push(resolve_ref(&r).map_err(HeaderError::Unreadable)?);
                }
            }
            Event::End(_) => {
                let depth = stack.len();
                if let Some((i, text)) = collecting.take() {
                    let path_depth = wanted[i].split('/').count() + 1;
                    if depth == path_depth {
                        found[i] = Some(text);
                    } else {
                        collecting = Some((i, text));
                    }
                }
                stack.pop();
                if found.iter().all(Option::is_some) {
                    break;
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g2g_header_paths;

    const MSG: &str = r#"<?xml version="1.0"?>
<m:root xmlns:m="urn:m" xmlns:k="urn:k">
  <k:nachrichtenkopf.g2g>
    <k:identifikation.nachricht>
      <k:nachrichtenUUID> 60F6667B-fa45-4bd7-b717-f4d6c65e5edb </k:nachrichtenUUID>
      <k:nachrichtentyp listURI="x" listVersionID="1"><code>0401</code></k:nachrichtentyp>
    </k:identifikation.nachricht>
    <k:leser><k:kennung>xyz:0002</k:kennung></k:leser>
    <k:autor><k:kennung>xyz:0001</k:kennung></k:autor>
  </k:nachrichtenkopf.g2g>
  <m:inhalt><k:kennung>not:this</k:kennung></m:inhalt>
</m:root>"#;

    #[test]
    fn extracts_qualified_g2g_header() {
        let h = extract_header(MSG.as_bytes(), &g2g_header_paths()).unwrap();
        assert_eq!(h.message_uuid, "60f6667b-fa45-4bd7-b717-f4d6c65e5edb");
        assert_eq!(h.type_code.as_deref(), Some("0401"));
        assert_eq!(h.author, "xyz:0001");
        assert_eq!(h.reader, "xyz:0002");
    }

    #[test]
    fn extracts_unqualified_header_with_char_refs() {
        let msg = MSG.replace("k:", "").replace("xyz:0001", "xyz&#58;0001");
        let h = extract_header(msg.as_bytes(), &g2g_header_paths()).unwrap();
        assert_eq!(h.author, "xyz:0001");
    }

    #[test]
    fn reports_missing_and_invalid_fields() {
        let no_author = MSG.replace("<k:autor><k:kennung>xyz:0001</k:kennung></k:autor>", "");
        assert_eq!(
            extract_header(no_author.as_bytes(), &g2g_header_paths()),
            Err(HeaderError::Missing("nachrichtenkopf.g2g/autor/kennung".into()))
        );
        let bad_uuid = MSG.replace("60F6667B", "nope");
        assert!(matches!(
            extract_header(bad_uuid.as_bytes(), &g2g_header_paths()),
            Err(HeaderError::Invalid { .. })
        ));
        let bad_authority = MSG.replace("xyz:0002", "0002");
        assert!(matches!(
            extract_header(bad_authority.as_bytes(), &g2g_header_paths()),
            Err(HeaderError::Invalid { .. })
        ));
    }

    #[test]
    fn applies_prefix_rules_and_derives_ids_from_several_fields() {
        let doc = r#"<K><Kopf><ProzessID>p-1</ProzessID><Typ><code>0503</code></Typ>
            <Abs><Praefix><code>psw</code></Praefix><Kennung><code>LATh</code></Kennung></Abs>
            <Empf><sonstige>Gericht</sonstige></Empf></Kopf></K>"#;
        let paths = HeaderPaths {
            message_uuid: vec!["Kopf/ProzessID".into(), ROOT_TOKEN.into()],
            type_code: Some("Kopf/Typ/code".into()),
            author: Party {
                paths: vec!["Kopf/Abs/Kennung/code".into()],
                prefix: Prefix::Path("Kopf/Abs/Praefix/code".into()),
            },
            reader: Party {
                paths: vec!["Kopf/Empf/gericht/code".into(), "Kopf/Empf/sonstige".into()],
                prefix: Prefix::Fixed("xjustiz".into()),
            },
        };
        let h = extract_header(doc.as_bytes(), &paths).unwrap();
        assert_eq!((h.author.as_str(), h.reader.as_str()), ("psw:LATh", "xjustiz:Gericht"));
        assert!(is_uuid(&h.message_uuid));
        let other_type = doc.replace("<K>", "<L>").replace("</K>", "</L>");
        let h2 = extract_header(other_type.as_bytes(), &paths).unwrap();
        assert_ne!(
            h.message_uuid, h2.message_uuid,
            "two messages of one process need two ids"
        );
        assert_eq!(
            extract_header(doc.as_bytes(), &paths).unwrap().message_uuid,
            h.message_uuid
        );
        let other_version = doc.replace("<K>", "<K xmlns=\"urn:v2\">");
        let h3 = extract_header(other_version.as_bytes(), &paths).unwrap();
        assert_ne!(
            h.message_uuid, h3.message_uuid,
            "the same message in another version is another message"
        );
        let no_prefix = doc.replace("<Praefix><code>psw</code></Praefix>", "");
        assert_eq!(
            extract_header(no_prefix.as_bytes(), &paths),
            Err(HeaderError::Missing("Kopf/Abs/Praefix/code".into()))
        );
    }
}
