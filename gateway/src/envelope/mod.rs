//! Envelope and receipt: the documents that travel between nodes (schema `xsd/envelope-1.0/`).
//!
//! Building writes the XML directly (every value escaped); reading happens only after the
//! document passed the pre-scan and the envelope schema, so field extraction can be simple.
//! Signing and encryption wrap these documents in `seal.rs`, over the XML security layer
//! (`xmlsec/`); the rest of this module knows nothing about them.

pub mod seal;
pub mod together;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::escape::escape;

use crate::problem::{Code, Problem};

pub const NS: &str = "urn:poststelle:envelope:1.0";

/// The message id a refusal names when the envelope could not be read far enough to know it.
pub const UNKNOWN_ID: &str = "00000000-0000-0000-0000-000000000000";
const SHA256_URI: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

/// The routing header of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The sending node's id for this message (UUID).
    pub message_id: String,
    pub xoev_uuid: String,
    pub sender_node: String,
    pub sender: String,
    pub recipient: String,
    pub message_type: String,
    /// RFC 3339.
    pub created: String,
}

/// An attachment that travels beside the envelope, encrypted (`xmlsec::stream`): the header
/// names its size and SHA-256 as sent, under the node's transport signature, so the receiving
/// node checks each file before it answers `received`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFile {
    /// The attachment's position in the signed content.
    pub n: usize,
    pub size: u64,
    pub sha256: Vec<u8>,
}

/// Builds an envelope with `body` (an `xenc:EncryptedData` element, see `xmlsec::seal`) as
/// the content of its `pst:Body`. Unsigned: the node signs the result.
pub fn build_with_body(h: &EnvelopeHeader, body: &str) -> Vec<u8> {
    build_with_files(h, &[], body)
}

/// [`build_with_body`] with the files that travel beside it.
pub fn build_with_files(h: &EnvelopeHeader, files: &[SealedFile], body: &str) -> Vec<u8> {
    let mut s = String::with_capacity(body.len() + 1024);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!("<pst:Envelope xmlns:pst=\"{NS}\" version=\"1.0\">"));
    s.push_str("<pst:Header>");
    for (name, value) in [
        ("MessageId", &h.message_id),
        ("XoevMessageUuid", &h.xoev_uuid),
        ("SenderNode", &h.sender_node),
        ("Sender", &h.sender),
        ("Recipient", &h.recipient),
        ("MessageType", &h.message_type),
        ("Created", &h.created),
    ] {
        s.push_str(&format!("<pst:{name}>{}</pst:{name}>", escape(value.as_str())));
    }
    for f in files {
        s.push_str(&format!(
            "<pst:File n=\"{}\" size=\"{}\" sha256=\"{}\"/>",
            f.n,
            f.size,
            B64.encode(&f.sha256)
        ));
    }
    s.push_str("</pst:Header><pst:Body>");
    s.push_str(body);
    s.push_str("</pst:Body></pst:Envelope>\n");
    s.into_bytes()
}

/// Paths of the header fields, in [`EnvelopeHeader`] field order.
const PATHS: [&str; 7] = [
    "Header/MessageId",
    "Header/XoevMessageUuid",
    "Header/SenderNode",
    "Header/Sender",
    "Header/Recipient",
    "Header/MessageType",
    "Header/Created",
];

/// Reads `paths` from a schema-valid document; all must be present.
fn fields(xml: &[u8], paths: &[&str]) -> Result<Vec<String>, Problem> {
    let found = adapters::find_paths(xml, paths).map_err(|e| Problem::new(Code::EnvelopeInvalid, e.to_string()))?;
    found
        .into_iter()
        .zip(paths)
        .map(|(v, p)| {
            v.map(|s| s.trim().to_owned())
                .ok_or_else(|| Problem::new(Code::EnvelopeInvalid, format!("envelope lacks {p}")))
        })
        .collect()
}

fn header_of(f: &mut impl Iterator<Item = String>) -> EnvelopeHeader {
    let mut next = || f.next().unwrap_or_default();
    EnvelopeHeader {
        message_id: next(),
        xoev_uuid: next(),
        sender_node: next(),
        sender: next(),
        recipient: next(),
        message_type: next(),
        created: next(),
    }
}

/// Reads only the header of a schema-valid envelope: the transport listener routes and
/// deduplicates by it without decoding the content (that is the open worker's job).
pub fn parse_header(xml: &[u8]) -> Result<EnvelopeHeader, Problem> {
    let f = fields(xml, &PATHS)?;
    Ok(header_of(&mut f.into_iter()))
}

