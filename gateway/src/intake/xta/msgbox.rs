//! XTA's MsgBox port: status lists and messages of the reader's inbox, paged by arrival, and
//! close (the acknowledgement).

use super::*;

/// The reader's MsgBox: what was delivered to the client's authority and not yet closed, in
/// the order it arrived (at most the store's inbox page).
pub(super) async fn inbox(ctx: &Ctx, client: &Client) -> Result<Vec<Message>, Problem> {
    let mut items = ctx.store.inbox(&client.authority).await.map_err(store_problem)?;
    items.sort_by(|a, b| position(a).cmp(&position(b)));
    Ok(items)
}

/// A MsgBox entry's place in the MsgBox's order.
pub(super) fn position(m: &Message) -> (i64, &str) {
    (m.created_at, m.id.as_str())
}

/// The received message an XTA id names for this client (the sender's id, as it travelled),
/// opened or already closed.
pub(super) async fn msgbox_entry(ctx: &Ctx, client: &Client, xta: &str) -> Result<Message, Problem> {
    let id = message_id(xta)?;
    let mut found = ctx
        .store
        .inbound_by_remote_id(&client.authority, &id)
        .await
        .map_err(store_problem)?;
    match found.len() {
        0 => Err(Problem::new(Code::NotFound, format!("no message {xta} in this MsgBox"))),
        1 => Ok(found.remove(0)),
        _ => Err(invalid(format!(
            "{xta} names messages of several partners; fetch them with getNextMessage"
        ))),
    }
}

/// The MsgBox's answer header: how many further messages wait, or (`found` false) that none
/// matched.
pub(super) fn msgbox_response(request_id: &str, found: bool, pending: usize) -> String {
    let inner = if !found {
        "<osci:NoMessageAvailable reason=\"http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/NoMatch\"/>"
            .to_owned()
    } else {
        format!("<osci:ItemsPending>{pending}</osci:ItemsPending>")
    };
    format!(
        "<osci:MsgBoxResponse xmlns:osci=\"{OSCI_NS}\" MsgBoxRequestID=\"{}\">{inner}</osci:MsgBoxResponse>",
        esc(request_id)
    )
}

/// MsgBoxRequestIDs carry where a "next" request continues: the place of the last entry
/// handed out in the MsgBox's order (`start`: from the beginning).
pub(super) fn request_id(after: Option<(i64, &str)>) -> String {
    match after {
        Some((at, id)) => format!("urn:poststelle:msgbox:{at}:{id}"),
        None => "urn:poststelle:msgbox:start".into(),
    }
}

/// The place a MsgBoxRequestID continues after (`None`: from the beginning).
pub(super) fn after_of(request_id: &str) -> Result<Option<(i64, String)>, Problem> {
    let rest = request_id.strip_prefix("urn:poststelle:msgbox:");
    if rest == Some("start") {
        return Ok(None);
    }
    rest.and_then(|r| r.split_once(':'))
        .and_then(|(at, id)| Some((at.parse().ok()?, uuid::Uuid::parse_str(id).ok()?.to_string())))
        .map(Some)
        .ok_or_else(|| invalid(format!("unknown MsgBoxRequestID {request_id}")))
}

pub(super) fn after<'m>(items: &'m [Message], cursor: &Option<(i64, String)>) -> Vec<&'m Message> {
    items
        .iter()
        .filter(|m| cursor.as_ref().is_none_or(|(at, id)| position(m) > (*at, id.as_str())))
        .collect()
}

pub(super) async fn msgbox(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
    author_header(p, &call.client)?;
    let client = &call.client;
    match p.op {
        GET_STATUS_LIST | GET_NEXT_STATUS_LIST => status_list(ctx, client, p).await,
        GET_MESSAGE | GET_NEXT_MESSAGE => fetch(ctx, client, p).await,
        CLOSE => close(ctx, client, p).await,
        _ => unreachable!("the MsgBox port's operations are listed in Port::operations"),
    }
}

