//! XTA 2 (version 2.1.1) on the client listener: the three SOAP 1.2 ports of the standard's
//! WSDL, with the same pipeline behind them as the REST API (`http.rs`).
//!
//! Routes (each a port; the operation is the request's `wsa:Action`):
//! - `POST /xta/management` — createMessageId, checkAccountActive, lookupService,
//!   getTransportReport, cancelMessage
//! - `POST /xta/send` — sendMessage (sendMessageSync: `SyncAsyncException`, not offered)
//! - `POST /xta/msgbox` — getStatusList, getNextStatusList, getMessage, getNextMessage, close
//!
//! Identities: an XTA `Identifier` (its text `prefix:kennung`) is a Poststelle authority. The
//! client is authenticated as on the REST API (bearer token) and may act only as its own
//! authority (the `Author` header, or the metadata's author). Message ids are
//! `urn:de:xta:messageid:<uuid>`, and the uuid is the Poststelle message id on the sender's
//! side, so a retried `sendMessage` with the same id is idempotent (same content: the same
//! message; other content: refused) and REST and XTA views agree. On the reader's side the
//! MsgBox names a message by the sender's id, as it travelled.
//!
//! Every refusal is the WSDL's fault for the operation, carrying the REST API's problem
//! (`pst:Problem` with code, detail, line and column) in its detail.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roxmltree::Node;

use super::soap::{self, Answer, Fault, WSA_NS, child, esc, problem_xml, text};
use crate::config::Client;
use crate::node::{Ctx, store_problem};
use crate::problem::{Code, Problem};
use crate::store::{Blob, Direction, Message, Status, rfc3339};

pub const XTA_NS: &str = "http://xoev.de/transport/xta/211";
pub const META_NS: &str = "http://www.osci.eu/ws/2014/10/transport";
pub const OSCI_NS: &str = "http://www.osci.eu/ws/2008/05/transport";
/// Prefix of the message ids this node hands out and accepts.
pub const ID_PREFIX: &str = "urn:de:xta:messageid:";
/// The code list of XTA's fault numbers (`Code.Fehlernummer`).
const FEHLERNUMMER: &str = "urn:de:xta:webservice:codeliste:fehlernummer";
/// Our code list for message types in metadata we write ourselves (the reader's MsgBox).
const TYPE_LIST: &str = "urn:poststelle:xta:message-type";

const A_CHECK: &str = "http://www.xta.de/XTA/CheckAccountActive";
const A_LOOKUP: &str = "http://www.xta.de/XTA/IsServiceAvailable";
const A_REPORT: &str = "http://www.xta.de/XTA/GetTransportReport";
const A_CANCEL: &str = "http://www.xta.de/XTA/CancelMessage";
const A_CREATE: &str = "http://www.xta.de/XTA/CreateMessageID";
const A_SEND: &str = "http://www.xta.de/XTA/SendMessage";
const A_SEND_SYNC: &str = "http://www.xta.de/XTA/SendMessageSync";
const A_FETCH: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxFetchRequest";
const A_LIST: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest";
const A_NEXT: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxGetNextMsgRequest";
const A_NEXT_LIST: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxGetNextListRequest";
const A_CLOSE: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxCloseRequest";

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/xta/management", post(management))
        .route("/xta/send", post(send))
        .route("/xta/msgbox", post(msgbox))
}

/// The XTA exceptions of the WSDL, with the base number of their range in `Code.Fehlernummer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exception {
    PermissionDenied,
    ParameterIsNotValid,
    TechnicalProblem,
    MessageSchemaViolation,
    InvalidMessageId,
    SyncAsync,
    CancelDenied,
}