/// The files a schema-valid envelope's header names (none for most).
pub fn parse_files(xml: &[u8]) -> Result<Vec<SealedFile>, Problem> {
    use quick_xml::events::Event;
    let bad = |what: &str| Problem::new(Code::EnvelopeInvalid, format!("the envelope's file list: {what}"));
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut files = Vec::new();
    loop {
        match reader.read_resolved_event() {
            Ok((quick_xml::name::ResolveResult::Bound(ns), Event::Empty(e) | Event::Start(e)))
                if ns.as_ref() == NS.as_bytes() =>
            {
                match e.local_name().as_ref() {
                    b"File" => {
                        let attr = |name: &[u8]| -> Result<String, Problem> {
                            let a = e
                                .try_get_attribute(name)
                                .ok()
                                .flatten()
                                .ok_or_else(|| bad("an attribute is missing"))?;
                            Ok(String::from_utf8_lossy(&a.value).into_owned())
                        };
                        files.push(SealedFile {
                            n: attr(b"n")?.parse().map_err(|_| bad("n"))?,
                            size: attr(b"size")?.parse().map_err(|_| bad("size"))?,
                            sha256: B64.decode(attr(b"sha256")?).map_err(|_| bad("sha256"))?,
                        });
                    }
                    b"Body" => break,
                    _ => {}
                }
            }
            Ok((_, Event::Eof)) => break,
            Err(_) => return Err(bad("unreadable")),
            _ => {}
        }
    }
    // Each position once, in order.
    if files.windows(2).any(|w| w[0].n >= w[1].n) || files.iter().any(|f| f.sha256.len() != 32) {
        return Err(bad("positions must rise and digests be SHA-256"));
    }
    Ok(files)
}

/// The outcome a receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Received,
    Delivered,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Received => "received",
            Outcome::Delivered => "delivered",
            Outcome::Refused => "refused",
        }
    }
}

/// A receipt or notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The sending node's message id the receipt is about.
    pub message_id: String,
    pub outcome: Outcome,
    pub code: Option<String>,
    pub detail: Option<String>,
    /// SHA-256 of the envelope bytes, when the envelope was read.
    pub envelope_sha256: Option<Vec<u8>>,
    pub receiver_node: String,
    /// RFC 3339.
    pub time: String,
}

pub fn build_receipt(r: &Receipt) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<pst:Receipt xmlns:pst=\"{NS}\" version=\"1.0\" Id=\"receipt\">"
    ));
    push_outcome(&mut s, r);
    s.push_str(&format!(
        "<pst:ReceiverNode>{}</pst:ReceiverNode><pst:Time>{}</pst:Time></pst:Receipt>\n",
        escape(r.receiver_node.as_str()),
        escape(r.time.as_str())
    ));
    s.into_bytes()
}

/// What a receipt or one notice of a batch says about one message.
fn push_outcome(s: &mut String, r: &Receipt) {
    s.push_str(&format!(
        "<pst:MessageId>{}</pst:MessageId>",
        escape(r.message_id.as_str())
    ));
    s.push_str(&format!("<pst:Outcome>{}</pst:Outcome>", r.outcome.as_str()));
    if let Some(c) = &r.code {
        s.push_str(&format!("<pst:Code>{}</pst:Code>", escape(c.as_str())));
    }
    if let Some(d) = &r.detail {
        let d: String = d.chars().take(1000).collect();
        s.push_str(&format!("<pst:Detail>{}</pst:Detail>", escape(d.as_str())));
    }
    if let Some(d) = &r.envelope_sha256 {
        s.push_str(&format!(
            "<pst:EnvelopeDigest Algorithm=\"{SHA256_URI}\">{}</pst:EnvelopeDigest>",
            B64.encode(d)
        ));
    }
}

/// The most notices one signed batch carries (the schema's `maxOccurs`).
pub const MAX_NOTICES: usize = 64;

/// Several notices to one partner under one signature: what the notice stage sends when more
/// than one is due. Each notice's `receiver_node` and `time` are the first one's.
pub fn build_notices(notices: &[Receipt]) -> Vec<u8> {
    let (node, time) = notices
        .first()
        .map(|r| (r.receiver_node.as_str(), r.time.as_str()))
        .unwrap_or_default();
    let mut s = String::with_capacity(128 + 320 * notices.len());
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<pst:Notices xmlns:pst=\"{NS}\" version=\"1.0\" Id=\"notices\"><pst:ReceiverNode>{}</pst:ReceiverNode><pst:Time>{}</pst:Time>",
        escape(node),
        escape(time)
    ));
    for r in notices {
        s.push_str("<pst:Notice>");
        push_outcome(&mut s, r);
        s.push_str("</pst:Notice>");
    }
    s.push_str("</pst:Notices>\n");
    s.into_bytes()
}

/// Reads a schema-valid receipt.
pub fn parse_receipt(xml: &[u8]) -> Result<Receipt, Problem> {
    let f =
        adapters::find_paths(xml, &RECEIPT_PATHS).map_err(|e| Problem::new(Code::EnvelopeInvalid, e.to_string()))?;
    receipt_of(&f)
}

/// The fields of a receipt, in the order [`receipt_of`] reads them (relative to the root).
const RECEIPT_PATHS: [&str; 7] = [
    "MessageId",
    "Outcome",
    "Code",
    "Detail",
    "EnvelopeDigest",
    "ReceiverNode",
    "Time",
];