/// The request element of a MsgBox operation.
pub(super) fn request<'a, 'i>(p: &Parsed<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, Problem> {
    child(p.body, OSCI_NS, name).ok_or_else(|| invalid(format!("the body holds no osci:{name}")))
}

/// getStatusList / getNextStatusList: the metadata of (the next) up to `maxListItems` entries.
pub(super) async fn status_list(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
    let (max, cursor) = if p.op == GET_STATUS_LIST {
        let r = request(p, "MsgBoxStatusListRequest")?;
        let max = r
            .attribute("maxListItems")
            .and_then(|v| v.parse().ok())
            .unwrap_or(MAX_LIST_ITEMS);
        (max.clamp(1, MAX_LIST_ITEMS), None)
    } else {
        let r = request(p, "MsgBoxGetNextRequest")?;
        (MAX_LIST_ITEMS, after_of(r.attribute("MsgBoxRequestID").unwrap_or(""))?)
    };
    let items = inbox(ctx, client).await?;
    let rest = after(&items, &cursor);
    let page = &rest[..rest.len().min(max)];
    let list: String = page
        .iter()
        .map(|m| metadata(m, standard_namespace(ctx, m).as_deref()))
        .collect();
    let id = match page.last() {
        Some(m) => request_id(Some(position(m))),
        None => request_id(cursor.as_ref().map(|(at, id)| (*at, id.as_str()))),
    };
    let headers = msgbox_response(&id, !page.is_empty(), rest.len() - page.len());
    Ok((
        headers,
        format!("<osci:MsgStatusList xmlns:osci=\"{OSCI_NS}\">{list}</osci:MsgStatusList>"),
        Vec::new(),
    ))
}

/// getMessage / getNextMessage: one entry's message as an MTOM part, with its metadata.
pub(super) async fn fetch(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
    let items = inbox(ctx, client).await?;
    let m = if p.op == GET_MESSAGE {
        let r = request(p, "MsgBoxFetchRequest")?;
        let id = child(r, OSCI_NS, "MsgSelector")
            .and_then(|s| child(s, WSA_NS, "MessageID"))
            .map(text)
            .ok_or_else(|| invalid("MsgBoxFetchRequest names no MsgSelector/wsa:MessageID"))?;
        msgbox_entry(ctx, client, &id).await?
    } else {
        let r = request(p, "MsgBoxGetNextRequest")?;
        let cursor = after_of(r.attribute("MsgBoxRequestID").unwrap_or(""))?;
        match after(&items, &cursor).first() {
            Some(m) => (*m).clone(),
            None => {
                let id = request_id(cursor.as_ref().map(|(at, id)| (*at, id.as_str())));
                return Err(Failure::Problem(
                    Problem::new(Code::NotFound, "the MsgBox holds no further message"),
                    msgbox_response(&id, false, 0),
                ));
            }
        }
    };
    let payload = ctx
        .store
        .blob(&m.id, Blob::Payload)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(Code::NotFound, "the payload was purged"))?;
    let payload = crate::pipeline::validate::for_client(client, payload, &ctx.registry).await?;
    let ns = root_namespace(&payload);
    let travelled = m.remote_id.clone().unwrap_or_else(|| m.id.clone());
    let pending = items.iter().filter(|x| position(x) > position(&m)).count();
    let cid = format!("message.{travelled}@poststelle");
    let mut parts = Vec::new();
    let mut attached = String::new();
    if let Some(b) = ctx.store.blob(&m.id, Blob::Attachments).await.map_err(store_problem)? {
        let manifest = crate::files::Manifest::decode(&b)?;
        // Streamed from the files as the answer goes out; each must still be there.
        let files = ctx.config().files();
        for (i, a) in manifest.files.into_iter().enumerate() {
            let path = files.plain(&manifest.folder, i);
            if tokio::fs::metadata(&path).await.is_err() {
                return Err(Problem::new(Code::NotFound, format!("attachment {i} was purged")).into());
            }
            let acid = format!("attachment{i}.{travelled}@poststelle");
            attached.push_str(&format!(
                "<xta:Attachment contentType=\"{}\"{}{}>{}</xta:Attachment>",
                esc(&a.content_type),
                a.filename
                    .as_deref()
                    .map(|f| format!(" filename=\"{}\"", esc(f)))
                    .unwrap_or_default(),
                // xs:positiveInteger: no size for an empty file.
                Some(a.size)
                    .filter(|n| *n > 0)
                    .map(|n| format!(" size=\"{n}\""))
                    .unwrap_or_default(),
                soap::include(&acid)
            ));
            parts.push((acid, a.content_type, soap::Part::File(path)));
        }
    }
    let body = format!(
        "<xta:GenericContentContainer xmlns:xta=\"{XTA_NS}\"><xta:ContentContainer>\
         <xta:Message contentType=\"application/xml\" filename=\"{travelled}.xml\" size=\"{}\">{}</xta:Message>{attached}\
         </xta:ContentContainer></xta:GenericContentContainer>",
        payload.len().max(1),
        soap::include(&cid)
    );
    let headers = format!(
        "{}{}",
        metadata(&m, ns.as_deref()),
        msgbox_response(&request_id(Some(position(&m))), true, pending)
    );
    parts.insert(0, (cid, "application/xml".into(), soap::Part::Bytes(payload)));
    Ok((headers, body, parts))
}

/// close: the client took these messages (`delivered`, the sender is told). Every id is
/// checked before any is closed; one closed before counts as closed (a retried close).
pub(super) async fn close(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
    let r = request(p, "MsgBoxCloseRequest")?;
    let ids: Vec<String> = r
        .children()
        .filter(|c| c.has_tag_name((OSCI_NS, "LastMsgReceived")))
        .map(text)
        .take(MAX_LIST_ITEMS + 1)
        .collect();
    if ids.is_empty() || ids.len() > MAX_LIST_ITEMS {
        return Err(invalid(format!(
            "MsgBoxCloseRequest names 1 to {MAX_LIST_ITEMS} LastMsgReceived"
        ))
        .into());
    }
    let mut entries = Vec::new();
    for id in &ids {
        entries.push(msgbox_entry(ctx, client, id).await?);
    }
    for m in entries {
        crate::actions::acknowledge(ctx, client, &m.id, &format!("closed by client {} (XTA)", client.name)).await?;
    }
    Ok((String::new(), String::new(), Vec::new()))
}

/// The namespace of a received message's standard, from the adapter that knows its type
/// (no payload is read for a list).
pub(super) fn standard_namespace(ctx: &Ctx, m: &Message) -> Option<String> {
    let mt = adapters::MessageType::parse(&m.message_type)?;
    ctx.registry.adapters().find_map(|a| {
        let ns = a.namespace()?;
        let root = adapters::RootName {
            namespace: Some(ns.to_owned()),
            local: mt.name.clone(),
        };
        (a.identify(&root).as_ref() == Some(&mt)).then(|| ns.to_owned())
    })
}