impl Exception {
    fn element(self) -> &'static str {
        match self {
            Exception::PermissionDenied => "PermissionDeniedException",
            Exception::ParameterIsNotValid => "ParameterIsNotValidException",
            Exception::TechnicalProblem => "XTAWSTechnicalProblemException",
            Exception::MessageSchemaViolation => "MessageSchemaViolationException",
            Exception::InvalidMessageId => "InvalidMessageIDException",
            Exception::SyncAsync => "SyncAsyncException",
            Exception::CancelDenied => "CancelDeniedException",
        }
    }

    fn number(self) -> u32 {
        match self {
            Exception::PermissionDenied => 9010,
            Exception::ParameterIsNotValid => 9020,
            Exception::TechnicalProblem => 9030,
            Exception::MessageSchemaViolation => 9050,
            Exception::InvalidMessageId => 9070,
            Exception::SyncAsync => 9080,
            Exception::CancelDenied => 9100,
        }
    }

    /// The exception a problem is reported as (one mapping, for every operation).
    fn of(code: Code) -> Exception {
        match code {
            Code::Unauthorized | Code::NotPermitted => Exception::PermissionDenied,
            Code::NotWellFormed
            | Code::ForbiddenConstruct
            | Code::UnsupportedEncoding
            | Code::UnknownMessageType
            | Code::SchemaInvalid
            | Code::HeaderInvalid
            | Code::TransformFailed => Exception::MessageSchemaViolation,
            Code::NotFound => Exception::InvalidMessageId,
            Code::WrongState => Exception::CancelDenied,
            Code::Internal | Code::Overloaded | Code::RequestTimeout => Exception::TechnicalProblem,
            _ => Exception::ParameterIsNotValid,
        }
    }
}

/// The operation's fault for a problem: the XTA exception with its number in the detail, next
/// to the problem itself.
fn fault(p: &Problem) -> Fault {
    let exception = Exception::of(p.code);
    let receiver = exception == Exception::TechnicalProblem;
    Fault {
        status: soap::http_status(p, receiver),
        sender: !receiver,
        subcode: Some((XTA_NS, exception.element().to_owned())),
        reason: p.detail.clone(),
        detail: format!(
            "<xta:{e} xmlns:xta=\"{XTA_NS}\"><xta:errorCode listURI=\"{FEHLERNUMMER}\" listVersionID=\"1.0\">\
             <code>{n}</code><name>{name}</name></xta:errorCode></xta:{e}>{problem}",
            e = exception.element(),
            n = exception.number(),
            name = esc(p.code.as_str()),
            problem = problem_xml(p)
        ),
        retry_after: p.retry_after,
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::InvalidRequest, detail)
}

/// What every port does first: authenticate, read and parse the SOAP message, find the
/// operation by its `wsa:Action`.
struct Call {
    client: Client,
    request: soap::Request,
}

async fn read_call(ctx: &Ctx, req: Request) -> Result<Call, Fault> {
    let client = super::http::authenticate(ctx, req.headers())
        .map_err(|p| fault(&p))?
        .clone();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // The XÖV message may travel as base64 in the envelope: room for that growth, no more.
    let limit = ctx.config.limits.max_bytes / 3 * 4 + 256 * 1024;
    let body = super::http::read_body(ctx, req.into_body(), limit)
        .await
        .map_err(|p| fault(&p))?;
    let request = soap::read(&content_type, &body)?;
    Ok(Call { client, request })
}

/// The parts of a parsed request every operation needs.
struct Parsed<'a, 'i> {
    action: String,
    message_id: Option<String>,
    header: Node<'a, 'i>,
    body: Node<'a, 'i>,
}

