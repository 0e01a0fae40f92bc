//! Parsing into libxml2's DOM for the security layer, and small helpers over it.
//!
//! Input passes the same pre-scan as every other document (no DOCTYPE, no entities, limits)
//! before libxml2 sees it, and libxml2 parses without network and without DTD defaults.

use libxml::parser::Parser;
use libxml::tree::{Document, Node};

use super::profile::XML_NS;
use crate::problem::{Code, Problem};
use crate::xml::prescan::{Limits, prescan};

/// Parses a document for signing, verifying, encrypting or decrypting.
pub fn parse(xml: &[u8], limits: &Limits) -> Result<Document, Problem> {
    prescan(xml, limits)?;
    crate::xml::libxml::init();
    let options = crate::xml::parser_options();
    Parser::default()
        .parse_string_with_options(xml, options)
        .map_err(|_| Problem::new(Code::NotWellFormed, "the document is not well-formed XML"))
}

/// The element's namespace URI.
pub fn ns(node: &Node) -> Option<String> {
    node.get_namespace().map(|n| n.get_href())
}

pub fn is(node: &Node, namespace: &str, local: &str) -> bool {
    node.is_element_node() && node.get_name() == local && ns(node).as_deref() == Some(namespace)
}

/// Element children.
pub fn elements(node: &Node) -> Vec<Node> {
    node.get_child_elements()
}

/// Every element of the subtree, in document order, the node itself first.
pub fn walk(node: &Node, visit: &mut dyn FnMut(&Node)) {
    if node.is_element_node() {
        visit(node);
    }
    let mut child = node.get_first_child();
    while let Some(c) = child {
        if c.is_element_node() {
            walk(&c, visit);
        }
        child = c.get_next_sibling();
    }
}

/// The one child element `namespace:local`, or an error naming what is missing or repeated.
pub fn one_child(parent: &Node, namespace: &str, local: &str) -> Result<Node, Problem> {
    let mut found = elements(parent).into_iter().filter(|c| is(c, namespace, local));
    let first = found
        .next()
        .ok_or_else(|| structure(format!("{} lacks {local}", parent.get_name())))?;
    if found.next().is_some() {
        return Err(structure(format!("{} has more than one {local}", parent.get_name())));
    }
    Ok(first)
}

pub fn structure(detail: impl Into<String>) -> Problem {
    Problem::new(Code::SignatureInvalid, detail)
}

/// An attribute without namespace.
pub fn attr(node: &Node, name: &str) -> Option<String> {
    node.get_attribute_no_ns(name)
}

/// The element's ID, if it has one (`Id`, `ID`, `id`, `xml:id`).
pub fn id_of(node: &Node) -> Vec<String> {
    let mut ids: Vec<String> = ["Id", "ID", "id"].iter().filter_map(|n| attr(node, n)).collect();
    if let Some(x) = node.get_attribute_ns("id", XML_NS) {
        ids.push(x);
    }
    ids
}

/// Text content with all whitespace removed (base64 values).
pub fn compact_text(node: &Node) -> String {
    node.get_content().split_ascii_whitespace().collect()
}

pub fn b64(node: &Node, what: &str, code: Code) -> Result<Vec<u8>, Problem> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(compact_text(node).as_bytes())
        .map_err(|_| Problem::new(code, format!("{what} is not base64")))
}
