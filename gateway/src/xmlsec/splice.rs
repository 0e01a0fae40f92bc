//! Byte positions of elements in a document, so that signing and encryption can change exactly
//! one place and leave every other byte as it was.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::problem::{Code, Problem};

/// Where an element sits: `start..end` is the whole element, `inner` the position just after
/// its start tag and just before its end tag (`None` for an empty-element tag `<a/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub inner: Option<(usize, usize)>,
}

fn bad(_: impl std::fmt::Display) -> Problem {
    Problem::new(Code::NotWellFormed, "the document is not well-formed XML")
}

/// Spans of the outermost elements `namespace:local`, or of the root element when `target` is `None`.
pub fn find(xml: &[u8], target: Option<(&str, &str)>) -> Result<Vec<Span>, Problem> {
    let mut reader = NsReader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    // (depth at which the current match started, its start, end of its start tag)
    let mut open: Option<(usize, usize, usize)> = None;
    let mut spans = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let (resolved, event) = reader.read_resolved_event().map_err(bad)?;
        let hit = match (&event, target) {
            (Event::Start(_) | Event::Empty(_), None) => depth == 0,
            (Event::Start(e) | Event::Empty(e), Some((ns, name))) => {
                matches!(resolved, ResolveResult::Bound(n) if n.as_ref() == ns.as_bytes())
                    && e.local_name().as_ref() == name.as_bytes()
            }
            _ => false,
        };
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(_) => {
                if open.is_none() && hit {
                    open = Some((depth, before, after));
                }
                depth += 1;
            }
            Event::Empty(_) if open.is_none() && hit => {
                spans.push(Span {
                    start: before,
                    end: after,
                    inner: None,
                });
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or_else(|| bad(""))?;
                if let Some((d, start, inner_start)) = open
                    && d == depth
                {
                    spans.push(Span {
                        start,
                        end: after,
                        inner: Some((inner_start, before)),
                    });
                    open = None;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(spans)
}

/// The root element's span.
pub fn root(xml: &[u8]) -> Result<Span, Problem> {
    find(xml, None)?.into_iter().next().ok_or_else(|| bad(""))
}

/// Inserts `child` as the last child of the root element.
pub fn append_to_root(xml: &[u8], child: &[u8]) -> Result<Vec<u8>, Problem> {
    let span = root(xml)?;
    let mut out = Vec::with_capacity(xml.len() + child.len() + 64);
    match span.inner {
        Some((_, end_tag)) => {
            out.extend_from_slice(&xml[..end_tag]);
            out.extend_from_slice(child);
            out.extend_from_slice(&xml[end_tag..]);
        }
        None => {
            // `<a .../>` becomes `<a ...>child</a>`.
            let tag = &xml[span.start..span.end];
            let name_end = tag[1..]
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
                .map_or(tag.len(), |p| p + 1);
            let name = &tag[1..name_end];
            let close = tag.len() - 2; // the "/>"
            out.extend_from_slice(&xml[..span.start]);
            out.extend_from_slice(&tag[..close]);
            out.push(b'>');
            out.extend_from_slice(child);
            out.extend_from_slice(b"</");
            out.extend_from_slice(name);
            out.push(b'>');
            out.extend_from_slice(&xml[span.end..]);
        }
    }
    Ok(out)
}

/// Replaces the given spans (sorted, non-overlapping) with new bytes.
pub fn replace(xml: &[u8], parts: &[(Span, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xml.len());
    let mut at = 0;
    for (span, bytes) in parts {
        out.extend_from_slice(&xml[at..span.start]);
        out.extend_from_slice(bytes);
        at = span.end;
    }
    out.extend_from_slice(&xml[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_inside_the_root_and_expands_empty_roots() {
        let doc = b"<?xml version=\"1.0\"?>\n<a x=\"1\"><b/></a>\n<!-- c -->";
        assert_eq!(
            append_to_root(doc, b"<s/>").unwrap(),
            b"<?xml version=\"1.0\"?>\n<a x=\"1\"><b/><s/></a>\n<!-- c -->".to_vec()
        );
        assert_eq!(
            append_to_root(b"<p:a xmlns:p=\"u\" />", b"<s/>").unwrap(),
            b"<p:a xmlns:p=\"u\" ><s/></p:a>".to_vec()
        );
    }

    #[test]
    fn finds_outermost_elements_by_namespace() {
        let doc = b"<r xmlns:e=\"urn:e\"><e:D><e:D/></e:D><x><e:D a=\"1\"/></x></r>";
        let spans = find(doc, Some(("urn:e", "D"))).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(&doc[spans[0].start..spans[0].end], b"<e:D><e:D/></e:D>");
        assert_eq!(&doc[spans[1].start..spans[1].end], b"<e:D a=\"1\"/>");
    }
}
