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
    pub message_uuid: String,
    pub type_code: Option<String>,
    pub author: String,
    pub reader: String,
}

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
    let wanted: Vec<&str> = [
        Some(paths.message_uuid.as_str()),
        paths.type_code.as_deref(),
        Some(paths.author.as_str()),
        Some(paths.reader.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let found = find_paths(xml, &wanted)?;
    let get = |p: &str| -> Option<String> {
        wanted
            .iter()
            .position(|w| *w == p)
            .and_then(|i| found[i].clone())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let message_uuid = get(&paths.message_uuid)
        .ok_or_else(|| HeaderError::Missing(paths.message_uuid.clone()))?
        .to_ascii_lowercase();
    if !is_uuid(&message_uuid) {
        return Err(HeaderError::Invalid {
            field: paths.message_uuid.clone(),
            reason: "not a UUID".into(),
        });
    }
    let author = get(&paths.author).ok_or_else(|| HeaderError::Missing(paths.author.clone()))?;
    check_authority(&paths.author, &author)?;
    let reader = get(&paths.reader).ok_or_else(|| HeaderError::Missing(paths.reader.clone()))?;
    check_authority(&paths.reader, &reader)?;
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
                    if let Some(c) = r
                        .resolve_char_ref()
                        .map_err(|e| HeaderError::Unreadable(e.to_string()))?
                    {
                        text.push(c);
                    } else {
                        let name = String::from_utf8_lossy(&r).into_owned();
                        let c = match name.as_str() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            _ => return Err(HeaderError::Unreadable(format!("unknown entity &{name};"))),
                        };
                        text.push(c);
                    }
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
}
