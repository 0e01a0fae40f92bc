//! Pre-scan: the first look at untrusted bytes, before libxml2 or any adapter sees them.
//!
//! A streaming pass with quick-xml that enforces the limits (size, depth, attributes per element,
//! namespace declarations, element count), refuses every construct that can fetch or expand
//! (DOCTYPE and with it every entity declaration, entity references, XInclude, fetching
//! processing instructions) and every encoding but UTF-8, and finds the root element's qualified
//! name for the adapter lookup. Cost is linear in the input and stops at the first offence, so a
//! hostile document is refused before anything expensive runs. Full well-formedness is libxml2's
//! job afterwards; this pass only needs to be strict where safety depends on it.

use adapters::RootName;
use quick_xml::events::{BytesDecl, BytesPI, BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::problem::{Code, Problem};

/// Limits applied before any expensive work. Defaults suit XÖV messages with attachments
/// inlined as base64; operators may raise them in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted document in bytes (the HTTP body limit uses the same figure).
    pub max_bytes: usize,
    /// Deepest element nesting; real XÖV messages stay below 30.
    pub max_depth: usize,
    /// Most attributes on one element (namespace declarations included).
    pub max_attributes: usize,
    /// Most namespace declarations in the whole document.
    pub max_namespaces: usize,
    /// Most elements in the whole document.
    pub max_elements: usize,
    /// Largest attachment file (multipart and XTA intake); attachments are files, not XML.
    pub max_attachment_bytes: u64,
    /// Most bytes of attachment streams one partner may have waiting here (arriving, or
    /// arrived and not yet opened); past it the partner's next stream is `503 overloaded`, so
    /// one partner cannot fill the disk the others' messages need. At least one stream of
    /// `max_attachment_bytes`.
    pub max_partner_staging_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 16 * 1024 * 1024,
            max_depth: 128,
            max_attributes: 256,
            max_namespaces: 256,
            max_elements: 1_000_000,
            max_attachment_bytes: 4 << 30,
            max_partner_staging_bytes: 16 << 30,
        }
    }
}

impl Limits {
    /// Limits for envelopes: the content limit plus base64 growth, encryption and signatures.
    pub fn for_envelopes(&self) -> Limits {
        Limits {
            max_bytes: self.max_bytes / 3 * 4 + 64 * 1024,
            ..*self
        }
    }
}

/// What the pre-scan learnt about an acceptable document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub root: RootName,
    pub elements: usize,
}

const XINCLUDE_NS: &[u8] = b"http://www.w3.org/2001/XInclude";

/// Scans `bytes`; `Err` carries the problem code and the position of the offence.
pub fn prescan(bytes: &[u8], limits: &Limits) -> Result<Scan, Problem> {
    if bytes.len() > limits.max_bytes {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("document is {} bytes, the limit is {}", bytes.len(), limits.max_bytes),
        ));
    }
    check_encoding(bytes)?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Problem::new(Code::NotWellFormed, "the document is empty"));
    }
    let at = |offset: u64, code: Code, msg: String| {
        let (line, column) = line_column(body, offset as usize);
        Problem::at(code, line, column, msg)
    };

    let mut reader = NsReader::from_reader(body);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut depth = 0usize;
    let mut elements = 0usize;
    let mut namespaces = 0usize;
    let mut root: Option<RootName> = None;
    let mut root_closed = false;
    loop {
        let pos = reader.buffer_position();
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => {
                return Err(at(reader.error_position(), Code::NotWellFormed, xml_error_text(&e)));
            }
        };
        match ev {
            Event::Decl(d) => check_decl(&d).map_err(|(code, msg)| at(pos, code, msg))?,
            Event::DocType(_) => {
                return Err(at(
                    pos,
                    Code::ForbiddenConstruct,
                    "a DOCTYPE is not allowed (no DTDs, no entity declarations)".into(),
                ));
            }
            Event::PI(pi) => check_pi(&pi).map_err(|(code, msg)| at(pos, code, msg))?,
            Event::GeneralRef(r) => check_ref(&r).map_err(|(code, msg)| at(pos, code, msg))?,
            Event::Text(t) => {
                if (root.is_none() || root_closed) && !t.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(at(pos, Code::NotWellFormed, "text outside the root element".into()));
                }
            }
            Event::CData(_) => {
                if root.is_none() || root_closed {
                    return Err(at(pos, Code::NotWellFormed, "CDATA outside the root element".into()));
                }
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root_closed {
                    return Err(at(pos, Code::NotWellFormed, "more than one root element".into()));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(at(
                        pos,
                        Code::LimitExceeded,
                        format!("more than {} elements", limits.max_elements),
                    ));
                }
                let is_start = matches!(ev, Event::Start(_));
                if is_start {
                    depth += 1;
                }
                if depth > limits.max_depth || (!is_start && depth + 1 > limits.max_depth) {
                    return Err(at(
                        pos,
                        Code::LimitExceeded,
                        format!("elements nested deeper than {}", limits.max_depth),
                    ));
                }
                check_attributes(e, limits, &mut namespaces).map_err(|(code, msg)| at(pos, code, msg))?;
                let namespace = match ns {
                    ResolveResult::Bound(n) => {
                        if n.as_ref() == XINCLUDE_NS {
                            return Err(at(pos, Code::ForbiddenConstruct, "XInclude is not allowed".into()));
                        }
                        Some(String::from_utf8_lossy(n.as_ref()).into_owned())
                    }
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(at(
                            pos,
                            Code::NotWellFormed,
                            format!("undeclared namespace prefix {}", String::from_utf8_lossy(&p)),
                        ));
                    }
                };
                if root.is_none() {
                    root = Some(RootName {
                        namespace,
                        local: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    });
                }
                if !is_start && depth == 0 {
                    root_closed = true;
                }
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    root_closed = true;
                }
            }
            Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    match root {
        None => Err(Problem::new(Code::NotWellFormed, "no root element")),
        Some(_) if depth != 0 => {
            let (line, column) = line_column(body, body.len());
            Err(Problem::at(
                Code::NotWellFormed,
                line,
                column,
                "document ends before the root element is closed",
            ))
        }
        Some(root) => Ok(Scan { root, elements }),
    }
}

