//! XSLT 1.0 transforms (libxslt) for adapters that map a legacy format to a standard and back.
//!
//! The `libxslt` crate's own `Stylesheet` is not usable here (it never frees the stylesheet,
//! ignores `xsl:output` when serialising and hides the transform's messages), so this module
//! wraps its raw bindings. Security: a process-wide libxslt security policy forbids every
//! write, every network access and every file read at run time (`document()`); only the
//! stylesheet's own files are read while it compiles. A stylesheet file passes the same
//! pre-scan as messages (no DOCTYPE, so no external entities); files it includes are loaded by
//! libxslt itself, through the network-refusing entity loader. Input documents reach a
//! transform only after the pre-scan and schema validation. Not bounded: a transform's time and
//! memory (stylesheets are the operator's, not the client's); its result is bounded by the
//! intake size limit. Compiled stylesheets are read-only during
//! transforms, so one compiled copy per file is shared by all threads.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::{Arc, Mutex, Once};

use libxslt::bindings as b;

use crate::problem::{Code, Problem};

/// A compiled stylesheet.
pub struct Stylesheet {
    ptr: b::xsltStylesheetPtr,
    path: PathBuf,
}

impl std::fmt::Debug for Stylesheet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stylesheet").field("path", &self.path).finish()
    }
}

// SAFETY: libxslt treats a compiled stylesheet as read-only while transforming (each transform
// gets its own context; libxslt's own thread test shares one stylesheet across threads), and the
// pointer is freed only in Drop, when no transform can hold it.
unsafe impl Send for Stylesheet {}
unsafe impl Sync for Stylesheet {}

impl Drop for Stylesheet {
    fn drop(&mut self) {
        // SAFETY: the pointer came from xsltParseStylesheetDoc and is freed exactly once.
        unsafe { b::xsltFreeStylesheet(self.ptr) }
    }
}

/// Read-file policy: allowed while a stylesheet compiles (`ctxt` is null: its own file and
/// local `xsl:include`s), refused while it runs (`document()`).
unsafe extern "C" fn read_file_check(
    _sec: b::xsltSecurityPrefsPtr,
    ctxt: b::xsltTransformContextPtr,
    _path: *const c_char,
) -> c_int {
    ctxt.is_null() as c_int
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        super::libxml::init();
        // SAFETY: plain libxslt API calls, once, before any stylesheet is compiled. The prefs
        // object lives for the process (it becomes the default for every transform).
        unsafe {
            let sec = b::xsltNewSecurityPrefs();
            b::xsltSetSecurityPrefs(sec, b::xsltSecurityOption_XSLT_SECPREF_READ_FILE, Some(read_file_check));
            for option in [
                b::xsltSecurityOption_XSLT_SECPREF_WRITE_FILE,
                b::xsltSecurityOption_XSLT_SECPREF_CREATE_DIRECTORY,
                b::xsltSecurityOption_XSLT_SECPREF_READ_NETWORK,
                b::xsltSecurityOption_XSLT_SECPREF_WRITE_NETWORK,
            ] {
                b::xsltSetSecurityPrefs(sec, option, Some(b::xsltSecurityForbid));
            }
            b::xsltSetDefaultSecurityPrefs(sec);
        }
    });
}

impl Stylesheet {
    /// Compiles a stylesheet file (which must pass the message pre-scan: no DOCTYPE).
    pub fn compile(path: &Path) -> Result<Stylesheet, String> {
        init();
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        crate::xml::prescan::prescan(&bytes, &crate::xml::prescan::Limits::default())
            .map_err(|p| format!("stylesheet {}: {}", path.display(), p.detail))?;
        let url = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        let options = (b::xmlParserOption_XML_PARSE_NONET | b::xmlParserOption_XML_PARSE_NOCDATA) as c_int;
        // SAFETY: the buffer and URL outlive the call; on success the stylesheet owns `doc`.
        unsafe {
            let doc = b::xmlReadMemory(
                bytes.as_ptr() as *const c_char,
                bytes.len() as c_int,
                url.as_ptr(),
                null(),
                options,
            );
            if doc.is_null() {
                return Err(format!("stylesheet {} is not well-formed", path.display()));
            }
            let ptr = b::xsltParseStylesheetDoc(doc);
            if ptr.is_null() {
                b::xmlFreeDoc(doc);
                return Err(format!(
                    "stylesheet {} does not compile (is it XSLT 1.0?)",
                    path.display()
                ));
            }
            Ok(Stylesheet {
                ptr,
                path: path.to_path_buf(),
            })
        }
    }

