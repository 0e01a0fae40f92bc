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

// Faults are the cold path and carry their serialised detail; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roxmltree::Node;

use super::soap::{self, Answer, Fault, WSA_NS, child, esc, problem_xml, text};
use crate::config::Client;
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::wire::store_problem;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::store::{Blob, Message, Status, rfc3339};

pub const XTA_NS: &str = "http://xoev.de/transport/xta/211";
pub const META_NS: &str = "http://www.osci.eu/ws/2014/10/transport";
pub const OSCI_NS: &str = "http://www.osci.eu/ws/2008/05/transport";
/// Prefix of the message ids this node hands out and accepts.
pub const ID_PREFIX: &str = "urn:de:xta:messageid:";
/// The code list of XTA's fault numbers (`Code.Fehlernummer`).
const FEHLERNUMMER: &str = "urn:de:xta:webservice:codeliste:fehlernummer";
/// Our code list for message types in metadata we write ourselves (the reader's MsgBox).
const TYPE_LIST: &str = "urn:poststelle:xta:message-type";

pub fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/xta/management", post(|s, r| port(s, r, Port::Management)))
        .route("/xta/send", post(|s, r| port(s, r, Port::Send)))
        .route("/xta/msgbox", post(|s, r| port(s, r, Port::MsgBox)))
}

/// The WSDL's three ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Management,
    Send,
    MsgBox,
}

/// Management and MsgBox requests carry ids and lookups, never content.
const CONTROL_BODY_LIMIT: usize = 256 * 1024;
/// A Fachverfahren asks for a handful of readers at once; more is a mistake or an attack.
const MAX_LOOKUPS: usize = 100;
/// The most entries one status list answers (`maxListItems` is capped to it).
const MAX_LIST_ITEMS: usize = 100;
/// The most `MessageMetaData` kept with a message (it is metadata, not content).
const MAX_METADATA: usize = 64 * 1024;

/// The XTA exceptions of the WSDL.
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

use Exception as E;

impl Exception {
    fn element(self) -> &'static str {
        match self {
            E::PermissionDenied => "PermissionDeniedException",
            E::ParameterIsNotValid => "ParameterIsNotValidException",
            E::TechnicalProblem => "XTAWSTechnicalProblemException",
            E::MessageSchemaViolation => "MessageSchemaViolationException",
            E::InvalidMessageId => "InvalidMessageIDException",
            E::SyncAsync => "SyncAsyncException",
            E::CancelDenied => "CancelDeniedException",
        }
    }
}

/// An operation: its action and the faults the WSDL declares for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operation {
    action: &'static str,
    faults: &'static [Exception],
}