/// A check's finding before it is placed: its code and message.
type Finding = (Code, String);

/// The XML declaration: version 1.0, UTF-8 only.
fn check_decl(d: &BytesDecl<'_>) -> Result<(), Finding> {
    if let Ok(v) = d.version()
        && v.as_ref() != b"1.0"
    {
        return Err((Code::ForbiddenConstruct, "only XML 1.0 is supported".into()));
    }
    if let Some(Ok(enc)) = d.encoding() {
        let enc = String::from_utf8_lossy(&enc).to_ascii_lowercase();
        if enc != "utf-8" && enc != "utf8" {
            return Err((
                Code::UnsupportedEncoding,
                format!("declared encoding {enc} is not supported; send UTF-8"),
            ));
        }
    }
    Ok(())
}

/// Processing instructions that would fetch something are refused.
fn check_pi(pi: &BytesPI<'_>) -> Result<(), Finding> {
    let target = pi.target();
    if target.eq_ignore_ascii_case(b"xml-stylesheet") || target.eq_ignore_ascii_case(b"xml-model") {
        return Err((
            Code::ForbiddenConstruct,
            format!(
                "processing instruction {} refers to an external resource",
                String::from_utf8_lossy(target)
            ),
        ));
    }
    Ok(())
}

/// Character references must resolve; entity references other than the five predefined ones
/// are refused (there are no declarations to resolve them with).
fn check_ref(r: &BytesRef<'_>) -> Result<(), Finding> {
    let name: &[u8] = r;
    let predefined = matches!(name, b"amp" | b"lt" | b"gt" | b"quot" | b"apos");
    if r.is_char_ref() {
        if let Err(e) = r.resolve_char_ref() {
            return Err((Code::NotWellFormed, format!("bad character reference: {e}")));
        }
    } else if !predefined {
        return Err((
            Code::ForbiddenConstruct,
            format!("entity reference &{}; is not allowed", String::from_utf8_lossy(name)),
        ));
    }
    Ok(())
}

/// An element's attributes: at most `max_attributes`, namespace declarations counted towards
/// the document's `max_namespaces`, each attribute well-formed.
fn check_attributes(e: &BytesStart<'_>, limits: &Limits, namespaces: &mut usize) -> Result<(), Finding> {
    // Count first without duplicate checks (quadratic on hostile input), then check.
    let mut count = 0usize;
    for a in e.attributes().with_checks(false) {
        count += 1;
        if count > limits.max_attributes {
            return Err((
                Code::LimitExceeded,
                format!("more than {} attributes on one element", limits.max_attributes),
            ));
        }
        if let Ok(a) = a {
            let key = a.key.as_ref();
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                *namespaces += 1;
                if *namespaces > limits.max_namespaces {
                    return Err((
                        Code::LimitExceeded,
                        format!("more than {} namespace declarations", limits.max_namespaces),
                    ));
                }
            }
        }
    }
    for a in e.attributes() {
        if let Err(err) = a {
            return Err((Code::NotWellFormed, format!("bad attribute: {err}")));
        }
    }
    Ok(())
}

