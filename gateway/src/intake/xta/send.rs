//! XTA's Send port: sendMessage through the intake pipeline, the metadata checked against the
//! message, MTOM attachments kept with it; and the metadata written for the reader's MsgBox.

use super::*;

/// Metadata for a stored message when none was sent with it (the reader's side): author,
/// reader, the id as it travelled, and the message type as Poststelle names it.
pub(super) fn metadata(m: &Message, payload_ns: Option<&str>) -> String {
    let travelled = m.remote_id.as_deref().unwrap_or(&m.id);
    let (standard, name) = m.message_type.split_once(' ').unwrap_or((&m.message_type, ""));
    let code = name.rsplit('.').next().unwrap_or(name);
    format!(
        "<oscimeta:MessageMetaData xmlns:oscimeta=\"{META_NS}\" xmlns:wsa=\"{WSA_NS}\">\
         <oscimeta:DeliveryAttributes><oscimeta:Origin>{created}</oscimeta:Origin></oscimeta:DeliveryAttributes>\
         <oscimeta:Originators><oscimeta:Author><oscimeta:Identifier type=\"xoev\">{author}</oscimeta:Identifier></oscimeta:Author></oscimeta:Originators>\
         <oscimeta:Destinations><oscimeta:Reader><oscimeta:Identifier type=\"xoev\">{reader}</oscimeta:Identifier></oscimeta:Reader></oscimeta:Destinations>\
         <oscimeta:MsgIdentification><wsa:MessageID>{id}</wsa:MessageID></oscimeta:MsgIdentification>\
         <oscimeta:Qualifier><oscimeta:Service>urn:poststelle:xta:service:{service}</oscimeta:Service>\
         <oscimeta:BusinessScenario><oscimeta:Undefined>{mt}</oscimeta:Undefined></oscimeta:BusinessScenario>\
         <oscimeta:MessageType listURI=\"{TYPE_LIST}\" listVersionID=\"{service}\" payloadSchema=\"{ns}\"><code>{code}</code><name>{name}</name></oscimeta:MessageType>\
         </oscimeta:Qualifier></oscimeta:MessageMetaData>",
        created = rfc3339(m.created_at),
        author = esc(&m.author),
        reader = esc(&m.reader),
        id = xta_id(travelled),
        service = esc(standard),
        mt = esc(&m.message_type),
        ns = esc(payload_ns.unwrap_or("urn:poststelle:unknown")),
        code = esc(code),
        name = esc(name),
    )
}

/// The metadata of a `sendMessage`, as far as the node checks and keeps it.
pub(super) struct SendMeta {
    author: String,
    reader: String,
    id: String,
    type_code: String,
    payload_schema: String,
}

