//! OASIS XML catalogs: the only way a remote `schemaLocation` becomes a file.
//!
//! Supports the entries XÖV schema sets need (`uri`, `system`, `rewriteURI`, `rewriteSystem`,
//! `nextCatalog`). Relative targets resolve against the catalog file's folder. Parsed with
//! quick-xml, not libxml2, so that loading a catalog cannot itself fetch anything.

use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// A merged view of one or more catalog files.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    exact: Vec<(String, PathBuf)>,
    rewrites: Vec<(String, PathBuf)>,
}

/// Most catalogs followed through `nextCatalog`, against loops.
const MAX_CATALOGS: usize = 32;

impl Catalog {
    /// Loads catalog files (and the catalogs they chain to).
    pub fn load(files: &[PathBuf]) -> Result<Catalog, String> {
        let mut cat = Catalog::default();
        let mut todo: Vec<PathBuf> = files.to_vec();
        let mut seen = Vec::new();
        while let Some(file) = todo.pop() {
            if seen.contains(&file) {
                continue;
            }
            if seen.len() >= MAX_CATALOGS {
                return Err(format!("more than {MAX_CATALOGS} chained catalogs"));
            }
            seen.push(file.clone());
            let next = cat.load_one(&file)?;
            todo.extend(next);
        }
        Ok(cat)
    }

    fn load_one(&mut self, file: &Path) -> Result<Vec<PathBuf>, String> {
        let text = std::fs::read(file).map_err(|e| format!("catalog {}: {e}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let mut reader = Reader::from_reader(text.as_slice());
        let mut next = Vec::new();
        loop {
            let ev = reader
                .read_event()
                .map_err(|e| format!("catalog {}: {e}", file.display()))?;
            match ev {
                Event::DocType(_) => return Err(format!("catalog {}: DOCTYPE not allowed", file.display())),
                Event::Start(e) | Event::Empty(e) => {
                    let attr = |name: &[u8]| -> Option<String> {
                        e.attributes()
                            .flatten()
                            .find(|a| a.key.local_name().as_ref() == name)
                            .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                    };
                    match e.local_name().as_ref() {
                        b"uri" => {
                            if let (Some(n), Some(u)) = (attr(b"name"), attr(b"uri")) {
                                self.exact.push((n, base.join(u)));
                            }
                        }
                        b"system" => {
                            if let (Some(n), Some(u)) = (attr(b"systemId"), attr(b"uri")) {
                                self.exact.push((n, base.join(u)));
                            }
                        }
                        b"rewriteURI" => {
                            if let (Some(n), Some(u)) = (attr(b"uriStartString"), attr(b"rewritePrefix")) {
                                self.rewrites.push((n, base.join(u)));
                            }
                        }
                        b"rewriteSystem" => {
                            if let (Some(n), Some(u)) = (attr(b"systemIdStartString"), attr(b"rewritePrefix")) {
                                self.rewrites.push((n, base.join(u)));
                            }
                        }
                        b"nextCatalog" => {
                            if let Some(c) = attr(b"catalog") {
                                next.push(base.join(c));
                            }
                        }
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(next)
    }

    /// The local file for a remote URL, if the catalog maps it. Longest rewrite prefix wins.
    pub fn resolve(&self, url: &str) -> Option<PathBuf> {
        if let Some((_, p)) = self.exact.iter().find(|(n, _)| n == url) {
            return Some(p.clone());
        }
        self.rewrites
            .iter()
            .filter(|(prefix, _)| url.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(prefix, target)| target.join(&url[prefix.len()..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_exact_and_rewritten_urls_relative_to_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("catalog.xml"),
            r#"<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
                 <uri name="http://x.de/a.xsd" uri="local/a.xsd"/>
                 <rewriteURI uriStartString="http://x.de/lib/" rewritePrefix="lib/"/>
                 <nextCatalog catalog="more.xml"/>
               </catalog>"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("more.xml"),
            r#"<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
                 <system systemId="http://y.de/b.xsd" uri="b.xsd"/></catalog>"#,
        )
        .unwrap();
        let c = Catalog::load(&[dir.path().join("catalog.xml")]).unwrap();
        assert_eq!(c.resolve("http://x.de/a.xsd"), Some(dir.path().join("local/a.xsd")));
        assert_eq!(
            c.resolve("http://x.de/lib/c/d.xsd"),
            Some(dir.path().join("lib/c/d.xsd"))
        );
        assert_eq!(c.resolve("http://y.de/b.xsd"), Some(dir.path().join("b.xsd")));
        assert_eq!(c.resolve("http://z.de/"), None);
    }
}