/// Refuses byte-order marks and byte patterns of encodings other than UTF-8, and invalid UTF-8.
fn check_encoding(bytes: &[u8]) -> Result<(), Problem> {
    let utf16_or_32 = bytes.starts_with(b"\xFE\xFF")
        || bytes.starts_with(b"\xFF\xFE")
        || bytes.starts_with(b"\x00\x00\xFE\xFF")
        || bytes.starts_with(b"\x00<")
        || bytes.starts_with(b"<\x00");
    if utf16_or_32 {
        return Err(Problem::new(
            Code::UnsupportedEncoding,
            "the document is UTF-16 or UTF-32; send UTF-8",
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        let (line, column) = line_column(bytes, e.valid_up_to());
        return Err(Problem::at(
            Code::UnsupportedEncoding,
            line,
            column,
            "byte sequence is not UTF-8; send UTF-8",
        ));
    }
    Ok(())
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(bytes: &[u8], offset: usize) -> (u32, u32) {
    let offset = offset.min(bytes.len());
    let before = &bytes[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line as u32, column as u32)
}

/// quick-xml's error text, without echoing document content beyond names.
fn xml_error_text(e: &quick_xml::Error) -> String {
    let s = e.to_string();
    if s.len() > 200 {
        format!("{}…", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(doc: &[u8]) -> Code {
        prescan(doc, &Limits::default()).unwrap_err().code
    }

    #[test]
    fn accepts_a_plain_document_and_names_its_root() {
        let s = prescan(
            b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c --><a:r xmlns:a=\"urn:x\"><b>&amp;&#65;</b><c/></a:r>\n",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(s.root.namespace.as_deref(), Some("urn:x"));
        assert_eq!(s.root.local, "r");
        assert_eq!(s.elements, 3);
    }

    #[test]
    fn refuses_what_can_fetch_or_expand() {
        assert_eq!(code(b"<!DOCTYPE r SYSTEM \"http://x/\"><r/>"), Code::ForbiddenConstruct);
        assert_eq!(
            code(b"<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]><r>&b;</r>"),
            Code::ForbiddenConstruct
        );
        assert_eq!(code(b"<r>&ext;</r>"), Code::ForbiddenConstruct);
        assert_eq!(
            code(b"<r xmlns:xi=\"http://www.w3.org/2001/XInclude\"><xi:include href=\"/etc/passwd\"/></r>"),
            Code::ForbiddenConstruct
        );
        assert_eq!(
            code(b"<?xml-stylesheet href=\"http://x/s.xsl\"?><r/>"),
            Code::ForbiddenConstruct
        );
        assert_eq!(code(b"<?xml version=\"1.1\"?><r/>"), Code::ForbiddenConstruct);
    }

    #[test]
    fn enforces_limits_early() {
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let p = prescan(deep.as_bytes(), &Limits::default()).unwrap_err();
        assert_eq!(p.code, Code::LimitExceeded);
        assert_eq!(p.errors[0].line, Some(1));
        let attrs: String = (0..50_000).map(|i| format!(" a{i}=\"x\"")).collect();
        assert_eq!(code(format!("<r{attrs}/>").as_bytes()), Code::LimitExceeded);
        let nss: String = (0..300).map(|i| format!("<e xmlns:n{i}=\"urn:{i}\"/>")).collect();
        assert_eq!(code(format!("<r>{nss}</r>").as_bytes()), Code::LimitExceeded);
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            prescan(b"<r>0123456789</r>", &small).unwrap_err().code,
            Code::LimitExceeded
        );
    }

    #[test]
    fn refuses_other_encodings() {
        assert_eq!(code(b"\xFF\xFE<\x00r\x00/\x00>\x00"), Code::UnsupportedEncoding);
        assert_eq!(
            code(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r/>"),
            Code::UnsupportedEncoding
        );
        let p = prescan(b"<r>\n  Gr\xFC\xDFe</r>", &Limits::default()).unwrap_err();
        assert_eq!(p.code, Code::UnsupportedEncoding);
        assert_eq!((p.errors[0].line, p.errors[0].column), (Some(2), Some(5)));
    }

    #[test]
    fn reports_malformed_input_with_position() {
        assert_eq!(code(b""), Code::NotWellFormed);
        assert_eq!(code(b"   \n"), Code::NotWellFormed);
        let p = prescan(b"<r>\n <a></b>\n</r>", &Limits::default()).unwrap_err();
        assert_eq!(p.code, Code::NotWellFormed);
        assert_eq!(p.errors[0].line, Some(2));
        assert_eq!(code(b"<r/><r/>"), Code::NotWellFormed);
        assert_eq!(code(b"<r>"), Code::NotWellFormed);
        assert_eq!(code(b"text<r/>"), Code::NotWellFormed);
        assert_eq!(code(b"<p:r/>"), Code::NotWellFormed);
        assert_eq!(code(b"<r a=\"1\" a=\"2\"/>"), Code::NotWellFormed);
    }
}