pub(super) fn send_meta<'a, 'i>(header: Node<'a, 'i>) -> Result<(SendMeta, Node<'a, 'i>), Problem> {
    let meta = child(header, META_NS, "MessageMetaData")
        .ok_or_else(|| invalid("the SOAP header has no oscimeta:MessageMetaData"))?;
    fn need<'a, 'i>(parent: Node<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, Problem> {
        child(parent, META_NS, name).ok_or_else(|| invalid(format!("MessageMetaData has no {name}")))
    }
    let author = identifier(need(need(meta, "Originators")?, "Author")?)?;
    let reader = identifier(need(need(meta, "Destinations")?, "Reader")?)?;
    let id = child(need(meta, "MsgIdentification")?, WSA_NS, "MessageID")
        .map(text)
        .ok_or_else(|| invalid("MsgIdentification has no wsa:MessageID"))?;
    let qualifier = need(meta, "Qualifier")?;
    let mt = need(qualifier, "MessageType")?;
    let type_code = mt
        .children()
        .find(|c| c.is_element() && c.tag_name().name() == "code" && c.tag_name().namespace().is_none())
        .map(text)
        .ok_or_else(|| invalid("MessageType has no code"))?;
    let payload_schema = mt
        .attribute("payloadSchema")
        .ok_or_else(|| invalid("MessageType has no payloadSchema"))?
        .to_owned();
    Ok((
        SendMeta {
            author,
            reader,
            id,
            type_code,
            payload_schema,
        },
        meta,
    ))
}

pub(super) async fn send(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
    if p.op == SEND_MESSAGE_SYNC {
        let p = invalid("synchronous sending is not offered: partners answer asynchronously; use sendMessage");
        let class = (E::SyncAsync, 9080, "Der Dienst wird nur asynchron angeboten.");
        return Err(fault_as(SEND_MESSAGE_SYNC, class, &p).into());
    }
    let (meta, meta_node) = send_meta(p.header)?;
    own_authority(&meta.author, &call.client)?;
    let id = message_id(&meta.id)?;
    let container = child(p.body, XTA_NS, "GenericContentContainer")
        .ok_or_else(|| invalid("the body holds no xta:GenericContentContainer"))?;
    let content = child(container, XTA_NS, "ContentContainer").ok_or_else(|| {
        invalid(
            "only a ContentContainer is accepted: the node checks the message against its schema, so it cannot take content encrypted by the author (xenc:EncryptedData)",
        )
    })?;
    let message = child(content, XTA_NS, "Message").ok_or_else(|| invalid("ContentContainer has no Message"))?;
    let bytes = call.request.content(message)?;
    let attachments = attachments(call, content)?;
    // Attachments that came in the envelope (base64) count with the message; binary MTOM
    // parts are files already, each bounded by limits.max_attachment_bytes.
    let total = bytes.len()
        + attachments
            .iter()
            .map(|(_, _, part)| match part {
                soap::Spooled::Bytes(d) => d.len(),
                soap::Spooled::File { .. } => 0,
            })
            .sum::<usize>();
    if total > ctx.config().limits.max_bytes {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!(
                "the message and its attachments exceed {} bytes",
                ctx.config().limits.max_bytes
            ),
        )
        .into());
    }
    let meta_xml = with_namespaces(&call.request.envelope[meta_node.range()], meta_node);
    if meta_xml.len() > MAX_METADATA {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("MessageMetaData exceeds {MAX_METADATA} bytes"),
        )
        .into());
    }
    // The namespace of what the client sent (a legacy format's own, before its transform).
    let submitted_ns = root_namespace(&bytes).unwrap_or_default();
    let agrees = |c: &crate::pipeline::validate::Checked| metadata_agrees(&meta, &submitted_ns, c);
    let mut keep = vec![(Blob::XtaMetadata, meta_xml.into_bytes())];
    let files = place_attachments(ctx, call, attachments).await?;
    if let Some((_, manifest)) = &files {
        keep.push((Blob::Attachments, manifest.encode()));
    }
    let submitted = crate::intake::submit_as(ctx, &call.client, Arc::from(bytes), Some(id), keep, &agrees).await?;
    // A resend keeps the files of the message it repeats; these go.
    if let (Some((folder, _)), crate::intake::Submitted::Accepted(_)) = (files, &submitted) {
        folder.keep();
    }
    Ok((String::new(), String::new(), Vec::new()))
}

/// A ContentContainer's attachment: media type, file name, content.
type Part = (String, Option<String>, soap::Spooled);

/// The attachments as the durable files of an upload folder, with their manifest: binary MTOM
/// parts (files already) linked into place, base64 ones written. `None` without attachments.
async fn place_attachments(
    ctx: &Ctx,
    call: &Call,
    attachments: Vec<Part>,
) -> Result<Option<(crate::files::Upload, crate::files::Manifest)>, Problem> {
    if attachments.is_empty() {
        return Ok(None);
    }
    let spooled = call.request.upload.lock().map(|mut u| u.take()).unwrap_or(None);
    let upload = match spooled {
        Some(u) => u,
        None => ctx.config().files().upload().await?,
    };
    let mut files = Vec::new();
    for (n, (content_type, filename, part)) in attachments.into_iter().enumerate() {
        let (size, sha256) = match part {
            soap::Spooled::Bytes(data) => crate::files::write_whole(&upload, n, &data).await?,
            soap::Spooled::File { path, size, sha256 } => {
                // Linked, not moved: the same part may be named twice.
                let target = upload.path().join(n.to_string());
                tokio::fs::hard_link(&path, &target)
                    .await
                    .map_err(crate::files::io_problem)?;
                (size, sha256)
            }
        };
        files.push(crate::files::Entry {
            content_type,
            filename,
            size,
            sha256: crate::envelope::hex(&sha256),
        });
    }
    // The parts as they arrived go; their content is in place under its position.
    let mut dir = tokio::fs::read_dir(upload.path())
        .await
        .map_err(crate::files::io_problem)?;
    while let Ok(Some(e)) = dir.next_entry().await {
        if e.file_name().to_string_lossy().starts_with("part-") {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
    upload.sync().await?;
    let manifest = crate::files::Manifest {
        folder: upload.name().to_owned(),
        files,
    };
    Ok(Some((upload, manifest)))
}

/// The `Attachment`s of a ContentContainer: opaque files that travel with the message, signed
/// and encrypted with it, never parsed.
pub(super) fn attachments(call: &Call, content: Node<'_, '_>) -> Result<Vec<Part>, Failure> {
    let nodes: Vec<Node<'_, '_>> = content
        .children()
        .filter(|c| c.has_tag_name((XTA_NS, "Attachment")))
        .collect();
    if nodes.len() > crate::envelope::MAX_ATTACHMENTS {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("at most {} attachments per message", crate::envelope::MAX_ATTACHMENTS),
        )
        .into());
    }
    nodes
        .into_iter()
        .map(|n| {
            let short = |name: &str| n.attribute(name).filter(|v| !v.is_empty() && v.len() <= 255);
            let content_type = short("contentType")
                .ok_or_else(|| invalid("an Attachment needs a contentType of at most 255 characters"))?;
            Ok((
                content_type.to_owned(),
                short("filename").map(str::to_owned),
                call.request.part(n)?,
            ))
        })
        .collect()
}