const CHECK_ACCOUNT: Operation = Operation {
    action: "http://www.xta.de/XTA/CheckAccountActive",
    faults: &[E::PermissionDenied, E::TechnicalProblem],
};
const LOOKUP_SERVICE: Operation = Operation {
    action: "http://www.xta.de/XTA/IsServiceAvailable",
    faults: &[E::PermissionDenied, E::ParameterIsNotValid, E::TechnicalProblem],
};
const TRANSPORT_REPORT: Operation = Operation {
    action: "http://www.xta.de/XTA/GetTransportReport",
    faults: &[E::PermissionDenied, E::TechnicalProblem, E::InvalidMessageId],
};
const CANCEL_MESSAGE: Operation = Operation {
    action: "http://www.xta.de/XTA/CancelMessage",
    faults: &[
        E::PermissionDenied,
        E::ParameterIsNotValid,
        E::TechnicalProblem,
        E::CancelDenied,
    ],
};
const CREATE_MESSAGE_ID: Operation = Operation {
    action: "http://www.xta.de/XTA/CreateMessageID",
    faults: &[E::PermissionDenied, E::TechnicalProblem],
};
const SEND_FAULTS: &[Exception] = &[
    E::PermissionDenied,
    E::ParameterIsNotValid,
    E::TechnicalProblem,
    E::MessageSchemaViolation,
    E::SyncAsync,
];
const SEND_MESSAGE: Operation = Operation {
    action: "http://www.xta.de/XTA/SendMessage",
    faults: SEND_FAULTS,
};
const SEND_MESSAGE_SYNC: Operation = Operation {
    action: "http://www.xta.de/XTA/SendMessageSync",
    faults: SEND_FAULTS,
};
const MSGBOX_FAULTS: &[Exception] = &[E::PermissionDenied, E::TechnicalProblem, E::InvalidMessageId];
const MSGBOX_LIST_FAULTS: &[Exception] = &[E::PermissionDenied, E::TechnicalProblem];
const GET_MESSAGE: Operation = Operation {
    action: "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxFetchRequest",
    faults: MSGBOX_FAULTS,
};
const GET_STATUS_LIST: Operation = Operation {
    action: "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest",
    faults: MSGBOX_LIST_FAULTS,
};
const GET_NEXT_MESSAGE: Operation = Operation {
    action: "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxGetNextMsgRequest",
    faults: MSGBOX_FAULTS,
};
const GET_NEXT_STATUS_LIST: Operation = Operation {
    action: "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxGetNextListRequest",
    faults: MSGBOX_LIST_FAULTS,
};
const CLOSE: Operation = Operation {
    action: "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxCloseRequest",
    faults: MSGBOX_FAULTS,
};

impl Port {
    fn operations(self) -> &'static [Operation] {
        match self {
            Port::Management => &[
                CHECK_ACCOUNT,
                LOOKUP_SERVICE,
                TRANSPORT_REPORT,
                CANCEL_MESSAGE,
                CREATE_MESSAGE_ID,
            ],
            Port::Send => &[SEND_MESSAGE, SEND_MESSAGE_SYNC],
            Port::MsgBox => &[
                GET_MESSAGE,
                GET_STATUS_LIST,
                GET_NEXT_MESSAGE,
                GET_NEXT_STATUS_LIST,
                CLOSE,
            ],
        }
    }

    fn body_limit(self, ctx: &Ctx) -> usize {
        match self {
            // The XÖV message may travel as base64 in the envelope: room for that growth.
            Port::Send => ctx.config.limits.max_bytes / 3 * 4 + 256 * 1024,
            Port::Management | Port::MsgBox => CONTROL_BODY_LIMIT,
        }
    }
}

/// The exception and `Code.Fehlernummer` (number, its name in the code list) a problem is
/// reported as — one mapping for every operation.
fn classify(p: &Problem) -> (Exception, u32, &'static str) {
    match p.code {
        Code::Unauthorized => (E::PermissionDenied, 9012, "Account nicht vorhanden."),
        Code::NotPermitted if p.detail.contains("may not send") => {
            (E::PermissionDenied, 9013, "Dienst ist nicht gebucht.")
        }
        Code::NotPermitted => (
            E::PermissionDenied,
            9014,
            "Authentisierung/Zertifikat passt nicht zur Absenderkennung.",
        ),
        Code::UnsupportedEncoding => (
            E::MessageSchemaViolation,
            9051,
            "Fachnachricht trägt ein falsches Encoding.",
        ),
        Code::NotWellFormed
        | Code::ForbiddenConstruct
        | Code::UnknownMessageType
        | Code::SchemaInvalid
        | Code::HeaderInvalid
        | Code::TransformFailed => (E::MessageSchemaViolation, 9050, "Fachnachricht ist nicht schemakonform"),
        Code::LimitExceeded => (
            E::ParameterIsNotValid,
            9023,
            "Die Nachricht überschreitet die Größenbeschränkung.",
        ),
        Code::DuplicateConflict => (E::ParameterIsNotValid, 9024, "MessageID ist bereits vergeben."),
        Code::NotFound => (E::InvalidMessageId, 9070, "MessageID für den Account nicht bekannt."),
        Code::WrongState => (
            E::CancelDenied,
            9100,
            "Der durch den Schalter NotBefore gesetzte Termin ist verstrichen.",
        ),
        Code::Internal | Code::Overloaded | Code::RequestTimeout => (
            E::TechnicalProblem,
            9030,
            "Interner Fehler beim XTA-Server bzw. XTA-Dienstleister",
        ),
        _ => (E::ParameterIsNotValid, 9022, "Ungültige Parameterkombination"),
    }
}

