//! SOAP 1.2 framing for the XTA 2 ports: reading a request (plain `application/soap+xml`, or
//! MTOM/XOP: `multipart/related` with the envelope as `application/xop+xml` and binary parts
//! referenced by `xop:Include`), and writing answers (MTOM when they carry content) and faults.
//! Knows nothing about XTA's operations (`xta.rs`).
//!
//! The envelope is untrusted input like any message: it is pre-scanned (limits, no DOCTYPE or
//! entities, UTF-8) before roxmltree parses it, and parsed without DTD support.

// Faults are the cold path and carry their serialised detail; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::problem::{Code, Problem};
use crate::xml::prescan::Limits;

pub const SOAP_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const WSA_NS: &str = "http://www.w3.org/2005/08/addressing";
pub const XOP_NS: &str = "http://www.w3.org/2004/08/xop/include";
pub const PROBLEM_NS: &str = "urn:poststelle:problem";
/// WS-Addressing's anonymous address: the answer goes back on the same connection.
pub const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// A request as read off the wire: the envelope's text and the MIME parts it may refer to.
#[derive(Debug)]
pub struct Request {
    pub envelope: String,
    /// Binary parts by Content-ID (without angle brackets).
    parts: HashMap<String, Spooled>,
    /// The `action` parameter of the SOAP 1.2 media type, if given.
    pub media_action: Option<String>,
    /// Where a streamed request's binary parts were written ([`read_streamed`]); removed
    /// with the request unless an operation keeps it.
    pub upload: std::sync::Mutex<Option<crate::files::Upload>>,
    /// The largest binary part [`Request::content`] takes into memory.
    max_inline: usize,
}

/// A binary MIME part: in memory, or written to a file as it arrived.
#[derive(Debug, Clone)]
pub enum Spooled {
    Bytes(Vec<u8>),
    /// A file of the request's upload folder, with its size and SHA-256.
    File {
        path: std::path::PathBuf,
        size: u64,
        sha256: [u8; 32],
    },
}

/// A SOAP fault: what it says and how it travels (SOAP 1.2 part 2, §7.5: a Sender fault is a
/// 400, a Receiver fault a 500; HTTP-level refusals keep their own status).
#[derive(Debug, Clone)]
pub struct Fault {
    /// The HTTP status it travels with (see [`http_status`]).
    pub status: StatusCode,
    /// `env:Value` of the fault code: `Sender` (the request was wrong), `Receiver` (this node
    /// failed) or `VersionMismatch` (not a SOAP 1.2 envelope).
    pub code: &'static str,
    /// Subcode QName: namespace and local name.
    pub subcode: Option<(&'static str, String)>,
    pub reason: String,
    /// XML put into `env:Detail`, already serialised.
    pub detail: String,
    /// `wsa:Action` of the fault message: the operation's action for the faults the WSDL
    /// declares (it gives them the operation's action), WS-Addressing's fault action otherwise.
    pub action: String,
    /// The request's `wsa:MessageID`, once known.
    pub relates_to: Option<String>,
    /// Further header blocks (e.g. OSCI's `MsgBoxResponse` when the MsgBox is empty).
    pub headers: String,
    pub retry_after: Option<u32>,
}

/// WS-Addressing's action for faults it does not name otherwise.
pub const FAULT_ACTION: &str = "http://www.w3.org/2005/08/addressing/fault";

impl Fault {
    /// A fault about the SOAP message itself (before any operation is known), carrying the
    /// problem in its detail.
    pub fn from_problem(p: &Problem) -> Fault {
        let receiver = matches!(p.code, Code::Internal | Code::Overloaded);
        Fault {
            status: http_status(p, receiver),
            code: if receiver { "Receiver" } else { "Sender" },
            subcode: Some((PROBLEM_NS, p.code.as_str().to_owned())),
            reason: p.detail.clone(),
            detail: problem_xml(p),
            action: FAULT_ACTION.into(),
            relates_to: None,
            headers: String::new(),
            retry_after: p.retry_after,
        }
    }