    /// Applies the stylesheet to a document that passed the pre-scan; returns the serialised
    /// result (per `xsl:output`, which must be UTF-8) or the transform's messages.
    pub fn apply(&self, xml: &[u8]) -> Result<Vec<u8>, String> {
        // Transforms run on blocking threads: keep libxml2's generic error output (which can
        // quote content) off stderr there too.
        super::libxml::silence_generic_errors();
        let text = std::str::from_utf8(xml).map_err(|_| "the document is not UTF-8".to_owned())?;
        let doc = libxml::parser::Parser::default()
            .parse_string_with_options(text, super::parser_options())
            .map_err(|e| format!("the document cannot be parsed for the transform: {e}"))?;
        // SAFETY: `doc` lives until the end of this function; the context, the message stream
        // and the result are freed on every path below.
        unsafe {
            let ctxt = b::xsltNewTransformContext(self.ptr, doc.doc_ptr());
            if ctxt.is_null() {
                return Err("cannot create a transform context".into());
            }
            // Messages (xsl:message, run-time errors) go to an in-memory stream. libxslt calls
            // its error handler as a variadic C function: fprintf is exactly that.
            let (mut buf, mut len): (*mut c_char, libc::size_t) = (null_mut(), 0);
            let stream = libc::open_memstream(&mut buf, &mut len);
            if !stream.is_null() {
                type Printf = unsafe extern "C" fn(*mut libc::FILE, *const c_char, ...) -> c_int;
                type Handler = unsafe extern "C" fn(*mut c_void, *const c_char, ...);
                let printf: Printf = libc::fprintf;
                b::xsltSetTransformErrorFunc(
                    ctxt,
                    stream as *mut c_void,
                    Some(std::mem::transmute::<Printf, Handler>(printf)),
                );
            }
            let mut params = [null::<c_char>()];
            let result =
                b::xsltApplyStylesheetUser(self.ptr, doc.doc_ptr(), params.as_mut_ptr(), null(), null_mut(), ctxt);
            let ok = (*ctxt).state == b::xsltTransformState_XSLT_STATE_OK;
            b::xsltFreeTransformContext(ctxt);
            let mut messages = String::new();
            if !stream.is_null() {
                libc::fclose(stream);
                if !buf.is_null() {
                    messages = String::from_utf8_lossy(std::slice::from_raw_parts(buf as *const u8, len)).into_owned();
                    libc::free(buf as *mut c_void);
                }
            }
            if result.is_null() || !ok {
                if !result.is_null() {
                    b::xmlFreeDoc(result);
                }
                let messages = messages.trim();
                return Err(if messages.is_empty() {
                    "the transform failed".into()
                } else {
                    messages.to_owned()
                });
            }
            let (mut out, mut out_len): (*mut b::xmlChar, c_int) = (null_mut(), 0);
            let rc = b::xsltSaveResultToString(&mut out, &mut out_len, result, self.ptr);
            b::xmlFreeDoc(result);
            if rc < 0 {
                return Err("the transform's result cannot be serialised".into());
            }
            if out.is_null() {
                return Ok(Vec::new());
            }
            let bytes = std::slice::from_raw_parts(out, out_len as usize).to_vec();
            if let Some(free) = b::xmlFree {
                free(out as *mut c_void);
            }
            Ok(bytes)
        }
    }
}