/// The operation's fault for a problem: the XTA exception with its number in the detail,
/// beside the problem itself. An exception the WSDL does not declare for the operation would
/// not map to a typed fault in stacks generated from it: then an invalid id is reported as the
/// operation's `InvalidMessageIDException` where it has one, anything else as a plain SOAP
/// fault with the problem.
fn fault(op: Operation, p: &Problem) -> Fault {
    let mut class = classify(p);
    if !op.faults.contains(&class.0) && op.faults.contains(&E::InvalidMessageId) && p.code == Code::InvalidRequest {
        class = (E::InvalidMessageId, 9070, "MessageID für den Account nicht bekannt.");
    }
    fault_as(op, class, p)
}

/// The operation's fault as this exception and Fehlernummer.
fn fault_as(op: Operation, (exception, number, name): (Exception, u32, &str), p: &Problem) -> Fault {
    if !op.faults.contains(&exception) {
        let mut f = Fault::from_problem(p);
        f.action = op.action.into();
        return f;
    }
    let receiver = exception == E::TechnicalProblem;
    Fault {
        status: soap::http_status(p, receiver),
        code: if receiver { "Receiver" } else { "Sender" },
        subcode: Some((XTA_NS, exception.element().to_owned())),
        reason: p.detail.clone(),
        detail: format!(
            "<xta:{e} xmlns:xta=\"{XTA_NS}\"><xta:errorCode listURI=\"{FEHLERNUMMER}\" listVersionID=\"1.0\">\
             <code>{number}</code><name>{name}</name></xta:errorCode></xta:{e}>{problem}",
            e = exception.element(),
            problem = problem_xml(p)
        ),
        action: op.action.into(),
        relates_to: None,
        headers: String::new(),
        retry_after: p.retry_after,
    }
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(Code::InvalidRequest, detail)
}