    /// A WS-Addressing fault (`wsa:ActionNotSupported`, `wsa:MessageAddressingHeaderRequired`,
    /// …) with the detail WS-Addressing 1.0 SOAP Binding §6.4 gives it.
    pub fn addressing(subcode: &str, wsa_detail: &str, reason: impl Into<String>) -> Fault {
        let reason = reason.into();
        Fault {
            status: StatusCode::BAD_REQUEST,
            code: "Sender",
            subcode: Some((WSA_NS, subcode.to_owned())),
            detail: format!(
                "{wsa_detail}{}",
                problem_xml(&Problem::new(Code::InvalidRequest, reason.clone()))
            ),
            reason,
            action: FAULT_ACTION.into(),
            relates_to: None,
            headers: String::new(),
            retry_after: None,
        }
    }
}

/// The HTTP status of a fault for a problem: authentication, size, media type and overload
/// keep their HTTP meaning; every other client error is a Sender fault (400), every failure of
/// ours a Receiver fault (500).
pub fn http_status(p: &Problem, receiver: bool) -> StatusCode {
    match p.code {
        Code::Unauthorized => StatusCode::UNAUTHORIZED,
        Code::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        _ if receiver => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// The problem as `pst:Problem` (the same code, detail and positions as the REST API's JSON).
pub fn problem_xml(p: &Problem) -> String {
    let mut s = format!(
        "<pst:Problem xmlns:pst=\"{PROBLEM_NS}\" code=\"{}\" status=\"{}\"><pst:detail>{}</pst:detail>",
        p.code.as_str(),
        p.code.status().as_u16(),
        esc(&p.detail)
    );
    for e in &p.errors {
        s.push_str("<pst:error");
        if let Some(l) = e.line {
            s.push_str(&format!(" line=\"{l}\""));
        }
        if let Some(c) = e.column {
            s.push_str(&format!(" column=\"{c}\""));
        }
        s.push_str(&format!(">{}</pst:error>", esc(&e.message)));
    }
    s.push_str("</pst:Problem>");
    s
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        let code = format!("env:{}", self.code);
        let subcode = self
            .subcode
            .as_ref()
            .map(|(ns, local)| {
                format!("<env:Subcode><env:Value xmlns:sc=\"{ns}\">sc:{local}</env:Value></env:Subcode>")
            })
            .unwrap_or_default();
        let body = format!(
            "<env:Fault><env:Code><env:Value>{code}</env:Value>{subcode}</env:Code>\
             <env:Reason><env:Text xml:lang=\"en\">{}</env:Text></env:Reason>\
             <env:Detail>{}</env:Detail></env:Fault>",
            esc(&self.reason),
            self.detail
        );
        let mut headers = format!(
            "<wsa:Action>{}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID>",
            esc(&self.action),
            uuid::Uuid::new_v4()
        );
        if let Some(r) = &self.relates_to {
            headers.push_str(&format!("<wsa:RelatesTo>{}</wsa:RelatesTo>", esc(r)));
        }
        if self.code == "VersionMismatch" {
            headers.push_str(&format!(
                "<env:Upgrade><env:SupportedEnvelope xmlns:u=\"{SOAP_NS}\" qname=\"u:Envelope\"/></env:Upgrade>"
            ));
        }
        headers.push_str(&self.headers);
        let envelope = envelope(&headers, &body);
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
            envelope,
        )
            .into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

fn envelope(headers: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <env:Envelope xmlns:env=\"{SOAP_NS}\" xmlns:wsa=\"{WSA_NS}\">\
         <env:Header>{headers}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
    )
}

/// An answer: the WS-Addressing headers, other header blocks, the body, and the binary parts
/// the body refers to with `xop:Include` (then the answer is MTOM).
#[derive(Debug, Default)]
pub struct Answer {
    pub action: String,
    /// The request's `wsa:MessageID`.
    pub relates_to: Option<String>,
    pub headers: String,
    pub body: String,
    /// (Content-ID, media type, content).
    pub parts: Vec<(String, String, Part)>,
}

/// The content of a binary part of an MTOM answer: bytes in hand, or a file streamed from
/// disk as the answer goes out (an attachment of any size in flat memory).
#[derive(Debug)]
pub enum Part {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// `<xop:Include>` for a part with this Content-ID.
pub fn include(cid: &str) -> String {
    format!("<xop:Include xmlns:xop=\"{XOP_NS}\" href=\"cid:{}\"/>", esc(cid))
}

/// A body sent piece by piece, files read in 256 KiB chunks as the client takes them (at most
/// four chunks ahead). A file that cannot be read cuts the answer off: the client sees a
/// broken answer, never a wrong one.
fn streamed(pieces: Vec<Part>) -> axum::body::Body {
    use tokio::io::AsyncReadExt;
    type Chunk = Result<bytes::Bytes, std::io::Error>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    tokio::spawn(async move {
        for piece in pieces {
            match piece {
                Part::Bytes(b) => {
                    if tx.send(Ok(b.into())).await.is_err() {
                        return;
                    }
                }
                Part::File(path) => {
                    let mut file = match tokio::fs::File::open(&path).await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(error = %e, "an MTOM part's file cannot be read");
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    loop {
                        let mut buf = bytes::BytesMut::with_capacity(256 * 1024);
                        match file.read_buf(&mut buf).await {
                            Ok(0) => break,
                            Ok(_) => {
                                if tx.send(Ok(buf.freeze())).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    }
                }
            }
        }
    });
    axum::body::Body::from_stream(futures_lite::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }))
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut headers = format!("<wsa:Action>{}</wsa:Action>", esc(&self.action));
        headers.push_str(&format!(
            "<wsa:MessageID>urn:uuid:{}</wsa:MessageID>",
            uuid::Uuid::new_v4()
        ));
        if let Some(r) = &self.relates_to {
            headers.push_str(&format!("<wsa:RelatesTo>{}</wsa:RelatesTo>", esc(r)));
        }
        headers.push_str(&format!("<wsa:To>{ANONYMOUS}</wsa:To>"));
        headers.push_str(&self.headers);
        let xml = envelope(&headers, &self.body);
        if self.parts.is_empty() {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8".to_owned())],
                xml,
            )
                .into_response();
        }
        let boundary = format!("MIMEBoundary_{}", uuid::Uuid::new_v4().simple());
        let root = "root.message@poststelle";
        let ct = format!(
            "multipart/related; type=\"application/xop+xml\"; boundary=\"{boundary}\"; start=\"<{root}>\"; start-info=\"application/soap+xml\""
        );
        let mut head = format!(
            "--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n\
             Content-Transfer-Encoding: binary\r\nContent-ID: <{root}>\r\n\r\n"
        )
        .into_bytes();
        head.extend_from_slice(xml.as_bytes());
        // Each piece in order: the envelope, then per part its MIME header and its content.
        let mut pieces = vec![Part::Bytes(head)];
        for (cid, media, content) in self.parts {
            pieces.push(Part::Bytes(
                format!(
                    "\r\n--{boundary}\r\nContent-Type: {media}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
                )
                .into_bytes(),
            ));
            pieces.push(content);
        }
        pieces.push(Part::Bytes(format!("\r\n--{boundary}--\r\n").into_bytes()));
        if pieces.iter().all(|p| matches!(p, Part::Bytes(_))) {
            let out: Vec<u8> = pieces
                .into_iter()
                .flat_map(|p| match p {
                    Part::Bytes(b) => b,
                    Part::File(_) => Vec::new(),
                })
                .collect();
            return (StatusCode::OK, [(header::CONTENT_TYPE, ct)], out).into_response();
        }
        (StatusCode::OK, [(header::CONTENT_TYPE, ct)], streamed(pieces)).into_response()
    }
}

/// A media type and its parameters (names lower-cased, quotes removed).
fn media_type(value: &str) -> (String, HashMap<String, String>) {
    let mut parts = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for ch in value.chars() {
        match ch {
            '"' => quoted = !quoted,
            ';' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mime = parts[0].trim().to_ascii_lowercase();
    let params = parts[1..]
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (mime, params)
}

fn bad(code: Code, detail: impl Into<String>) -> Fault {
    Fault::from_problem(&Problem::new(code, detail))
}

/// Reads a request body of the given media type: plain SOAP 1.2, or MTOM/XOP.
pub fn read(content_type: &str, body: &[u8]) -> Result<Request, Fault> {
    let (mime, params) = media_type(content_type);
    match mime.as_str() {
        "application/soap+xml" => Ok(Request {
            envelope: utf8(body.to_vec())?,
            parts: HashMap::new(),
            media_action: params.get("action").cloned(),
            upload: std::sync::Mutex::new(None),
            max_inline: usize::MAX,
        }),
        "multipart/related" => read_mtom(&params, body),
        "text/xml" => Err(bad(
            Code::UnsupportedMediaType,
            "text/xml is SOAP 1.1; the XTA 2 ports speak SOAP 1.2 (application/soap+xml)",
        )),
        other => Err(bad(
            Code::UnsupportedMediaType,
            format!("Content-Type {other} is neither application/soap+xml nor multipart/related (MTOM)"),
        )),
    }
}

fn utf8(bytes: Vec<u8>) -> Result<String, Fault> {
    String::from_utf8(bytes).map_err(|_| bad(Code::UnsupportedEncoding, "the SOAP envelope is not UTF-8"))
}

fn read_mtom(params: &HashMap<String, String>, body: &[u8]) -> Result<Request, Fault> {
    let boundary = params
        .get("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| bad(Code::InvalidRequest, "multipart/related without a boundary"))?;
    let start = params.get("start").map(|s| s.trim_matches(['<', '>']).to_owned());
    // RFC 2046 §5.1.1: a delimiter is CRLF "--" boundary (the first may open the body), so
    // "--boundary" inside a part's bytes, not at a line start, is content.
    let dash = format!("--{boundary}");
    let mut positions: Vec<usize> = Vec::new();
    if body.starts_with(dash.as_bytes()) {
        positions.push(0);
    }
    let line_delimiter = format!("\r\n{dash}");
    let finder = memchr::memmem::Finder::new(line_delimiter.as_bytes());
    positions.extend(finder.find_iter(body).map(|p| p + 2));
    if positions.len() < 2 {
        return Err(bad(Code::InvalidRequest, "the multipart body has no complete part"));
    }
    let mut root: Option<(Vec<u8>, Option<String>)> = None;
    let mut parts = HashMap::new();
    for w in positions.windows(2) {
        // From after this delimiter to the CRLF that starts the next one.
        let mut part = body
            .get(w[0] + dash.len()..w[1] - 2)
            .ok_or_else(|| bad(Code::InvalidRequest, "the multipart delimiters overlap"))?;
        if part.starts_with(b"--") {
            break;
        }
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let split = memchr::memmem::find(part, b"\r\n\r\n")
            .ok_or_else(|| bad(Code::InvalidRequest, "a MIME part has no header end"))?;
        let head = std::str::from_utf8(&part[..split])
            .map_err(|_| bad(Code::InvalidRequest, "a MIME part header is not text"))?;
        let mut content = part[split + 4..].to_vec();
        let (mut id, mut media, mut encoding) = (None, String::new(), String::new());
        for line in head.lines() {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-id" => id = Some(v.trim().trim_matches(['<', '>']).to_owned()),
                    "content-type" => media = v.trim().to_owned(),
                    "content-transfer-encoding" => encoding = v.trim().to_ascii_lowercase(),
                    _ => {}
                }
            }
        }
        content = decoded(&encoding, content)?;
        if is_root(start.as_deref(), id.as_deref(), root.is_some()) {
            root = Some(root_part(&media, content)?);
        } else if let Some(id) = id {
            parts.insert(id, Spooled::Bytes(content));
        }
    }
    assembled(root, parts, params, None, usize::MAX)
}

/// A multipart request from its root part (envelope and action), its other parts, the
/// multipart type's parameters and the folder its spooled parts are in.
fn assembled(
    root: Option<(Vec<u8>, Option<String>)>,
    parts: HashMap<String, Spooled>,
    params: &HashMap<String, String>,
    upload: Option<crate::files::Upload>,
    max_inline: usize,
) -> Result<Request, Fault> {
    let (envelope, root_action) =
        root.ok_or_else(|| bad(Code::InvalidRequest, "the multipart body has no root part"))?;
    Ok(Request {
        envelope: utf8(envelope)?,
        parts,
        // Stacks put the action on the root part's type or on the outer multipart type.
        media_action: root_action.or_else(|| params.get("action").cloned()),
        upload: std::sync::Mutex::new(upload),
        max_inline,
    })
}

/// Whether a part is the root: the one `start` names, else the first.
fn is_root(start: Option<&str>, id: Option<&str>, root_seen: bool) -> bool {
    match (start, id) {
        (Some(s), Some(i)) => s == i,
        (None, _) => !root_seen,
        _ => false,
    }
}

/// A part's content after its `Content-Transfer-Encoding`.
fn decoded(encoding: &str, content: Vec<u8>) -> Result<Vec<u8>, Fault> {
    match encoding {
        "" | "binary" | "8bit" | "7bit" => Ok(content),
        "base64" => {
            let text: Vec<u8> = content.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
            B64.decode(text)
                .map_err(|_| bad(Code::InvalidRequest, "a base64 MIME part does not decode"))
        }
        other => Err(bad(
            Code::InvalidRequest,
            format!("Content-Transfer-Encoding {other} is not supported"),
        )),
    }
}

/// The root part: the envelope and the `action` of its media type.
fn root_part(media: &str, content: Vec<u8>) -> Result<(Vec<u8>, Option<String>), Fault> {
    let (m, p) = media_type(media);
    if m != "application/xop+xml" && m != "application/soap+xml" {
        return Err(bad(
            Code::UnsupportedMediaType,
            format!("the root part is {m}, not application/xop+xml"),
        ));
    }
    Ok((content, p.get("action").cloned()))
}

/// Bounds of a streamed MTOM request ([`read_streamed`]).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// The root part (the SOAP envelope) and any part not sent in binary.
    pub root: usize,
    /// Each binary part, written to a file.
    pub part: u64,
    /// Parts besides the root in all.
    pub parts: usize,
    /// The longest wait for the next piece of the body.
    pub idle: std::time::Duration,
}

/// Reads an MTOM request (`multipart/related`) as a stream: the root part into memory, every
/// binary part into a file of a new upload folder as it arrives (hashed, fsynced), so that
/// attachments of any size pass in flat memory. Other media types are read whole ([`read`]).
pub async fn read_streamed(
    content_type: &str,
    body: axum::body::Body,
    files: &crate::files::Files,
    limits: StreamLimits,
) -> Result<Request, Fault> {
    let (mime, params) = media_type(content_type);
    if mime != "multipart/related" {
        return Err(bad(
            Code::UnsupportedMediaType,
            format!("{mime} is not MTOM (multipart/related)"),
        ));
    }
    let boundary = params
        .get("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| bad(Code::InvalidRequest, "multipart/related without a boundary"))?;
    let start = params.get("start").map(|s| s.trim_matches(['<', '>']).to_owned());
    let mut form = multer::Multipart::new(body.into_data_stream(), boundary.clone());
    let stalled = || bad(Code::RequestTimeout, "the body stalled");
    let broken = |e: multer::Error| bad(Code::InvalidRequest, format!("malformed multipart body: {e}"));
    let (mut root, mut parts, mut upload) = (None, HashMap::new(), None);
    // Parts besides the root so far; what is held in memory (the envelope and base64 parts)
    // counts against one bound.
    let (mut seen, mut in_memory) = (0usize, 0usize);
    while let Some(mut field) = tokio::time::timeout(limits.idle, form.next_field())
        .await
        .map_err(|_| stalled())?
        .map_err(broken)?
    {
        let header = |name: &str| field.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let id = header("content-id").map(|v| v.trim_matches(['<', '>']).to_owned());
        let media = header("content-type").unwrap_or_default().to_owned();
        let encoding = header("content-transfer-encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let is_root = is_root(start.as_deref(), id.as_deref(), root.is_some());
        let binary = matches!(encoding.as_str(), "" | "binary" | "8bit" | "7bit");
        if !is_root {
            seen += 1;
            if seen > limits.parts {
                return Err(bad(Code::LimitExceeded, format!("at most {} MIME parts", limits.parts)));
            }
        }
        if is_root || !binary {
            // In memory: the envelope, and parts that must be decoded whole.
            let mut content = Vec::new();
            while let Some(chunk) = tokio::time::timeout(limits.idle, field.chunk())
                .await
                .map_err(|_| stalled())?
                .map_err(broken)?
            {
                in_memory += chunk.len();
                if in_memory > limits.root {
                    return Err(bad(
                        Code::LimitExceeded,
                        format!("the envelope and its base64 parts exceed {} bytes", limits.root),
                    ));
                }
                content.extend_from_slice(&chunk);
            }
            let content = decoded(&encoding, content)?;
            if is_root {
                root = Some(root_part(&media, content)?);
            } else if let Some(id) = id {
                parts.insert(id, Spooled::Bytes(content));
            }
            continue;
        }
        if upload.is_none() {
            upload = Some(files.upload().await.map_err(|p| Fault::from_problem(&p))?);
        }
        let folder = upload.as_ref().expect("made above");
        let name = format!("part-{seen}");
        let mut w = folder
            .create_named(&name, limits.part)
            .await
            .map_err(|p| Fault::from_problem(&p))?;
        while let Some(chunk) = tokio::time::timeout(limits.idle, field.chunk())
            .await
            .map_err(|_| stalled())?
            .map_err(broken)?
        {
            w.write(&chunk).await.map_err(|e| match e {
                crate::files::WriteError::TooLarge(l) => {
                    bad(Code::LimitExceeded, format!("a MIME part exceeds {l} bytes"))
                }
                crate::files::WriteError::Io(p) => Fault::from_problem(&p),
            })?;
        }
        let (size, sha256) = w.finish().await.map_err(|p| Fault::from_problem(&p))?;
        let path = folder.path().join(name);
        if let Some(id) = id {
            parts.insert(id, Spooled::File { path, size, sha256 });
        }
    }
    assembled(root, parts, &params, upload, limits.root)
}

impl Request {
    /// Pre-scans the envelope (limits, no DOCTYPE or entities) and parses it.
    pub fn parse(&self, limits: &Limits) -> Result<roxmltree::Document<'_>, Fault> {
        crate::xml::prescan::prescan(self.envelope.as_bytes(), limits).map_err(|p| Fault::from_problem(&p))?;
        let options = roxmltree::ParsingOptions {
            allow_dtd: false,
            ..roxmltree::ParsingOptions::default()
        };
        let doc = roxmltree::Document::parse_with_options(&self.envelope, options).map_err(|e| {
            let pos = e.pos();
            Fault::from_problem(&Problem::at(Code::NotWellFormed, pos.row, pos.col, e.to_string()))
        })?;
        let root = doc.root_element();
        if root.tag_name().name() != "Envelope" || root.tag_name().namespace() != Some(SOAP_NS) {
            // SOAP 1.2 §5.4.7: a root that is not a SOAP 1.2 envelope is a version mismatch.
            let mut f = bad(
                Code::InvalidRequest,
                if root.tag_name().namespace() == Some(SOAP11_NS) {
                    "SOAP 1.1 is not spoken here; the XTA 2 ports are SOAP 1.2"
                } else {
                    "the document is not a SOAP 1.2 envelope ({http://www.w3.org/2003/05/soap-envelope}Envelope)"
                },
            );
            f.code = "VersionMismatch";
            f.subcode = None;
            return Err(f);
        }
        Ok(doc)
    }

    /// The MIME part an element's `xop:Include` names (an element without one: its base64
    /// text, decoded).
    pub fn part(&self, node: roxmltree::Node<'_, '_>) -> Result<Spooled, Fault> {
        let Some(inc) = node.children().find(|c| c.has_tag_name((XOP_NS, "Include"))) else {
            return self.content(node).map(Spooled::Bytes);
        };
        let href = inc.attribute("href").unwrap_or("");
        let cid = href
            .strip_prefix("cid:")
            .ok_or_else(|| bad(Code::InvalidRequest, "xop:Include without a cid: reference"))?;
        let cid = percent_decode(cid);
        self.parts
            .get(&cid)
            .cloned()
            .ok_or_else(|| bad(Code::InvalidRequest, format!("xop:Include names no MIME part {cid}")))
    }

    /// The bytes of a `base64Binary` element: its `xop:Include` part, or its inline base64.
    pub fn content(&self, node: roxmltree::Node<'_, '_>) -> Result<Vec<u8>, Fault> {
        if node.children().any(|c| c.has_tag_name((XOP_NS, "Include"))) {
            return match self.part(node)? {
                Spooled::Bytes(b) => Ok(b),
                Spooled::File { size, .. } if size > self.max_inline as u64 => Err(bad(
                    Code::LimitExceeded,
                    format!("{} exceeds {} bytes", node.tag_name().name(), self.max_inline),
                )),
                Spooled::File { path, .. } => {
                    std::fs::read(path).map_err(|_| bad(Code::Internal, "a MIME part's file cannot be read"))
                }
            };
        }
        if node.children().any(|c| c.is_element() || c.is_comment() || c.is_pi()) {
            return Err(bad(
                Code::InvalidRequest,
                format!("{} holds markup, not base64", node.tag_name().name()),
            ));
        }
        let text: String = node
            .children()
            .filter(|c| c.is_text())
            .filter_map(|c| c.text())
            .flat_map(|t| t.chars())
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        B64.decode(text).map_err(|_| {
            bad(
                Code::InvalidRequest,
                format!("{} is not base64", node.tag_name().name()),
            )
        })
    }
}

/// `cid:` URLs are percent-encoded (RFC 2392).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first child element with this namespace and local name.
pub fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, ns: &str, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(ns))
}