fn parsed<'a, 'i>(call: &Call, doc: &'a roxmltree::Document<'i>) -> Result<Parsed<'a, 'i>, Fault> {
    let env = doc.root_element();
    let header = child(env, soap::SOAP_NS, "Header")
        .ok_or_else(|| Fault::addressing("MessageAddressingHeaderRequired", "the SOAP message has no Header"))?;
    let body = child(env, soap::SOAP_NS, "Body")
        .ok_or_else(|| Fault::from_problem(&invalid("the SOAP message has no Body")))?;
    let action = child(header, WSA_NS, "Action").map(text).ok_or_else(|| {
        Fault::addressing(
            "MessageAddressingHeaderRequired",
            "WS-Addressing is required: the header has no wsa:Action",
        )
    })?;
    if let Some(media) = &call.request.media_action
        && media != &action
    {
        return Err(Fault::addressing(
            "ActionMismatch",
            format!("the media type's action {media} is not the wsa:Action {action}"),
        ));
    }
    Ok(Parsed {
        action,
        message_id: child(header, WSA_NS, "MessageID").map(text),
        header,
        body,
    })
}

fn unsupported(action: &str, port: &str) -> Fault {
    Fault::addressing(
        "ActionNotSupported",
        format!("the {port} port has no operation for the action {action}"),
    )
}

/// The authority named by an `Author` (or `Reader`) element's `Identifier`.
fn identifier(party: Node<'_, '_>) -> Result<String, Problem> {
    let id = child(party, META_NS, "Identifier")
        .ok_or_else(|| invalid(format!("{} has no Identifier", party.tag_name().name())))?;
    let value = text(id);
    if value.is_empty() || !value.contains(':') {
        return Err(invalid(format!(
            "{} Identifier {value:?} is not an authority prefix:kennung",
            party.tag_name().name()
        )));
    }
    Ok(value)
}

/// The `Author` SOAP header must name the client's own authority.
fn author_header(p: &Parsed<'_, '_>, client: &Client) -> Result<(), Problem> {
    let author = child(p.header, META_NS, "Author").ok_or_else(|| invalid("the SOAP header has no oscimeta:Author"))?;
    own_authority(&identifier(author)?, client)
}

fn own_authority(author: &str, client: &Client) -> Result<(), Problem> {
    if author != client.authority {
        return Err(Problem::new(
            Code::NotPermitted,
            format!("the client acts for {}, not for {author}", client.authority),
        ));
    }
    Ok(())
}

/// A Poststelle message id from an XTA message id.
fn message_id(xta_id: &str) -> Result<String, Problem> {
    let raw = xta_id.strip_prefix(ID_PREFIX).unwrap_or("");
    let id = uuid::Uuid::parse_str(raw).map_err(|_| {
        Problem::new(
            Code::InvalidRequest,
            format!("{xta_id:?} is not a message id of the form {ID_PREFIX}<uuid>"),
        )
    })?;
    Ok(id.hyphenated().to_string())
}

fn xta_id(id: &str) -> String {
    format!("{ID_PREFIX}{id}")
}

async fn management(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    match management_inner(&ctx, req).await {
        Ok(a) => a.into_response(),
        Err(f) => f.into_response(),
    }
}

async fn management_inner(ctx: &Ctx, req: Request) -> Result<Answer, Fault> {
    let call = read_call(ctx, req).await?;
    let doc = call.request.parse(&ctx.config.limits)?;
    let p = parsed(&call, &doc)?;
    let relates_to = p.message_id.clone();
    author_header(&p, &call.client).map_err(|e| fault(&e))?;
    let (body, headers) = match p.action.as_str() {
        A_CHECK => (String::new(), String::new()),
        A_CREATE => {
            let id = xta_id(&uuid::Uuid::now_v7().to_string());
            (format!("<wsa:MessageID>{id}</wsa:MessageID>"), String::new())
        }
        A_LOOKUP => (lookup(ctx, p.body).map_err(|e| fault(&e))?, String::new()),
        A_REPORT => (
            report(ctx, &call.client, p.body).await.map_err(|e| fault(&e))?,
            String::new(),
        ),
        A_CANCEL => {
            let id = body_message_id(p.body).map_err(|e| fault(&e))?;
            own_outbound(ctx, &call.client, &id).await.map_err(|e| fault(&e))?;
            crate::admin::cancel_message(ctx, &id, &format!("cancelled by client {} (XTA)", call.client.name))
                .await
                .map_err(|e| fault(&e))?;
            (String::new(), String::new())
        }
        other => return Err(unsupported(other, "Management")),
    };
    Ok(Answer {
        action: p.action.clone(),
        relates_to,
        headers,
        body,
        parts: Vec::new(),
    })
}

