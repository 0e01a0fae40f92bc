//! Fault injection for the fault suite (`tests/e2e/faults.rs`), built on the `fail` crate.
//!
//! Only with the cargo feature `failpoints` (the test harness enables it); without it every
//! [`failpoint!`](crate::failpoint) expands to nothing. A node process reads its fail points from
//! the `FAILPOINTS` environment variable at start, e.g.
//! `FAILPOINTS='relay.after_send=1*return(abort)'`. Besides `fail`'s own actions (`sleep(ms)`,
//! `panic`, `N*…`, `P%…`), `return(abort)` ends the process on the spot like `kill -9`: no
//! destructors, no flush. Sites that need more (an HTTP status, a corrupted answer) read the
//! `return` argument with [`value`].
//!
//! Fail points, at every stage boundary:
//! `intake.before_commit`, `intake.after_commit`, `relay.after_seal`, `relay.after_send`,
//! `transport.before_store`, `transport.after_store`, `transport.answer` (`return(500)`,
//! `return(corrupt)`), `open.before_commit`, `push.after_callback`, `ack.after_commit`,
//! `clock.offset_ms` (`return(MS)`: this node's clock runs MS milliseconds ahead),
//! `drop.before_submit`, `drop.before_move` (a drop file committed, not yet moved to `sent/`),
//! `drop.after_write` (a received message's `in/` file durable, `delivered` not yet committed),
//! `transport.file_chunk` (each piece of an attachment stream a partner sends),
//! `transport.file_before_rename` (a stream's last byte durable, not yet named complete),
//! `relay.file_corrupt` (`return(corrupt)`: attachment streams leave with a bit flipped),
//! `amqp.intake`, `amqp.poison` (`return(TEXT)`: a queued message containing TEXT panics intake),
//! `notice.gather` (`return(MS)`: a notice waits MS milliseconds before gathering the others due),
//! `receipts.hold` (`return(MS)`: a receipt's signature waits MS milliseconds, so that those of
//! other envelopes arriving meanwhile are signed together after it),
//! `relay.gather` (`return(MS)`: a relay job waits MS milliseconds before claiming the other
//! envelopes due for its partner, which then travel in its request),
//! `transport.several` (`return(refuse)`: a request with several envelopes is read as one
//! document and refused, as a node of an earlier version does).

/// Evaluates a fail point: `return(abort)` aborts the process; other `fail` actions act as
/// configured; nothing without the `failpoints` feature.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        {
            if let Some(Some(arg)) = ::fail::eval($name, |arg| arg)
                && arg == "abort"
            {
                ::tracing::warn!(failpoint = $name, "fail point: aborting the process");
                std::process::abort();
            }
        }
    };
}

/// The `return(ARG)` argument configured for `name`, if any (always `None` without the feature).
pub fn value(name: &str) -> Option<String> {
    #[cfg(feature = "failpoints")]
    {
        fail::eval(name, |arg| arg).flatten()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = name;
        None
    }
}

/// Installs the fail points named in `FAILPOINTS` (process start).
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        if std::env::var_os("FAILPOINTS").is_some() {
            std::mem::forget(fail::FailScenario::setup());
        }
    }
}

/// This node's clock offset in milliseconds (`clock.offset_ms`), for clock-skew tests.
pub fn clock_offset_ms() -> i64 {
    #[cfg(feature = "failpoints")]
    {
        value("clock.offset_ms").and_then(|v| v.parse().ok()).unwrap_or(0)
    }
    #[cfg(not(feature = "failpoints"))]
    {
        0
    }
}
