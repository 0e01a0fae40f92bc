//! Problems: the one error shape every client sees (RFC 9457 style JSON), with the codes from
//! PRODUCT.md, and the single place where a code maps to an HTTP status.
//!
//! A problem never carries message content: `detail` and `errors` hold positions and schema
//! diagnostics about what the client itself sent, nothing read from a stored message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Machine-readable problem codes (PRODUCT.md). Stable: clients branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    NotWellFormed,
    ForbiddenConstruct,
    LimitExceeded,
    UnsupportedEncoding,
    UnknownMessageType,
    SchemaInvalid,
    HeaderInvalid,
    NotPermitted,
    UnknownRecipient,
    DuplicateConflict,
    Overloaded,
    Unauthorized,
    NotFound,
    UnsupportedMediaType,
    /// Partner transport: the TLS peer is not the partner the envelope names as sender.
    SenderMismatch,
    /// Partner transport: the envelope was refused for a reason not covered above.
    EnvelopeInvalid,
    /// XML security: an algorithm, transform or URI outside the profile (checked before any cryptography).
    AlgorithmNotAllowed,
    /// XML security: a digest or signature value does not match, or the signature's structure
    /// is not the profile's (none or several signatures, duplicate IDs, unsigned parts).
    SignatureInvalid,
    /// XML security: the signer's certificate is untrusted, expired, revoked or too weak.
    CertificateInvalid,
    /// XML security: the signature is valid but made by someone else than the expected signer.
    SignerMismatch,
    /// XML security: the encrypted data cannot be decrypted (one generic answer for every cause).
    DecryptionFailed,
    /// The request's body did not arrive within the body timeout (slow client).
    RequestTimeout,
    /// Partner transport: the envelope's creation time lies further in the future than the
    /// receiver's clock tolerance allows.
    ClockSkew,
    /// Partner transport: an attachment stream the envelope names has not (all) arrived; the
    /// sender sends the rest and the envelope again.
    AttachmentIncomplete,
    /// A message's retry budget (time-box or attempts) is spent: the dead-letter state `failed`.
    RetriesExhausted,
    /// An operator cancelled the message.
    Cancelled,
    /// A request's parameters are malformed (admin API filters).
    InvalidRequest,
    /// An operator action does not apply to the message in its current state.
    WrongState,
    /// An adapter's XSLT transform (legacy format ↔ standard) failed or produced nothing usable.
    TransformFailed,
    /// A configuration reload was refused (every problem listed); the one loaded before stays.
    ConfigInvalid,
    /// The node itself failed (store unavailable); the client may retry. Never used for bad input.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotWellFormed => "not-well-formed",
            Code::ForbiddenConstruct => "forbidden-construct",
            Code::LimitExceeded => "limit-exceeded",
            Code::UnsupportedEncoding => "unsupported-encoding",
            Code::UnknownMessageType => "unknown-message-type",
            Code::SchemaInvalid => "schema-invalid",
            Code::HeaderInvalid => "header-invalid",
            Code::NotPermitted => "not-permitted",
            Code::UnknownRecipient => "unknown-recipient",
            Code::DuplicateConflict => "duplicate-conflict",
            Code::Overloaded => "overloaded",
            Code::Unauthorized => "unauthorized",
            Code::NotFound => "not-found",
            Code::UnsupportedMediaType => "unsupported-media-type",
            Code::SenderMismatch => "sender-mismatch",
            Code::EnvelopeInvalid => "envelope-invalid",
            Code::AlgorithmNotAllowed => "algorithm-not-allowed",
            Code::SignatureInvalid => "signature-invalid",
            Code::CertificateInvalid => "certificate-invalid",
            Code::SignerMismatch => "signer-mismatch",
            Code::DecryptionFailed => "decryption-failed",
            Code::RequestTimeout => "request-timeout",
            Code::ClockSkew => "clock-skew",
            Code::AttachmentIncomplete => "attachment-incomplete",
            Code::RetriesExhausted => "retries-exhausted",
            Code::Cancelled => "cancelled",
            Code::WrongState => "wrong-state",
            Code::InvalidRequest => "invalid-request",
            Code::TransformFailed => "transform-failed",
            Code::ConfigInvalid => "config-invalid",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status for this code — the only place that decides it.
    pub fn status(self) -> StatusCode {
        match self {
            Code::NotWellFormed | Code::ForbiddenConstruct | Code::UnsupportedEncoding | Code::EnvelopeInvalid => {
                StatusCode::BAD_REQUEST
            }
            Code::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnknownMessageType | Code::SchemaInvalid | Code::HeaderInvalid | Code::UnknownRecipient => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::AlgorithmNotAllowed | Code::SignatureInvalid | Code::CertificateInvalid | Code::DecryptionFailed => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::NotPermitted | Code::SenderMismatch | Code::SignerMismatch => StatusCode::FORBIDDEN,
            Code::DuplicateConflict => StatusCode::CONFLICT,
            Code::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::ClockSkew => StatusCode::UNPROCESSABLE_ENTITY,
            Code::AttachmentIncomplete => StatusCode::CONFLICT,
            Code::RetriesExhausted => StatusCode::GATEWAY_TIMEOUT,
            Code::Cancelled => StatusCode::GONE,
            Code::WrongState => StatusCode::CONFLICT,
            Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::TransformFailed | Code::ConfigInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Code::NotWellFormed => "The message is not well-formed XML",
            Code::ForbiddenConstruct => "The message uses a forbidden XML construct",
            Code::LimitExceeded => "The message exceeds a limit",
            Code::UnsupportedEncoding => "The message is not in a supported encoding",
            Code::UnknownMessageType => "No adapter handles this message type",
            Code::SchemaInvalid => "The message is not valid against its schema",
            Code::HeaderInvalid => "The message header is invalid",
            Code::NotPermitted => "The client may not send this message",
            Code::UnknownRecipient => "The recipient authority is not in the directory",
            Code::DuplicateConflict => "A different message was already accepted under this message UUID",
            Code::Overloaded => "The node is at capacity; retry later",
            Code::Unauthorized => "Authentication is missing or invalid",
            Code::NotFound => "No such resource",
            Code::UnsupportedMediaType => "The body must be application/xml",
            Code::SenderMismatch => "The TLS peer is not the envelope's sender",
            Code::EnvelopeInvalid => "The envelope is invalid",
            Code::AlgorithmNotAllowed => "An algorithm outside the security profile was used",
            Code::SignatureInvalid => "The XML signature is invalid",
            Code::CertificateInvalid => "The signer's certificate is not acceptable",
            Code::SignerMismatch => "The signature was made by someone else than the expected signer",
            Code::DecryptionFailed => "The data cannot be decrypted",
            Code::RequestTimeout => "The request body did not arrive in time",
            Code::ClockSkew => "The sender's clock is too far ahead of the receiver's",
            Code::AttachmentIncomplete => "An attachment the envelope names has not arrived whole",
            Code::RetriesExhausted => "The message could not be relayed within its retry budget",
            Code::Cancelled => "An operator cancelled the message",
            Code::WrongState => "The action does not apply to the message in its current state",
            Code::InvalidRequest => "The request's parameters are malformed",
            Code::TransformFailed => "The adapter's transform failed",
            Code::ConfigInvalid => "The new configuration was refused; the one loaded before stays in force",
            Code::Internal => "The node could not complete the request; retry later",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its causes, outermost first (`error sending request: connection refused`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// One positioned diagnostic, e.g. a schema error at line 12, column 7.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, utoipa::ToResponse)]
#[response(
    description = "A problem document with a machine-readable code",
    content_type = "application/problem+json"
)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub code: Code,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Diagnostic>,
    /// Seconds to wait before retrying (only with `overloaded`).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

/// Most diagnostics a problem lists; the rest are summarised, so that a hostile document cannot
/// make the answer grow with its errors.
pub const MAX_DIAGNOSTICS: usize = 50;

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: format!("urn:poststelle:problem:{}", code.as_str()),
            title: code.title().to_owned(),
            status: code.status().as_u16(),
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, mut errors: Vec<Diagnostic>) -> Self {
        if errors.len() > MAX_DIAGNOSTICS {
            let more = errors.len() - MAX_DIAGNOSTICS;
            errors.truncate(MAX_DIAGNOSTICS);
            errors.push(Diagnostic {
                line: None,
                column: None,
                message: format!("{more} more errors not listed"),
            });
        }
        self.errors = errors;
        self
    }

    pub fn at(code: Code, line: u32, column: u32, message: impl Into<String>) -> Self {
        let message = message.into();
        Problem::new(code, format!("line {line}, column {column}: {message}")).with_errors(vec![Diagnostic {
            line: Some(line),
            column: Some(column),
            message,
        }])
    }

    pub fn overloaded(retry_after: u32) -> Self {
        let mut p = Problem::new(Code::Overloaded, "the node is at capacity");
        p.retry_after = Some(retry_after);
        p
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let retry_after = self.retry_after;
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}