/// The `wsa:MessageID` a request body consists of, as a Poststelle id.
fn body_message_id(body: Node<'_, '_>) -> Result<String, Problem> {
    let id = child(body, WSA_NS, "MessageID").ok_or_else(|| invalid("the body holds no wsa:MessageID"))?;
    message_id(&text(id))
}

async fn own_outbound(ctx: &Ctx, client: &Client, id: &str) -> Result<Message, Problem> {
    match ctx.store.message(id).await.map_err(store_problem)? {
        Some(m) if m.direction == Direction::Outbound && m.client.as_deref() == Some(client.name.as_str()) => Ok(m),
        _ => Err(Problem::new(
            Code::NotFound,
            format!("no message {} of this client", xta_id(id)),
        )),
    }
}

/// lookupService: for each reader and service, whether this node can deliver to it — the
/// reader is served by a partner in the directory — and, if so, the reader's encryption
/// certificate as a service parameter.
fn lookup(ctx: &Ctx, body: Node<'_, '_>) -> Result<String, Problem> {
    let request =
        child(body, XTA_NS, "LookupServiceRequest").ok_or_else(|| invalid("the body holds no LookupServiceRequest"))?;
    let mut results = String::new();
    for item in request
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "LookupServiceRequestList")
    {
        let service = child(item, XTA_NS, "LookupService")
            .ok_or_else(|| invalid("LookupServiceRequestList without LookupService"))?;
        let reader_node = child(service, META_NS, "Reader").ok_or_else(|| invalid("LookupService without Reader"))?;
        let reader = identifier(reader_node)?;
        let service_type = child(service, XTA_NS, "ServiceType")
            .map(text)
            .ok_or_else(|| invalid("LookupService without ServiceType"))?;
        let available = ctx.config.partner_for(&reader).is_some();
        let certificate = ctx
            .keys
            .partner_authorities
            .get(&reader)
            .and_then(|c| c.to_der().ok())
            .filter(|_| available);
        let parameter = certificate
            .map(|der| {
                format!(
                    "<xta:ServiceParameter><xta:ParameterType listURI=\"urn:poststelle:xta:service-parameter\" listVersionID=\"1\"><code>encryption-certificate</code></xta:ParameterType>\
                     <xta:Resource>{}</xta:Resource></xta:ServiceParameter>",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der)
                )
            })
            .unwrap_or_default();
        results.push_str(&format!(
            "<xta:LookupServiceResult><oscimeta:Reader><oscimeta:Identifier type=\"xoev\">{}</oscimeta:Identifier></oscimeta:Reader>\
             <xta:ServiceType>{}</xta:ServiceType><xta:IsServiceAvailableValue><xta:ServiceIsAvailable>{available}</xta:ServiceIsAvailable></xta:IsServiceAvailableValue>{parameter}</xta:LookupServiceResult>",
            esc(&reader),
            esc(&service_type)
        ));
    }
    if results.is_empty() {
        return Err(invalid("LookupServiceRequest lists no LookupService"));
    }
    Ok(format!(
        "<xta:LookupServiceResponse xmlns:xta=\"{XTA_NS}\" xmlns:oscimeta=\"{META_NS}\"><xta:LookupServiceResultList>{results}</xta:LookupServiceResultList></xta:LookupServiceResponse>"
    ))
}

/// XTA's traffic light for a Poststelle state: 0 still in progress, 1 delivered, 3 ended
/// without delivery.
fn traffic_light(status: Status) -> u8 {
    match status {
        Status::Delivered => 1,
        Status::Rejected | Status::Failed | Status::Cancelled | Status::Refused => 3,
        _ => 0,
    }
}