/// An element's trimmed text.
pub fn text(node: roxmltree::Node<'_, '_>) -> String {
    node.text().unwrap_or("").trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtom_parts_are_split_and_included_content_resolves() {
        let env = format!(
            "<env:Envelope xmlns:env=\"{SOAP_NS}\"><env:Body><m>{}</m></env:Body></env:Envelope>",
            include("part%401")
        );
        let body = format!(
            "--b1\r\nContent-Type: application/xop+xml; type=\"application/soap+xml\"\r\nContent-ID: <root>\r\n\r\n{env}\r\n\
             --b1\r\nContent-Type: application/xml\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <part@1>\r\n\r\n<x>ä</x>\r\n--b1--\r\n"
        );
        let req = read(
            "multipart/related; type=\"application/xop+xml\"; boundary=\"b1\"; start=\"<root>\"",
            body.as_bytes(),
        )
        .unwrap();
        let doc = req.parse(&Limits::default()).unwrap();
        let m = doc.descendants().find(|n| n.has_tag_name("m")).unwrap();
        assert_eq!(req.content(m).unwrap(), "<x>ä</x>".as_bytes());
    }

    #[test]
    fn the_boundary_inside_a_part_but_not_at_a_line_start_is_content() {
        let env = format!(
            "<env:Envelope xmlns:env=\"{SOAP_NS}\"><env:Body><m>{}</m></env:Body></env:Envelope>",
            include("p")
        );
        let body = format!(
            "--b1\r\nContent-Type: application/xop+xml\r\nContent-ID: <root>\r\n\r\n{env}\r\n\
             --b1\r\nContent-ID: <p>\r\n\r\nx--b1y\r\n\r\n--b1--\r\n"
        );
        let req = read("multipart/related; boundary=b1; start=\"<root>\"", body.as_bytes()).unwrap();
        let doc = req.parse(&Limits::default()).unwrap();
        let m = doc.descendants().find(|n| n.has_tag_name("m")).unwrap();
        assert_eq!(req.content(m).unwrap(), b"x--b1y\r\n");
    }

    #[test]
    fn a_doctype_in_the_envelope_is_refused_before_parsing() {
        let env = format!("<!DOCTYPE x [<!ENTITY e 'x'>]><env:Envelope xmlns:env=\"{SOAP_NS}\"/>");
        let req = read("application/soap+xml", env.as_bytes()).unwrap();
        let f = req.parse(&Limits::default()).unwrap_err();
        assert_eq!(f.status, StatusCode::BAD_REQUEST);
        assert!(f.detail.contains("forbidden-construct"), "{}", f.detail);
    }
}
