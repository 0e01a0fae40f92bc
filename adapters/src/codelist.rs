//! Code lists: OASIS genericode files pinned by a manifest, and the check of a document's code
//! values against them.
//!
//! XÖV code elements carry the code in a `code` child and may name their list in the attributes
//! `listURI` and `listVersionID`. A binding ties a list to element paths below the root (for
//! lists whose URI the schema fixes, so that instances do not repeat it), or, without paths, to
//! every element whose `listURI` is the list's canonical URI. A code outside the list, or a
//! `listVersionID` naming a version that is not pinned, is a finding with line and column.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::Finding;

/// One version of one code list, read from a genericode file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeList {
    pub file: PathBuf,
    /// `Identification/CanonicalUri`.
    pub uri: String,
    /// `Identification/Version`.
    pub version: String,
    pub codes: HashSet<String>,
}

/// A code list and the elements it governs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeListBinding {
    pub list: CodeList,
    /// Element paths below the root (`Kopf/Nachrichtentyp`); empty = bound by `listURI`.
    pub elements: Vec<String>,
}

/// Why a genericode file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("code list {file}: {reason}")]
pub struct CodeListError {
    pub file: String,
    pub reason: String,
}

impl CodeList {
    /// Reads a genericode file. The code column is `column`, or else the column of the list's
    /// first key, or else its first column.
    pub fn load(file: &Path, column: Option<&str>) -> Result<Self, CodeListError> {
        let err = |reason: String| CodeListError {
            file: file.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(file).map_err(|e| err(format!("cannot read: {e}")))?;
        Self::parse(&bytes, column).map_err(err).map(|mut l| {
            l.file = file.to_path_buf();
            l
        })
    }

    /// Parses genericode bytes (see [`CodeList::load`]).
    pub fn parse(bytes: &[u8], column: Option<&str>) -> Result<Self, String> {
        let mut reader = Reader::from_reader(bytes);
        let mut stack: Vec<String> = Vec::new();
        let (mut uri, mut version) = (None::<String>, None::<String>);
        let (mut first_column, mut key_column) = (None::<String>, None::<String>);
        // Rows as (column ref, value) pairs.
        let mut rows: Vec<Vec<(String, String)>> = Vec::new();
        let mut value_ref: Option<String> = None;
        let mut text = String::new();
        let mut buf = Vec::new();
        loop {
            let ev = reader.read_event_into(&mut buf).map_err(|e| e.to_string())?;
            match ev {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let name = local(e);
                    match name.as_str() {
                        "Column" if first_column.is_none() => first_column = attr(e, "Id"),
                        "ColumnRef" if key_column.is_none() && stack.last().is_some_and(|p| p == "Key") => {
                            key_column = attr(e, "Ref");
                        }
                        "Row" => rows.push(Vec::new()),
                        "Value" => value_ref = attr(e, "ColumnRef"),
                        _ => {}
                    }
                    if matches!(ev, Event::Start(_)) {
                        stack.push(name);
                    }
                    text.clear();
                }
                Event::Text(t) => text.push_str(&t.xml_content().map_err(|e| e.to_string())?),
                Event::GeneralRef(r) => text.push(crate::header::resolve_ref(&r)?),
                Event::End(_) => {
                    let name = stack.pop().unwrap_or_default();
                    let parent = stack.last().map(String::as_str);
                    match (name.as_str(), parent) {
                        ("CanonicalUri", Some("Identification")) => uri = Some(text.trim().to_owned()),
                        ("Version", Some("Identification")) => version = Some(text.trim().to_owned()),
                        ("SimpleValue", Some("Value")) => {
                            if let (Some(r), Some(row)) = (&value_ref, rows.last_mut()) {
                                row.push((r.clone(), text.trim().to_owned()));
                            }
                        }
                        _ => {}
                    }
                    text.clear();
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        let uri = uri.filter(|u| !u.is_empty()).ok_or("no Identification/CanonicalUri")?;
        let version = version.filter(|v| !v.is_empty()).ok_or("no Identification/Version")?;
        let column = column
            .map(str::to_owned)
            .or(key_column)
            .or(first_column)
            .ok_or("no column to take the codes from")?;
        let codes: HashSet<String> = rows
            .into_iter()
            .filter_map(|row| row.into_iter().find(|(r, _)| *r == column).map(|(_, v)| v))
            .collect();
        if codes.is_empty() {
            return Err(format!("no codes in column {column}"));
        }
        Ok(Self {
            file: PathBuf::new(),
            uri,
            version,
            codes,
        })
    }
}

fn local(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name.as_bytes())
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// An element governed by code lists, while its `code` child is being read.
struct Open<'a> {
    depth: usize,
    path: String,
    line: u32,
    column: u32,
    version: Option<String>,
    bindings: Vec<&'a CodeListBinding>,
    code: Option<String>,
    in_code: bool,
}

/// Checks every governed code element of a schema-valid document.
pub fn check(xml: &[u8], bindings: &[CodeListBinding]) -> Vec<Finding> {
    if bindings.is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut open: Vec<Open<'_>> = Vec::new();
    let mut cursor = Cursor::default();
    let mut buf = Vec::new();
    loop {
        let pos = reader.buffer_position() as usize;
        let Ok(ev) = reader.read_event_into(&mut buf) else {
            // The document passed the schema, so it is well-formed; stop quietly otherwise.
            break;
        };
        match ev {
            Event::Start(e) => {
                stack.push(local(&e));
                let depth = stack.len();
                if let Some(o) = open.last_mut()
                    && depth == o.depth + 1
                    && stack[depth - 1] == "code"
                {
                    o.in_code = true;
                    o.code = Some(String::new());
                }
                if depth < 2 {
                    buf.clear();
                    continue;
                }
                let path = stack[1..].join("/");
                let list_uri = attr(&e, "listURI").filter(|u| !u.is_empty());
                let governing: Vec<&CodeListBinding> = bindings
                    .iter()
                    .filter(|b| {
                        if b.elements.is_empty() {
                            list_uri.as_deref() == Some(b.list.uri.as_str())
                        } else {
                            b.elements.contains(&path)
                        }
                    })
                    .collect();
                if !governing.is_empty() {
                    let (line, column) = cursor.advance(xml, pos);
                    open.push(Open {
                        depth,
                        path,
                        line,
                        column,
                        version: attr(&e, "listVersionID").filter(|v| !v.is_empty()),
                        bindings: governing,
                        code: None,
                        in_code: false,
                    });
                }
            }
            Event::Text(t) => {
                if let Some(o) = open.last_mut()
                    && o.in_code
                    && let (Some(code), Ok(t)) = (o.code.as_mut(), t.xml_content())
                {
                    code.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(o) = open.last_mut()
                    && o.in_code
                    && let (Some(code), Ok(c)) = (o.code.as_mut(), crate::header::resolve_ref(&r))
                {
                    code.push(c);
                }
            }
            Event::End(_) => {
                let depth = stack.len();
                if let Some(o) = open.last_mut()
                    && o.in_code
                    && depth == o.depth + 1
                {
                    o.in_code = false;
                }
                if open.last().is_some_and(|o| o.depth == depth) {
                    let o = open.pop().unwrap_or_else(|| unreachable!());
                    findings.extend(judge(&o));
                }
                stack.pop();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    findings
}

fn judge(o: &Open<'_>) -> Option<Finding> {
    let finding = |message: String| {
        Some(Finding {
            line: o.line,
            column: o.column,
            message,
        })
    };
    let uri = &o.bindings[0].list.uri;
    let mut versions: Vec<&str> = o.bindings.iter().map(|b| b.list.version.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    let lists: Vec<&CodeList> = match &o.version {
        Some(v) => {
            let chosen: Vec<&CodeList> = o.bindings.iter().map(|b| &b.list).filter(|l| l.version == *v).collect();
            if chosen.is_empty() {
                return finding(format!(
                    "Element '{}': the listVersionID is not a pinned version of code list {uri} (allowed: {})",
                    o.path,
                    versions.join(", ")
                ));
            }
            chosen
        }
        None => o.bindings.iter().map(|b| &b.list).collect(),
    };
    let code = o.code.as_deref().map(str::trim).unwrap_or("");
    if lists.iter().any(|l| l.codes.contains(code)) {
        return None;
    }
    // The code itself is document content (it could be anything a client put there): not shown.
    finding(format!(
        "Element '{}': the code is not in code list {uri} version {}",
        o.path,
        versions.join(", ")
    ))
}

/// Line and column of increasing byte offsets, counted incrementally, so that positioning
/// every governed element of a large document stays linear.
#[derive(Default)]
struct Cursor {
    offset: usize,
    line: u32,
    /// Characters between the start of the current line and `offset`.
    column: u32,
}

impl Cursor {
    /// 1-based line and column (in characters, as libxml2 counts) of `pos`, which must not be
    /// before the previous one.
    fn advance(&mut self, xml: &[u8], pos: usize) -> (u32, u32) {
        let pos = pos.min(xml.len()).max(self.offset);
        for b in &xml[self.offset..pos] {
            if *b == b'\n' {
                self.line += 1;
                self.column = 0;
            } else if b & 0xC0 != 0x80 {
                self.column += 1;
            }
        }
        self.offset = pos;
        (self.line + 1, self.column + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GC: &str = r#"<?xml version="1.0"?>
<gc:CodeList xmlns:gc="http://docs.oasis-open.org/codelist/ns/genericode/1.0/">
  <Identification><ShortName>farbe</ShortName><Version>2.0</Version>
    <CanonicalUri>urn:test:farbe</CanonicalUri></Identification>
  <ColumnSet>
    <Column Id="name"/><Column Id="schluessel"/>
    <Key Id="k"><ColumnRef Ref="schluessel"/></Key>
  </ColumnSet>
  <SimpleCodeList>
    <Row><Value ColumnRef="name"><SimpleValue>rot</SimpleValue></Value>
         <Value ColumnRef="schluessel"><SimpleValue>01</SimpleValue></Value></Row>
    <Row><Value ColumnRef="name"><SimpleValue>gr&#252;n</SimpleValue></Value>
         <Value ColumnRef="schluessel"><SimpleValue> 02 </SimpleValue></Value></Row>
  </SimpleCodeList>
</gc:CodeList>"#;

    fn binding(elements: &[&str]) -> CodeListBinding {
        CodeListBinding {
            list: CodeList::parse(GC.as_bytes(), None).unwrap(),
            elements: elements.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn reads_the_key_column() {
        let l = CodeList::parse(GC.as_bytes(), None).unwrap();
        assert_eq!((l.uri.as_str(), l.version.as_str()), ("urn:test:farbe", "2.0"));
        assert_eq!(l.codes, HashSet::from(["01".to_string(), "02".to_string()]));
        let by_name = CodeList::parse(GC.as_bytes(), Some("name")).unwrap();
        assert!(by_name.codes.contains("grün"));
        assert!(CodeList::parse(b"<CodeList/>", None).is_err());
    }

    #[test]
    fn finds_codes_outside_the_list_and_unpinned_versions_with_positions() {
        let doc = "<m>\n  <kopf><farbe><code>01</code></farbe></kopf>\n  <kopf><farbe listVersionID=\"1.0\"><code>01</code></farbe></kopf>\n  <kopf><farbe><code>07</code></farbe></kopf>\n  <x listURI=\"urn:test:farbe\"><code>09</code></x>\n</m>";
        let by_path = check(doc.as_bytes(), &[binding(&["kopf/farbe"])]);
        assert_eq!(by_path.len(), 2, "{by_path:?}");
        assert_eq!((by_path[0].line, by_path[0].column), (3, 9));
        assert!(
            by_path[0].message.contains("the listVersionID is not a pinned version")
                && !by_path[0].message.contains("1.0"),
            "{}",
            by_path[0].message
        );
        assert!(by_path[0].message.contains("allowed: 2.0"));
        assert_eq!((by_path[1].line, by_path[1].column), (4, 9));
        assert!(by_path[1].message.contains("the code is not in code list") && !by_path[1].message.contains("07"));
        let by_uri = check(doc.as_bytes(), &[binding(&[])]);
        assert_eq!(by_uri.len(), 1, "{by_uri:?}");
        assert_eq!((by_uri[0].line, by_uri[0].message.contains("09")), (5, false));
    }
}