/// getTransportReport: the message's state, its metadata (as the client sent it), every
/// timeline event as an info record, the error if it ended without delivery, and the
/// partner's signed receipt (and delivery notice) as additional reports.
async fn report(ctx: &Ctx, client: &Client, body: Node<'_, '_>) -> Result<String, Problem> {
    let id = body_message_id(body)?;
    let m = own_outbound(ctx, client, &id).await?;
    let events = ctx.store.events(&id).await.map_err(store_problem)?;
    let meta = match ctx.store.blob(&id, Blob::XtaMetadata).await.map_err(store_problem)? {
        Some(b) => String::from_utf8_lossy(&b).into_owned(),
        None => metadata(&m, None),
    };
    let record = |kind: &str, at: i64, code: &str, reason: &str| {
        format!(
            "<xta:{kind}><xta:Timestamp>{}</xta:Timestamp><xta:Code listURI=\"urn:poststelle:status\" listVersionID=\"1\"><code>{}</code></xta:Code><xta:Reason>{}</xta:Reason></xta:{kind}>",
            rfc3339(at),
            esc(code),
            esc(reason)
        )
    };
    let infos: String = events
        .iter()
        .map(|e| record("Info", e.at, e.status.as_str(), e.detail.as_deref().unwrap_or("")))
        .collect();
    let light = traffic_light(m.status);
    let errors = match (&m.error_code, light) {
        (Some(code), 3) => format!(
            "<xta:ErrorList>{}</xta:ErrorList>",
            record("Error", m.updated_at, code, m.error_detail.as_deref().unwrap_or(""))
        ),
        _ => String::new(),
    };
    let mut reports = String::new();
    for (blob, key) in [(Blob::Receipt, "receipt"), (Blob::Notice, "notice")] {
        if let Some(b) = ctx.store.blob(&id, blob).await.map_err(store_problem)? {
            reports.push_str(&format!(
                "<xta:Report><xta:Key listURI=\"urn:poststelle:xta:report\" listVersionID=\"1\"><code>{key}</code></xta:Key><xta:Data>{}</xta:Data></xta:Report>",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b)
            ));
        }
    }
    if !reports.is_empty() {
        reports = format!("<xta:AdditionalReports>{reports}</xta:AdditionalReports>");
    }
    Ok(format!(
        "<xta:TransportReport xmlns:xta=\"{XTA_NS}\">{meta}<xta:ReportTime>{}</xta:ReportTime>\
         <xta:XTAServerIdentity>urn:poststelle:node:{}</xta:XTAServerIdentity>\
         <xta:MessageStatus><xta:Status>{light}</xta:Status>{errors}<xta:InfoList>{infos}</xta:InfoList></xta:MessageStatus>{reports}</xta:TransportReport>",
        rfc3339(crate::store::now_millis()),
        esc(&ctx.config.node_name)
    ))
}