/// Compiled stylesheets by path, compiled on first use and kept for the process.
fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<Stylesheet>>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<PathBuf, Arc<Stylesheet>>>> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The compiled stylesheet at `path` (compiled once).
pub fn stylesheet(path: &Path) -> Result<Arc<Stylesheet>, String> {
    if let Some(s) = cache().lock().unwrap_or_else(|e| e.into_inner()).get(path) {
        return Ok(s.clone());
    }
    let compiled = Arc::new(Stylesheet::compile(path)?);
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), compiled.clone());
    Ok(compiled)
}

/// Most of a transform's messages a problem carries.
const MAX_MESSAGES: usize = 2048;

/// Transforms a document with the stylesheet at `path`; a failure is a `transform-failed`
/// problem naming the adapter and the stylesheet's messages (which come from the stylesheet,
/// never from the document's content, unless the stylesheet quotes it; at most 2 KiB).
pub fn transform(adapter: &str, path: &Path, xml: &[u8]) -> Result<Vec<u8>, Problem> {
    transform_bounded(adapter, path, xml, usize::MAX)
}

/// [`transform`] whose result may not exceed `max_bytes` (the intake size limit: a result
/// is checked like any input, and must not be larger than one).
pub fn transform_bounded(adapter: &str, path: &Path, xml: &[u8], max_bytes: usize) -> Result<Vec<u8>, Problem> {
    let fail = |why: String| {
        let mut why = why;
        if why.len() > MAX_MESSAGES {
            let mut cut = MAX_MESSAGES;
            while !why.is_char_boundary(cut) {
                cut -= 1;
            }
            why.truncate(cut);
            why.push_str(" …");
        }
        Problem::new(Code::TransformFailed, format!("adapter {adapter}: {why}"))
    };
    let sheet = stylesheet(path).map_err(fail)?;
    let out = sheet.apply(xml).map_err(fail)?;
    if out.len() > max_bytes {
        return Err(fail(format!(
            "the transform's result ({} bytes) exceeds the size limit of {max_bytes} bytes",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const HEAD: &str = r#"<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
<xsl:output method="xml" encoding="UTF-8" indent="no"/>"#;

    #[test]
    fn transforms_and_reports_terminating_messages() {
        let dir = tempfile::tempdir().unwrap();
        let sheet = write(
            dir.path(),
            "t.xsl",
            &format!(
                r#"{HEAD}<xsl:template match="/in">
  <xsl:if test="not(name)"><xsl:message terminate="yes">field name is missing</xsl:message></xsl:if>
  <out><xsl:value-of select="name"/></out></xsl:template></xsl:stylesheet>"#
            ),
        );
        let out = transform("t", &sheet, "<in><name>Müller</name></in>".as_bytes()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.trim_end().ends_with("<out>Müller</out>"), "{out}");
        let err = transform("t", &sheet, b"<in/>").unwrap_err();
        assert_eq!(err.code, Code::TransformFailed);
        assert!(err.detail.contains("field name is missing"), "{}", err.detail);
    }

    #[test]
    fn refuses_reading_files_and_network_at_run_time() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(dir.path(), "secret.xml", "<s>TOPSECRET</s>");
        for target in [
            format!("file://{}", secret.display()),
            "http://127.0.0.1:9/x.xml".into(),
        ] {
            let sheet = write(
                dir.path(),
                "read.xsl",
                &format!(
                    r#"{HEAD}<xsl:template match="/"><r><xsl:value-of select="document('{target}')"/></r></xsl:template></xsl:stylesheet>"#
                ),
            );
            let sheet = Stylesheet::compile(&sheet).unwrap();
            let result = sheet.apply(b"<in/>");
            let leaked = result
                .as_ref()
                .is_ok_and(|o| String::from_utf8_lossy(o).contains("TOPSECRET"));
            assert!(!leaked && result.is_err(), "{target}: {result:?}");
        }
        let doctype = write(
            dir.path(),
            "dt.xsl",
            &format!(
                "<!DOCTYPE x [<!ENTITY e SYSTEM \"{}\">]>{HEAD}</xsl:stylesheet>",
                secret.display()
            ),
        );
        assert!(Stylesheet::compile(&doctype).is_err());
    }
}
