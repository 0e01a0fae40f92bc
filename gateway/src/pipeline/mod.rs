//! The message path, one file per stage, no wire format: what happens to a message between
//! the listener that took it and the one that hands it on.
//!
//! ```text
//! sending node:    validate ─▶ (intake commits: accepted) ─▶ seal ─▶ relay ─▶ received / rejected
//! receiving node:  (partner/receive stores: received) ─▶ open ─▶ deliver ─▶ notice ─▶ sender: delivered
//! ```
//!
//! `worker.rs` runs the jobs (claim with a lease, one attempt per task, backoff, retry budget);
//! each stage returns `Result<(), Failure>`, and [`worker`] maps a [`Failure`] to its store
//! change in one place.

pub mod attachments;
pub mod batch;
pub mod deliver;
pub mod notice;
pub mod open;
pub mod relay;
pub mod seal;
pub mod validate;
pub mod worker;

use crate::problem::Problem;
use crate::store::StoreError;

/// How an attempt at a stage failed. Every stage returns this one type; `worker::settle`
/// decides what becomes of the message.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt later (no answer, a 5xx, the store busy, the validation pool
    /// full): retried with capped backoff until the retry budget is spent.
    Transient(String),
    /// Fails the same way every time: the message ends with this problem — an outbound one as
    /// `failed`, a received one as `refused` (the sender is told); a push or notice job is
    /// dropped.
    Permanent(Problem),
    /// Opening this received message failed (or crashed the node) this many times: it is set
    /// aside as `refused` (internal) instead of looping.
    Poison(u32),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Transient(e.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(reason) => f.write_str(reason),
            Failure::Permanent(p) => write!(f, "{p}"),
            Failure::Poison(n) => write!(f, "failed {n} times"),
        }
    }
}

impl Failure {
    /// A transient failure from anything that prints.
    pub fn transient(e: impl std::fmt::Display) -> Self {
        Failure::Transient(e.to_string())
    }
}

/// What every stage returns: `Ok` when its store change was applied (or nothing was left to do).
pub type Outcome = Result<(), Failure>;
