//! The libxml2 boundary: the one module with `unsafe`, kept to what the `libxml` crate does not wrap.
//!
//! It installs a process-wide external-entity loader that never touches the network. Every file
//! libxml2 wants while compiling a schema (the entry file, `xs:import`, `xs:include`) passes
//! through [`entity_loader`]: local paths are served; `http(s)`/`ftp` URLs are served only when
//! the calling thread's XML catalog maps them to a local file, and are otherwise refused and
//! remembered, so that the compile error can name the unresolved URL. The catalog is per thread
//! because libxml2 objects are not `Send` and each validation thread compiles its own schemas.

#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::sync::OnceLock;

use libxml::bindings;

use super::catalog::Catalog;

thread_local! {
    /// The catalog used by this thread's schema compiles.
    static CATALOG: RefCell<Catalog> = RefCell::new(Catalog::default());
    /// URLs refused by the loader on this thread since the last [`take_refused`].
    static REFUSED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// libxml2's own loader, used for local files once we have decided they may be read.
static DEFAULT_LOADER: OnceLock<usize> = OnceLock::new();

/// Initialises libxml2 and installs the loader. Idempotent; call before the first parse.
pub fn init() {
    DEFAULT_LOADER.get_or_init(|| {
        libxml::init_parser();
        // SAFETY: called once, under OnceLock, before any parse that uses the loader; the
        // previous loader is a plain function pointer that stays valid for the process.
        unsafe {
            let previous = bindings::xmlGetExternalEntityLoader();
            bindings::xmlSetExternalEntityLoader(Some(entity_loader));
            previous.map_or(0, |f| f as usize)
        }
    });
    silence_generic_errors();
}

/// Stops libxml2 from printing diagnostics to stderr on this thread: they can quote message
/// content, and every diagnostic we need reaches us through structured error handlers.
pub fn silence_generic_errors() {
    unsafe extern "C" fn ignore(_ctx: *mut std::ffi::c_void, _msg: *const c_char) {}
    type Variadic = unsafe extern "C" fn(*mut std::ffi::c_void, *const c_char, ...);
    type Fixed = unsafe extern "C" fn(*mut std::ffi::c_void, *const c_char);
    // SAFETY: sets this thread's generic error callback to a function that ignores its input.
    // libxml2 calls it as a variadic C function; in the C ABI the callee may ignore the variadic
    // arguments, so a non-variadic function that reads only the fixed ones is sound to call so.
    unsafe {
        let f: Fixed = ignore;
        bindings::xmlSetGenericErrorFunc(std::ptr::null_mut(), Some(std::mem::transmute::<Fixed, Variadic>(f)));
    }
}

/// Sets the catalog for schema compiles on this thread.
pub fn set_catalog(catalog: Catalog) {
    CATALOG.with(|c| *c.borrow_mut() = catalog);
}

/// The URLs the loader refused on this thread since the last call.
pub fn take_refused() -> Vec<String> {
    REFUSED.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

fn is_remote(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("ftp://")
}

/// Decides what a URL may be served as: a local path, or refusal.
fn local_target(url: &str) -> Option<String> {
    if is_remote(url) {
        return CATALOG
            .with(|c| c.borrow().resolve(url))
            .map(|p| p.to_string_lossy().into_owned());
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(rest.to_owned());
    }
    // Any other scheme (`jar:`, `gopher:` …) is refused; plain paths are local files.
    match url.split_once(':') {
        Some((scheme, _)) if scheme.len() > 1 && scheme.bytes().all(|b| b.is_ascii_alphabetic()) => None,
        _ => Some(url.to_owned()),
    }
}

unsafe extern "C" fn entity_loader(
    url: *const c_char,
    id: *const c_char,
    ctxt: bindings::xmlParserCtxtPtr,
) -> bindings::xmlParserInputPtr {
    if url.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: libxml2 passes a NUL-terminated string that lives for the duration of the call.
    let url_str = unsafe { CStr::from_ptr(url) }.to_string_lossy().into_owned();
    let Some(path) = local_target(&url_str) else {
        REFUSED.with(|r| r.borrow_mut().push(url_str));
        return std::ptr::null_mut();
    };
    let Ok(path_c) = CString::new(path) else {
        return std::ptr::null_mut();
    };
    match DEFAULT_LOADER.get().copied() {
        Some(f) if f != 0 => {
            // SAFETY: `f` is the loader libxml2 had installed before ours (saved in `init`);
            // it is called with a local path only, so it reads a file and never the network.
            let loader: unsafe extern "C" fn(
                *const c_char,
                *const c_char,
                bindings::xmlParserCtxtPtr,
            ) -> bindings::xmlParserInputPtr = unsafe { std::mem::transmute::<usize, _>(f) };
            unsafe { loader(path_c.as_ptr(), id, ctxt) }
        }
        // SAFETY: plain libxml2 API call with a valid context and a NUL-terminated path.
        _ => unsafe { bindings::xmlNewInputFromFile(ctxt, path_c.as_ptr()) },
    }
}

/// What [`c14n`] renders: the subtree at `apex` (or the whole document), minus the subtree at
/// `exclude` (the enveloped-signature transform). Comments are never rendered.
pub struct C14nInput<'a> {
    pub doc: &'a libxml::tree::Document,
    pub apex: Option<&'a libxml::tree::Node>,
    pub exclude: Option<&'a libxml::tree::Node>,
    /// Exclusive C14N 1.0 (with these InclusiveNamespaces prefixes) or, when false, inclusive C14N 1.0.
    pub exclusive: bool,
    pub inclusive_prefixes: &'a [String],
}

struct Visibility {
    apex: bindings::xmlNodePtr,
    exclude: bindings::xmlNodePtr,
}

const XML_NAMESPACE_DECL: u32 = 18;

unsafe extern "C" fn visible(
    data: *mut std::ffi::c_void,
    node: bindings::xmlNodePtr,
    parent: bindings::xmlNodePtr,
) -> std::ffi::c_int {
    // SAFETY: `data` is the `Visibility` that `c14n` passes and keeps alive for the whole call;
    // `node` and `parent` are nodes of the document being canonicalised. Namespace nodes
    // (`xmlNs`) have no parent field, so their element (`parent`) stands for them; every other
    // node type starts with the common `xmlNode` header whose `parent` field we follow.
    unsafe {
        let v = &*(data as *const Visibility);
        let mut n = if node.is_null() || (*node).type_ == XML_NAMESPACE_DECL {
            parent
        } else {
            node
        };
        let mut inside = v.apex.is_null();
        while !n.is_null() {
            if n == v.exclude {
                return 0;
            }
            if n == v.apex {
                inside = true;
            }
            n = (*n).parent;
        }
        inside as std::ffi::c_int
    }
}

/// libxml2's canonicalisation failed (it reports no detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct C14nFailed;

/// Canonical form (UTF-8 bytes) of a node set of a parsed document, with libxml2's C14N.
pub fn c14n(input: &C14nInput<'_>) -> Result<Vec<u8>, C14nFailed> {
    let prefixes: Vec<CString> = input
        .inclusive_prefixes
        .iter()
        .map(|p| CString::new(p.as_str()).map_err(|_| C14nFailed))
        .collect::<Result<_, _>>()?;
    let mut prefix_ptrs: Vec<*mut bindings::xmlChar> = prefixes
        .iter()
        .map(|p| p.as_ptr() as *mut bindings::xmlChar)
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let v = Visibility {
        apex: input.apex.map_or(std::ptr::null_mut(), |n| n.node_ptr()),
        exclude: input.exclude.map_or(std::ptr::null_mut(), |n| n.node_ptr()),
    };
    let mode = if input.exclusive {
        bindings::xmlC14NMode_XML_C14N_EXCLUSIVE_1_0
    } else {
        bindings::xmlC14NMode_XML_C14N_1_0
    };
    // SAFETY: the document pointer is valid for the borrow of `input.doc`; `v`, `prefixes` and
    // `prefix_ptrs` outlive the call; the output buffer is created, read and closed here (no
    // write callback: libxml2 accumulates the whole output in its own buffer).
    unsafe {
        let buf = bindings::xmlAllocOutputBuffer(std::ptr::null_mut());
        if buf.is_null() {
            return Err(C14nFailed);
        }
        let status = bindings::xmlC14NExecute(
            input.doc.doc_ptr(),
            Some(visible),
            &v as *const Visibility as *mut std::ffi::c_void,
            mode as std::ffi::c_int,
            if input.exclusive {
                prefix_ptrs.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            },
            0,
            buf,
        );
        bindings::xmlOutputBufferFlush(buf);
        let content = bindings::xmlOutputBufferGetContent(buf);
        let size = bindings::xmlOutputBufferGetSize(buf);
        let out = if content.is_null() {
            Vec::new()
        } else {
            std::slice::from_raw_parts(content, size).to_vec()
        };
        bindings::xmlOutputBufferClose(buf);
        if status < 0 { Err(C14nFailed) } else { Ok(out) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_urls_need_the_catalog_and_other_schemes_are_refused() {
        assert_eq!(local_target("http://example.org/x.xsd"), None);
        assert_eq!(local_target("HTTPS://example.org/x.xsd"), None);
        assert_eq!(local_target("ftp://example.org/x.xsd"), None);
        assert_eq!(local_target("jar:file:/x!/y"), None);
        assert_eq!(local_target("file:///tmp/x.xsd").as_deref(), Some("/tmp/x.xsd"));
        assert_eq!(local_target("/tmp/a b/x.xsd").as_deref(), Some("/tmp/a b/x.xsd"));
        assert_eq!(local_target("rel/x.xsd").as_deref(), Some("rel/x.xsd"));
    }
}