/// What every port does first: authenticate, take an intake slot (Send), read the body within
/// the port's limit, read the SOAP framing.
struct Call {
    client: Client,
    request: soap::Request,
    /// The envelope's pre-scan limits: the message limit for content, the port's body size for
    /// the envelope as a whole.
    limits: crate::xml::prescan::Limits,
    /// Held until the answer: bounds how many bodies are in memory at once, as on the REST API.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

async fn read_call(ctx: &Ctx, req: Request, port: Port) -> Result<Call, Fault> {
    let plain = |p: Problem| Fault::from_problem(&p);
    // Every operation declares PermissionDeniedException, so a bad token gets it before the
    // operation is known (and before its body is read).
    let client = super::http::authenticate(ctx, req.headers())
        .map_err(|p| {
            let mut f = fault(CHECK_ACCOUNT, &p);
            f.action = soap::FAULT_ACTION.into();
            f
        })?
        .clone();
    let permit = match port {
        Port::Send => Some(
            ctx.intake_permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| plain(Problem::overloaded(1)))?,
        ),
        Port::Management | Port::MsgBox => None,
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let limit = port.body_limit(ctx);
    let body = crate::wire::read_body(ctx, req.into_body(), limit)
        .await
        .map_err(plain)?;
    let request = soap::read(&content_type, &body)?;
    Ok(Call {
        client,
        request,
        limits: crate::xml::prescan::Limits {
            max_bytes: limit,
            ..ctx.config.limits
        },
        _permit: permit,
    })
}

/// The parts of a parsed request every operation needs.
struct Parsed<'a, 'i> {
    op: Operation,
    /// The request's `wsa:MessageID`, for `wsa:RelatesTo` in the answer.
    message_id: Option<String>,
    header: Node<'a, 'i>,
    body: Node<'a, 'i>,
}

/// Header blocks this node reads; any other with `mustUnderstand` is refused (SOAP 1.2 §5.2.3).
fn understood(n: Node<'_, '_>) -> bool {
    let ns = n.tag_name().namespace();
    ns == Some(WSA_NS) || ns == Some(META_NS) || ns == Some(OSCI_NS)
}

fn parse_call<'a, 'i>(call: &Call, doc: &'a roxmltree::Document<'i>, port: Port) -> Result<Parsed<'a, 'i>, Fault> {
    let env = doc.root_element();
    let header = child(env, soap::SOAP_NS, "Header").ok_or_else(|| {
        Fault::addressing(
            "MessageAddressingHeaderRequired",
            "<wsa:ProblemHeaderQName>wsa:Action</wsa:ProblemHeaderQName>",
            "the SOAP message has no Header",
        )
    })?;
    let body = child(env, soap::SOAP_NS, "Body")
        .ok_or_else(|| Fault::from_problem(&invalid("the SOAP message has no Body")))?;
    let action = child(header, WSA_NS, "Action").map(text).ok_or_else(|| {
        Fault::addressing(
            "MessageAddressingHeaderRequired",
            "<wsa:ProblemHeaderQName>wsa:Action</wsa:ProblemHeaderQName>",
            "WS-Addressing is required: the header has no wsa:Action",
        )
    })?;
    let message_id = child(header, WSA_NS, "MessageID").map(text);
    let with_relation = |mut f: Fault| {
        f.relates_to = message_id.clone();
        f
    };
    if let Some(media) = &call.request.media_action
        && media != &action
    {
        return Err(with_relation(Fault::addressing(
            "InvalidAddressingHeader",
            "<wsa:ProblemHeaderQName>wsa:Action</wsa:ProblemHeaderQName>",
            format!("the media type's action {media} is not the wsa:Action {action}"),
        )));
    }
    for block in header.children().filter(|c| c.is_element()) {
        let must = block
            .attribute((soap::SOAP_NS, "mustUnderstand"))
            .is_some_and(|v| v == "true" || v == "1");
        if must && !understood(block) {
            let mut f = Fault::from_problem(&invalid(format!(
                "the header block {{{}}}{} must be understood, and this node does not read it",
                block.tag_name().namespace().unwrap_or(""),
                block.tag_name().name()
            )));
            f.code = "MustUnderstand";
            f.subcode = None;
            return Err(with_relation(f));
        }
    }
    let op = port
        .operations()
        .iter()
        .find(|o| o.action == action)
        .copied()
        .ok_or_else(|| {
            with_relation(Fault::addressing(
                "ActionNotSupported",
                &format!(
                    "<wsa:ProblemAction><wsa:Action>{}</wsa:Action></wsa:ProblemAction>",
                    esc(&action)
                ),
                format!("the {port:?} port has no operation for the action {action}"),
            ))
        })?;
    Ok(Parsed {
        op,
        message_id,
        header,
        body,
    })
}

/// One port: read, parse, run the operation, answer (or fault, related to the request).
async fn port(State(ctx): State<Arc<Ctx>>, req: Request, port: Port) -> Response {
    let call = match read_call(&ctx, req, port).await {
        Ok(c) => c,
        Err(f) => return f.into_response(),
    };
    let doc = match call.request.parse(&call.limits) {
        Ok(d) => d,
        Err(f) => return f.into_response(),
    };
    let p = match parse_call(&call, &doc, port) {
        Ok(p) => p,
        Err(f) => return f.into_response(),
    };
    let relates_to = p.message_id.clone();
    let result = match port {
        Port::Management => management(&ctx, &call, &p).await,
        Port::Send => send(&ctx, &call, &p).await,
        Port::MsgBox => msgbox(&ctx, &call, &p).await,
    };
    match result {
        Ok((headers, body, parts)) => Answer {
            action: p.op.action.into(),
            relates_to,
            headers,
            body,
            parts,
        }
        .into_response(),
        Err(Failure::Problem(problem, headers)) => {
            let mut f = fault(p.op, &problem);
            f.relates_to = relates_to;
            f.headers = headers;
            f.into_response()
        }
        Err(Failure::Fault(mut f)) => {
            f.relates_to = relates_to;
            f.into_response()
        }
    }
}

/// How an operation fails: a problem (reported as the operation's fault, with extra header
/// blocks), or a fault made already (from the SOAP framing).
enum Failure {
    Problem(Problem, String),
    Fault(Fault),
}

impl From<Problem> for Failure {
    fn from(p: Problem) -> Failure {
        Failure::Problem(p, String::new())
    }
}

impl From<Fault> for Failure {
    fn from(f: Fault) -> Failure {
        Failure::Fault(f)
    }
}

/// An operation's answer: header blocks, body, MTOM parts.
type Answered = Result<(String, String, Vec<(String, String, Vec<u8>)>), Failure>;

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

/// A Poststelle message id from an XTA message id: exactly `urn:de:xta:messageid:` and a
/// lower-case hyphenated uuid, so that one message has one spelling.
fn message_id(xta_id: &str) -> Result<String, Problem> {
    let raw = xta_id.strip_prefix(ID_PREFIX).unwrap_or("");
    match uuid::Uuid::parse_str(raw) {
        Ok(id) if id.hyphenated().to_string() == raw && !id.is_nil() => Ok(raw.to_owned()),
        _ => Err(invalid(format!(
            "{xta_id:?} is not a message id of the form {ID_PREFIX}<uuid> (lower-case, hyphenated)"
        ))),
    }
}

fn xta_id(id: &str) -> String {
    format!("{ID_PREFIX}{id}")
}

/// The `wsa:MessageID` a request body consists of, as a Poststelle id.
fn body_message_id(body: Node<'_, '_>) -> Result<String, Problem> {
    let id = child(body, WSA_NS, "MessageID").ok_or_else(|| invalid("the body holds no wsa:MessageID"))?;
    message_id(&text(id))
}

async fn management(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
    author_header(p, &call.client)?;
    let body = match p.op {
        CHECK_ACCOUNT => String::new(),
        CREATE_MESSAGE_ID => {
            let id = xta_id(&uuid::Uuid::now_v7().to_string());
            format!("<wsa:MessageID>{id}</wsa:MessageID>")
        }
        LOOKUP_SERVICE => lookup(ctx, p.body)?,
        TRANSPORT_REPORT => report(ctx, &call.client, p.body).await?,
        CANCEL_MESSAGE => {
            let id = body_message_id(p.body)?;
            crate::actions::own_message(ctx, &call.client, &id).await?;
            let who = format!("cancelled by client {} (XTA)", call.client.name);
            let result = crate::actions::cancel_message(ctx, &id, &who).await;
            ctx.audit.note(
                &format!("client:{}", call.client.name),
                "cancel",
                serde_json::json!({
                    "message_id": id,
                    "outcome": result.as_ref().map_or_else(|p| p.code.as_str(), |_| "ok"),
                }),
            );
            result?;
            String::new()
        }
        _ => unreachable!("the Management port's operations are listed in Port::operations"),
    };
    Ok((String::new(), body, Vec::new()))
}

/// lookupService: for each reader and service, whether this node can deliver to it — the
/// reader is served by a partner in the directory — and, if so, the reader's encryption
/// certificate as a service parameter.
fn lookup(ctx: &Ctx, body: Node<'_, '_>) -> Result<String, Problem> {
    let request =
        child(body, XTA_NS, "LookupServiceRequest").ok_or_else(|| invalid("the body holds no LookupServiceRequest"))?;
    let items: Vec<Node<'_, '_>> = request
        .children()
        .filter(|c| c.has_tag_name((XTA_NS, "LookupServiceRequestList")))
        .take(MAX_LOOKUPS + 1)
        .collect();
    if items.len() > MAX_LOOKUPS {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!("at most {MAX_LOOKUPS} lookups per request"),
        ));
    }
    let mut results = String::new();
    for item in items {
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
                    B64.encode(der)
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
    let m = crate::actions::own_message(ctx, client, &id).await?;
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
                B64.encode(b)
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

async fn send(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
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
    let total = bytes.len() + attachments.iter().map(|a| a.data.len()).sum::<usize>();
    if total > ctx.config.limits.max_bytes {
        return Err(Problem::new(
            Code::LimitExceeded,
            format!(
                "the message and its attachments exceed {} bytes",
                ctx.config.limits.max_bytes
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
    let agrees = |c: &super::Checked| metadata_agrees(&meta, &submitted_ns, c);
    let mut keep = vec![(Blob::XtaMetadata, meta_xml.into_bytes())];
    if !attachments.is_empty() {
        keep.push((Blob::Attachments, crate::envelope::encode_attachments(&attachments)));
    }
    super::submit_as(ctx, &call.client, Arc::from(bytes), Some(id), keep, &agrees).await?;
    Ok((String::new(), String::new(), Vec::new()))
}

/// The `Attachment`s of a ContentContainer: opaque files that travel with the message, signed
/// and encrypted with it, never parsed.
fn attachments(call: &Call, content: Node<'_, '_>) -> Result<Vec<crate::envelope::Attachment>, Failure> {
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
            Ok(crate::envelope::Attachment {
                content_type: content_type.to_owned(),
                filename: short("filename").map(str::to_owned),
                data: call.request.content(n)?,
            })
        })
        .collect()
}

/// The metadata must say what the message's own header says.
fn metadata_agrees(meta: &SendMeta, submitted_ns: &str, c: &super::Checked) -> Result<(), Problem> {
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
fn with_namespaces(xml: &str, node: Node<'_, '_>) -> String {
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

/// The reader's MsgBox: what was delivered to the client's authority and not yet closed, in
/// the order it arrived (at most the store's inbox page).
async fn inbox(ctx: &Ctx, client: &Client) -> Result<Vec<Message>, Problem> {
    let mut items = ctx.store.inbox(&client.authority).await.map_err(store_problem)?;
    items.sort_by(|a, b| position(a).cmp(&position(b)));
    Ok(items)
}

/// A MsgBox entry's place in the MsgBox's order.
fn position(m: &Message) -> (i64, &str) {
    (m.created_at, m.id.as_str())
}

/// The received message an XTA id names for this client (the sender's id, as it travelled),
/// opened or already closed.
async fn msgbox_entry(ctx: &Ctx, client: &Client, xta: &str) -> Result<Message, Problem> {
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

/// MsgBoxRequestIDs carry where a "next" request continues: the place of the last entry
/// handed out in the MsgBox's order (`start`: from the beginning).
fn request_id(after: Option<(i64, &str)>) -> String {
    match after {
        Some((at, id)) => format!("urn:poststelle:msgbox:{at}:{id}"),
        None => "urn:poststelle:msgbox:start".into(),
    }
}

/// The place a MsgBoxRequestID continues after (`None`: from the beginning).
fn after_of(request_id: &str) -> Result<Option<(i64, String)>, Problem> {
    let rest = request_id.strip_prefix("urn:poststelle:msgbox:");
    if rest == Some("start") {
        return Ok(None);
    }
    rest.and_then(|r| r.split_once(':'))
        .and_then(|(at, id)| Some((at.parse().ok()?, uuid::Uuid::parse_str(id).ok()?.to_string())))
        .map(Some)
        .ok_or_else(|| invalid(format!("unknown MsgBoxRequestID {request_id}")))
}

fn after<'m>(items: &'m [Message], cursor: &Option<(i64, String)>) -> Vec<&'m Message> {
    items
        .iter()
        .filter(|m| cursor.as_ref().is_none_or(|(at, id)| position(m) > (*at, id.as_str())))
        .collect()
}

async fn msgbox(ctx: &Ctx, call: &Call, p: &Parsed<'_, '_>) -> Answered {
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
fn request<'a, 'i>(p: &Parsed<'a, 'i>, name: &str) -> Result<Node<'a, 'i>, Problem> {
    child(p.body, OSCI_NS, name).ok_or_else(|| invalid(format!("the body holds no osci:{name}")))
}

/// getStatusList / getNextStatusList: the metadata of (the next) up to `maxListItems` entries.
async fn status_list(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
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
async fn fetch(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
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
        for (i, a) in crate::envelope::decode_attachments(&b)?.into_iter().enumerate() {
            let acid = format!("attachment{i}.{travelled}@poststelle");
            attached.push_str(&format!(
                "<xta:Attachment contentType=\"{}\"{}{}>{}</xta:Attachment>",
                esc(&a.content_type),
                a.filename
                    .as_deref()
                    .map(|f| format!(" filename=\"{}\"", esc(f)))
                    .unwrap_or_default(),
                // xs:positiveInteger: no size for an empty file.
                Some(a.data.len())
                    .filter(|n| *n > 0)
                    .map(|n| format!(" size=\"{n}\""))
                    .unwrap_or_default(),
                soap::include(&acid)
            ));
            parts.push((acid, a.content_type, a.data));
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
    parts.insert(0, (cid, "application/xml".into(), payload));
    Ok((headers, body, parts))
}

/// close: the client took these messages (`delivered`, the sender is told). Every id is
/// checked before any is closed; one closed before counts as closed (a retried close).
async fn close(ctx: &Ctx, client: &Client, p: &Parsed<'_, '_>) -> Answered {
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
fn standard_namespace(ctx: &Ctx, m: &Message) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_out_metadata_keeps_its_own_declarations_and_gains_the_ones_in_scope() {
        let doc = "<e:Envelope xmlns:e='urn:e' xmlns:m=\"urn:m\" xmlns=\"urn:d\"><e:Header>\
                   <m:MessageMetaData xmlns:m='urn:m' a='x>y'><x/></m:MessageMetaData></e:Header></e:Envelope>";
        let parsed = roxmltree::Document::parse(doc).unwrap();
        let node = parsed
            .descendants()
            .find(|n| n.has_tag_name(("urn:m", "MessageMetaData")))
            .unwrap();
        let cut = with_namespaces(&doc[node.range()], node);
        // Well-formed on its own: no declaration twice, the ones in scope added.
        let standalone = roxmltree::Document::parse(&cut).unwrap();
        let root = standalone.root_element();
        assert!(root.has_tag_name(("urn:m", "MessageMetaData")), "{cut}");
        assert_eq!(root.attribute("a"), Some("x>y"));
        assert_eq!(
            root.first_element_child().unwrap().tag_name().namespace(),
            Some("urn:d"),
            "{cut}"
        );
    }

    #[test]
    fn message_ids_have_one_spelling() {
        let id = "0190f2a4-0000-7000-8000-000000000001";
        assert_eq!(message_id(&format!("{ID_PREFIX}{id}")).unwrap(), id);
        for other in [
            format!("{ID_PREFIX}{}", id.to_uppercase()),
            format!("{ID_PREFIX}{{{id}}}"),
            format!("{ID_PREFIX}{}", id.replace('-', "")),
            format!("{ID_PREFIX}00000000-0000-0000-0000-000000000000"),
            format!("urn:uuid:{id}"),
        ] {
            assert!(message_id(&other).is_err(), "{other}");
        }
    }
}