fn receipt_of(f: &[Option<String>]) -> Result<Receipt, Problem> {
    let get = |i: usize| f[i].as_ref().map(|s| s.trim().to_owned());
    let outcome = match get(1).as_deref() {
        Some("received") => Outcome::Received,
        Some("delivered") => Outcome::Delivered,
        Some("refused") => Outcome::Refused,
        _ => return Err(Problem::new(Code::EnvelopeInvalid, "receipt has no valid outcome")),
    };
    Ok(Receipt {
        message_id: get(0).ok_or_else(|| Problem::new(Code::EnvelopeInvalid, "receipt lacks MessageId"))?,
        outcome,
        code: get(2),
        detail: get(3),
        envelope_sha256: get(4).and_then(|d| B64.decode(d).ok()),
        receiver_node: get(5).unwrap_or_default(),
        time: get(6).unwrap_or_default(),
    })
}

/// Reads a schema-valid batch of notices: one [`Receipt`] per `Notice`, each with the batch's
/// receiver node and time.
pub fn parse_notices(xml: &[u8]) -> Result<Vec<Receipt>, Problem> {
    use quick_xml::events::Event;
    let unreadable = |e: String| Problem::new(Code::EnvelopeInvalid, format!("the notices: {e}"));
    let batch = adapters::find_paths(xml, &RECEIPT_PATHS[5..]).map_err(|e| unreadable(e.to_string()))?;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let (mut notices, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().map_err(|e| unreadable(e.to_string()))? {
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && e.local_name().as_ref() == b"Notice" {
                    start = before;
                }
            }
            Event::End(e) => {
                if depth == 2 && e.local_name().as_ref() == b"Notice" {
                    // One notice on its own: its fields are the receipt's, the batch's after them.
                    let end = reader.buffer_position() as usize;
                    let mut f = adapters::find_paths(&xml[start..end], &RECEIPT_PATHS[..5])
                        .map_err(|e| unreadable(e.to_string()))?;
                    f.extend(batch.iter().cloned());
                    notices.push(receipt_of(&f)?);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(notices)
}

/// SHA-256 of bytes.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    openssl::sha::sha256(data).to_vec()
}

/// Lower-case hex.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of what [`hex`] wrote; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_header_round_trips_and_values_are_escaped() {
        let h = EnvelopeHeader {
            message_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            xoev_uuid: "60f6667b-fa45-4bd7-b717-f4d6c65e5edb".into(),
            sender_node: "a".into(),
            sender: "psw:01003110".into(),
            recipient: "psw:09162000".into(),
            message_type: "x/1 <evil>&".into(),
            created: "2026-11-22T10:00:00Z".into(),
        };
        let env = build_with_body(&h, "<x:EncryptedData xmlns:x=\"urn:x\"/>");
        assert_eq!(parse_header(&env).unwrap(), h);
    }

    #[test]
    fn receipt_round_trips() {
        let r = Receipt {
            message_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            outcome: Outcome::Refused,
            code: Some("schema-invalid".into()),
            detail: Some("line 3 < 4".into()),
            envelope_sha256: Some(sha256(b"x")),
            receiver_node: "b".into(),
            time: "2026-11-22T10:00:00Z".into(),
        };
        assert_eq!(parse_receipt(&build_receipt(&r)).unwrap(), r);
        let mut other = r.clone();
        other.message_id = "0190a0b0-0000-7000-8000-000000000002".into();
        other.detail = Some("a <second> & \"last\" one".into());
        other.code = None;
        let batch = [r.clone(), other];
        assert_eq!(parse_notices(&build_notices(&batch)).unwrap(), batch);
    }
}

/// A file that travels with a message (XTA's `Attachment`s): opaque bytes with a media type and
/// an optional file name, signed with the message, never parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub content_type: String,
    pub filename: Option<String>,
    pub body: Carried,
}

/// How an attachment travels in the signed content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Carried {
    /// Base64 inside the encrypted content (small ones, partners reached through the broker).
    Inline(Vec<u8>),
    /// Beside the envelope as its own encrypted stream; the signed content holds its size and
    /// SHA-256, so the author's signature covers it.
    Streamed { size: u64, sha256: Vec<u8> },
}

/// At most this many attachments per message.
pub const MAX_ATTACHMENTS: usize = 100;

/// The `pst:Attachment` (inline) and `pst:AttachmentFile` (streamed) elements of a list.
pub fn attachments_xml(list: &[Attachment]) -> String {
    list.iter()
        .map(|a| {
            let meta = format!(
                "contentType=\"{}\"{}",
                escape(&a.content_type),
                a.filename
                    .as_deref()
                    .map(|f| format!(" filename=\"{}\"", escape(f)))
                    .unwrap_or_default()
            );
            match &a.body {
                Carried::Inline(data) => format!("<pst:Attachment {meta}>{}</pst:Attachment>", B64.encode(data)),
                Carried::Streamed { size, sha256 } => format!(
                    "<pst:AttachmentFile {meta} size=\"{size}\" sha256=\"{}\"/>",
                    B64.encode(sha256)
                ),
            }
        })
        .collect()
}