/// Metadata for a stored message when none was sent with it (the reader's side): author,
/// reader, the id as it travelled, and the message type as Poststelle names it.
fn metadata(m: &Message, payload_ns: Option<&str>) -> String {
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
struct SendMeta {
    author: String,
    reader: String,
    id: String,
    type_code: String,
    payload_schema: String,
}

fn send_meta<'a, 'i>(header: Node<'a, 'i>) -> Result<(SendMeta, Node<'a, 'i>), Problem> {
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
        .find(|c| c.is_element() && c.tag_name().name() == "code")
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

async fn send(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    match send_inner(&ctx, req).await {
        Ok(a) => a.into_response(),
        Err(f) => f.into_response(),
    }
}

async fn send_inner(ctx: &Ctx, req: Request) -> Result<Answer, Fault> {
    let call = read_call(ctx, req).await?;
    let doc = call.request.parse(&ctx.config.limits)?;
    let p = parsed(&call, &doc)?;
    match p.action.as_str() {
        A_SEND => {}
        A_SEND_SYNC => {
            let mut f = fault(&invalid(
                "synchronous sending is not offered: partners answer asynchronously; use sendMessage",
            ));
            f.subcode = Some((XTA_NS, Exception::SyncAsync.element().to_owned()));
            f.detail = f
                .detail
                .replace("ParameterIsNotValidException", "SyncAsyncException")
                .replace(
                    &format!("<code>{}</code>", Exception::ParameterIsNotValid.number()),
                    &format!("<code>{}</code>", Exception::SyncAsync.number()),
                );
            return Err(f);
        }
        other => return Err(unsupported(other, "Send")),
    }
    let (meta, meta_node) = send_meta(p.header).map_err(|e| fault(&e))?;
    own_authority(&meta.author, &call.client).map_err(|e| fault(&e))?;
    let id = message_id(&meta.id).map_err(|e| fault(&e))?;
    let container = child(p.body, XTA_NS, "GenericContentContainer")
        .ok_or_else(|| fault(&invalid("the body holds no xta:GenericContentContainer")))?;
    let content = child(container, XTA_NS, "ContentContainer").ok_or_else(|| {
        fault(&invalid(
            "only a ContentContainer is accepted: the node checks the message against its schema, so it cannot take content encrypted by the author (xenc:EncryptedData)",
        ))
    })?;
    if child(content, XTA_NS, "Attachment").is_some() {
        return Err(fault(&invalid(
            "attachments are not carried yet: send the XÖV message alone",
        )));
    }
    let message =
        child(content, XTA_NS, "Message").ok_or_else(|| fault(&invalid("ContentContainer has no Message")))?;
    let bytes = call.request.content(message)?;
    if bytes.len() > ctx.config.limits.max_bytes {
        return Err(fault(&Problem::new(
            Code::LimitExceeded,
            format!("the message exceeds {} bytes", ctx.config.limits.max_bytes),
        )));
    }
    let _permit = ctx
        .intake_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| fault(&Problem::overloaded(1)))?;
    let meta_xml = &call.request.envelope[meta_node.range()];
    let meta_xml = with_namespaces(meta_xml, meta_node);
    let agrees = |c: &super::Checked| -> Result<(), Problem> {
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
        let ns = root_namespace(&c.payload).unwrap_or_default();
        if meta.payload_schema != ns {
            return Err(mismatch("payloadSchema", &meta.payload_schema, &ns));
        }
        Ok(())
    };
    super::submit_as(
        ctx,
        &call.client,
        Arc::from(bytes),
        Some(id),
        Some(meta_xml.into_bytes()),
        &agrees,
    )
    .await
    .map_err(|e| fault(&e))?;
    Ok(Answer {
        action: A_SEND.into(),
        relates_to: p.message_id.clone(),
        ..Answer::default()
    })
}

/// An element cut out of its document, with the namespace declarations in scope added to
/// it, so it stands on its own.
fn with_namespaces(xml: &str, node: Node<'_, '_>) -> String {
    let Some(end) = xml.find(['>', '/', ' ', '\t', '\r', '\n']) else {
        return xml.to_owned();
    };
    let mut decls = String::new();
    for ns in node.namespaces() {
        let attr = match ns.name() {
            Some(prefix) => format!(" xmlns:{prefix}=\"{}\"", esc(ns.uri())),
            None => format!(" xmlns=\"{}\"", esc(ns.uri())),
        };
        if !xml[..xml.find('>').unwrap_or(xml.len())].contains(attr.trim_start()) {
            decls.push_str(&attr);
        }
    }
    format!("{}{decls}{}", &xml[..end], &xml[end..])
}

/// The namespace of a document's root element.
fn root_namespace(xml: &[u8]) -> Option<String> {
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

async fn msgbox(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    match msgbox_inner(&ctx, req).await {
        Ok(a) => a.into_response(),
        Err(f) => f.into_response(),
    }
}

/// The reader's MsgBox: what was delivered to the client's authority and not yet closed,
/// oldest first.
async fn inbox(ctx: &Ctx, client: &Client) -> Result<Vec<Message>, Problem> {
    let mut items = ctx.store.inbox(&client.authority).await.map_err(store_problem)?;
    items.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(items)
}

/// The MsgBox entry a message id names (the sender's id, as it travelled).
fn find<'a>(items: &'a [Message], xta: &str) -> Result<&'a Message, Problem> {
    let id = message_id(xta)?;
    items
        .iter()
        .find(|m| m.remote_id.as_deref() == Some(id.as_str()))
        .ok_or_else(|| Problem::new(Code::NotFound, format!("no message {xta} in this MsgBox")))
}

