//! The only code that talks to partner nodes: `receive.rs` (the transport listener,
//! `POST /v1/transport`; `files.rs` the attachment streams beside it; `batch.rs` several
//! envelopes in one request), `amqp.rs` (the same over the node's transport queue), `send.rs`
//! (requests to a partner's transport over HTTPS or the broker). Partner health (slots, circuit
//! breaker) is `crate::health`, held by `Ctx`.

pub mod amqp;
pub mod batch;
pub mod files;
pub mod receive;
pub mod send;
