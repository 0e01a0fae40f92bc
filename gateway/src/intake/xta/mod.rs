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

mod management;
mod msgbox;
mod send;

use management::*;
use msgbox::*;
use send::*;

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
            Port::Send => ctx.config().limits.max_bytes / 3 * 4 + 256 * 1024,
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
fn fault_as(op: Operation, class: (Exception, u32, &str), p: &Problem) -> Fault {
    if !op.faults.contains(&class.0) {
        let mut f = Fault::from_problem(p);
        f.action = op.action.into();
        return f;
    }
    xta_fault(class, p, op.action)
}

/// A fault whose subcode is the XTA exception, with its Fehlernummer and the problem in the
/// detail, under `action`.
fn xta_fault((exception, number, name): (Exception, u32, &str), p: &Problem, action: &str) -> Fault {
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
        action: action.into(),
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
    let client = super::http::authenticate(ctx, req.headers()).map_err(|p| {
        let mut f = fault(CHECK_ACCOUNT, &p);
        f.action = soap::FAULT_ACTION.into();
        f
    })?;
    let permit = match port {
        Port::Send => Some(
            ctx.intake_permits
                .clone()
                .try_acquire_owned()
                .map_err(|_| plain(Problem::overloaded(1)))?,
        ),
        Port::Management | Port::MsgBox => None,
    };
    let content_type = crate::wire::content_type(req.headers());
    let limit = port.body_limit(ctx);
    let too_large = |p: Problem| match p.code {
        Code::LimitExceeded => xta_fault(classify(&p), &p, soap::FAULT_ACTION),
        _ => plain(p),
    };
    let mtom = content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/related");
    let request = if port == Port::Send && mtom {
        // Attachments of any size: binary parts go to files as they arrive; the envelope
        // (and a part that must be decoded whole) stays under the port's limit.
        let config = ctx.config();
        let limits = soap::StreamLimits {
            root: limit,
            part: config.limits.max_attachment_bytes.max(config.limits.max_bytes as u64),
            parts: crate::envelope::MAX_ATTACHMENTS + 1,
            idle: config.server.body_timeout(),
        };
        soap::read_streamed(&content_type, req.into_body(), &config.files(), limits)
            .await
            .map_err(|f| {
                if f.status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    too_large(Problem::new(Code::LimitExceeded, f.reason.clone()))
                } else {
                    f
                }
            })?
    } else {
        // A body over the port's limit is refused before the operation is known: as
        // ParameterIsNotValidException with 9023 ("too large"), whatever the operation.
        let body = crate::wire::read_body(ctx, req.into_body(), limit)
            .await
            .map_err(too_large)?;
        soap::read(&content_type, &body)?
    };
    Ok(Call {
        client,
        request,
        limits: crate::xml::prescan::Limits {
            max_bytes: limit,
            ..ctx.config().limits
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
type Answered = Result<(String, String, Vec<(String, String, soap::Part)>), Failure>;

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