/// The MsgBox's answer header: how many further messages wait, or (`found` false) that none
/// matched.
fn msgbox_response(request_id: &str, found: bool, pending: usize) -> String {
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

/// MsgBoxRequestIDs name the position after which a "next" request continues: the last
/// message handed out (empty: from the start).
fn request_id(after: Option<&str>) -> String {
    format!("urn:poststelle:msgbox:{}", after.unwrap_or("start"))
}

fn after_of(request_id: &str) -> Result<Option<String>, Problem> {
    match request_id.strip_prefix("urn:poststelle:msgbox:") {
        Some("start" | "none") => Ok(None),
        Some(id) if uuid::Uuid::parse_str(id).is_ok() => Ok(Some(id.to_owned())),
        _ => Err(Problem::new(
            Code::InvalidRequest,
            format!("unknown MsgBoxRequestID {request_id}"),
        )),
    }
}

async fn msgbox_inner(ctx: &Ctx, req: Request) -> Result<Answer, Fault> {
    let call = read_call(ctx, req).await?;
    let doc = call.request.parse(&ctx.config.limits)?;
    let p = parsed(&call, &doc)?;
    author_header(&p, &call.client).map_err(|e| fault(&e))?;
    let client = &call.client;
    let items = inbox(ctx, client).await.map_err(|e| fault(&e))?;
    let answer = |body: String, headers: String, parts| Answer {
        action: p.action.clone(),
        relates_to: p.message_id.clone(),
        headers,
        body,
        parts,
    };
    match p.action.as_str() {
        A_LIST | A_NEXT_LIST => {
            let (max, after) = if p.action == A_LIST {
                let r = child(p.body, OSCI_NS, "MsgBoxStatusListRequest")
                    .ok_or_else(|| fault(&invalid("the body holds no MsgBoxStatusListRequest")))?;
                (
                    r.attribute("maxListItems")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(100usize),
                    None,
                )
            } else {
                let r = child(p.body, OSCI_NS, "MsgBoxGetNextRequest")
                    .ok_or_else(|| fault(&invalid("the body holds no MsgBoxGetNextRequest")))?;
                (
                    100,
                    after_of(r.attribute("MsgBoxRequestID").unwrap_or("")).map_err(|e| fault(&e))?,
                )
            };
            let rest: Vec<&Message> = items
                .iter()
                .filter(|m| {
                    after
                        .as_deref()
                        .is_none_or(|a| m.remote_id.as_deref().unwrap_or("") > a)
                })
                .collect();
            let page = &rest[..rest.len().min(max)];
            let mut list = String::new();
            for m in page {
                list.push_str(&metadata(m, payload_namespace(ctx, m).await.as_deref()));
            }
            let last = page.last().and_then(|m| m.remote_id.as_deref());
            let headers = msgbox_response(
                &request_id(last.or(after.as_deref())),
                !page.is_empty(),
                rest.len() - page.len(),
            );
            Ok(answer(
                format!("<osci:MsgStatusList xmlns:osci=\"{OSCI_NS}\">{list}</osci:MsgStatusList>"),
                headers,
                Vec::new(),
            ))
        }
        A_FETCH | A_NEXT => {
            let (m, after) = if p.action == A_FETCH {
                let r = child(p.body, OSCI_NS, "MsgBoxFetchRequest")
                    .ok_or_else(|| fault(&invalid("the body holds no MsgBoxFetchRequest")))?;
                let id = child(r, OSCI_NS, "MsgSelector")
                    .and_then(|s| child(s, WSA_NS, "MessageID"))
                    .map(text)
                    .ok_or_else(|| fault(&invalid("MsgBoxFetchRequest names no MsgSelector/wsa:MessageID")))?;
                (Some(find(&items, &id).map_err(|e| fault(&e))?), None)
            } else {
                let r = child(p.body, OSCI_NS, "MsgBoxGetNextRequest")
                    .ok_or_else(|| fault(&invalid("the body holds no MsgBoxGetNextRequest")))?;
                let after = after_of(r.attribute("MsgBoxRequestID").unwrap_or("")).map_err(|e| fault(&e))?;
                let next = items.iter().find(|m| {
                    after
                        .as_deref()
                        .is_none_or(|a| m.remote_id.as_deref().unwrap_or("") > a)
                });
                (next, after)
            };
            let Some(m) = m else {
                let e = Problem::new(Code::NotFound, "the MsgBox holds no further message");
                let mut f = fault(&e);
                f.detail
                    .push_str(&msgbox_response(&request_id(after.as_deref()), false, 0));
                return Err(f);
            };
            let payload = ctx
                .store
                .blob(&m.id, Blob::Payload)
                .await
                .map_err(|e| fault(&store_problem(e)))?
                .ok_or_else(|| fault(&Problem::new(Code::NotFound, "the payload was purged")))?;
            let payload = super::for_client(client, payload, &ctx.registry)
                .await
                .map_err(|e| fault(&e))?;
            let ns = root_namespace(&payload);
            let travelled = m.remote_id.as_deref().unwrap_or(&m.id);
            let pending = items
                .iter()
                .filter(|x| x.remote_id.as_deref().unwrap_or("") > travelled)
                .count();
            let cid = format!("message.{travelled}@poststelle");
            let body = format!(
                "<xta:GenericContentContainer xmlns:xta=\"{XTA_NS}\"><xta:ContentContainer>\
                 <xta:Message contentType=\"application/xml\" filename=\"{travelled}.xml\" size=\"{}\">{}</xta:Message>\
                 </xta:ContentContainer></xta:GenericContentContainer>",
                payload.len(),
                soap::include(&cid)
            );
            let headers = format!(
                "{}{}",
                metadata(m, ns.as_deref()),
                msgbox_response(&request_id(Some(travelled)), true, pending)
            );
            Ok(answer(body, headers, vec![(cid, "application/xml".into(), payload)]))
        }
        A_CLOSE => {
            let r = child(p.body, OSCI_NS, "MsgBoxCloseRequest")
                .ok_or_else(|| fault(&invalid("the body holds no MsgBoxCloseRequest")))?;
            let ids: Vec<String> = r
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "LastMsgReceived")
                .map(text)
                .collect();
            if ids.is_empty() {
                return Err(fault(&invalid("MsgBoxCloseRequest names no LastMsgReceived")));
            }
            // Check every id before closing any, so a bad list changes nothing.
            let mut local = Vec::new();
            for id in &ids {
                local.push(find(&items, id).map_err(|e| fault(&e))?.id.clone());
            }
            for id in local {
                super::http::acknowledge(ctx, client, &id, "closed over XTA")
                    .await
                    .map_err(|e| fault(&e))?;
            }
            Ok(answer(String::new(), String::new(), Vec::new()))
        }
        other => Err(unsupported(other, "MsgBox")),
    }
}

async fn payload_namespace(ctx: &Ctx, m: &Message) -> Option<String> {
    let payload = ctx.store.blob(&m.id, Blob::Payload).await.ok()??;
    root_namespace(&payload)
}