/// The metadata must say what the message's own header says.
pub(super) fn metadata_agrees(
    meta: &SendMeta,
    submitted_ns: &str,
    c: &crate::pipeline::validate::Checked,
) -> Result<(), Problem> {
    let mismatch = |what: &str, meta: &str, header: &str| {
        Problem::new(
            Code::HeaderInvalid,
            format!("the metadata's {what} {meta} is not the message header's {header}"),
        )
    };
    if meta.author != c.header.author {
        return Err(mismatch("author", &meta.author, &c.header.author));
    }
    if meta.reader != c.header.reader {
        return Err(mismatch("reader", &meta.reader, &c.header.reader));
    }
    if let Some(code) = &c.header.type_code
        && code != &meta.type_code
    {
        return Err(mismatch("message type code", &meta.type_code, code));
    }
    // payloadSchema names the submitted document's namespace, or (for a legacy format, whose
    // documents may be in no namespace at all) the standard its adapter maps it to.
    let standard_ns = root_namespace(&c.payload).unwrap_or_default();
    if meta.payload_schema != submitted_ns && meta.payload_schema != standard_ns {
        return Err(mismatch("payloadSchema", &meta.payload_schema, submitted_ns));
    }
    Ok(())
}

/// An element cut out of its document, with the namespace declarations in scope that its own
/// start tag does not make added to it, so it stands on its own.
pub(super) fn with_namespaces(xml: &str, node: Node<'_, '_>) -> String {
    use quick_xml::name::PrefixDeclaration;
    let mut reader = quick_xml::Reader::from_str(xml);
    let start = match reader.read_event() {
        Ok(quick_xml::events::Event::Start(s)) | Ok(quick_xml::events::Event::Empty(s)) => s.into_owned(),
        _ => return xml.to_owned(),
    };
    let declared: Vec<Option<Vec<u8>>> = start
        .attributes()
        .flatten()
        .filter_map(|a| match a.key.as_namespace_binding()? {
            PrefixDeclaration::Default => Some(None),
            PrefixDeclaration::Named(p) => Some(Some(p.to_vec())),
        })
        .collect();
    let end = 1 + start.name().as_ref().len();
    let mut decls = String::new();
    for ns in node.namespaces() {
        let prefix = ns.name().map(|p| p.as_bytes().to_vec());
        if declared.contains(&prefix) || ns.name() == Some("xml") {
            continue;
        }
        match ns.name() {
            Some(prefix) => decls.push_str(&format!(" xmlns:{prefix}=\"{}\"", esc(ns.uri()))),
            None => decls.push_str(&format!(" xmlns=\"{}\"", esc(ns.uri()))),
        }
    }
    format!("{}{decls}{}", &xml[..end], &xml[end..])
}

/// The namespace of a document's root element.
pub(super) fn root_namespace(xml: &[u8]) -> Option<String> {
    let mut reader = quick_xml::NsReader::from_reader(xml);
    let mut buf = Vec::new();
    loop {
        match reader.read_resolved_event_into(&mut buf).ok()? {
            (ns, quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_)) => {
                return match ns {
                    quick_xml::name::ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
                    _ => Some(String::new()),
                };
            }
            (_, quick_xml::events::Event::Eof) => return None,
            _ => buf.clear(),
        }
    }
}
