//! Prometheus metrics: every metric name, its help text and its buckets are defined here and
//! nowhere else (the README lists them). Counters and histograms are recorded where things
//! happen; gauges (queues, certificates, store size, circuits) are sampled when `/metrics` is
//! scraped, so they are never stale by more than a scrape.
//!
//! Labels are bounded sets only (states, problem codes, job kinds, error classes, partner and
//! certificate names from the config): never message ids, XÖV UUIDs or anything from a payload.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Client submissions by outcome: `accepted`, `duplicate`, or the problem code.
pub const INTAKE: &str = "poststelle_intake_total";
/// Time from a submission's arrival to its durable commit or refusal.
pub const INTAKE_SECONDS: &str = "poststelle_intake_seconds";
/// State transitions by new state (messages by stage and outcome; `received` and `delivered`
/// count both directions).
pub const TRANSITIONS: &str = "poststelle_messages_total";
/// Duration of one job attempt by kind (relay, open, push, notice) and outcome.
pub const JOB_SECONDS: &str = "poststelle_job_seconds";
/// Failed attempts to reach a partner, by class.
pub const RELAY_ERRORS: &str = "poststelle_relay_errors_total";
/// Messages not done per direction, partner and state.
pub const QUEUE_DEPTH: &str = "poststelle_queue_depth";
/// How long the longest-waiting message of a queue has been in its state.
pub const QUEUE_OLDEST: &str = "poststelle_queue_oldest_seconds";
/// Days until a configured certificate expires (negative: expired).
pub const CERT_DAYS: &str = "poststelle_certificate_days_left";
/// Bytes of the store on disk (database and write-ahead log).
pub const STORE_BYTES: &str = "poststelle_store_bytes";
/// 1 while a partner's circuit is open or half-open, else 0.
pub const CIRCUIT_OPEN: &str = "poststelle_partner_circuit_open";
/// Files waiting in a drop-folder client's `out/`.
pub const DROP_WAITING: &str = "poststelle_drop_files_waiting";
/// How long the oldest file in a drop-folder client's `out/` has been waiting.
pub const DROP_OLDEST: &str = "poststelle_drop_oldest_seconds";
/// Files refused into a drop-folder client's `rejected/` (still there).
pub const DROP_REJECTED: &str = "poststelle_drop_files_rejected";
/// Counter: configuration reloads by outcome (`applied`, `refused`).
pub const RELOADS: &str = "poststelle_config_reloads_total";
/// Gauge: 1 while the last reload was refused (the configuration loaded before stays in force).
pub const RELOAD_REFUSED: &str = "poststelle_config_reload_refused";
/// Gauge: configured certificates that expire within 30 days (or have expired), by role.
pub const CERT_EXPIRING: &str = "poststelle_certificates_expiring";

/// Counter: bytes of attachment streams sent to partners, and received from them.
pub const ATTACHMENT_BYTES: &str = "poststelle_attachment_bytes_total";

/// Latency buckets (seconds) for intake and job attempts: 1 ms … 60 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; nodes started in one process, as by `demo`,
/// share it) and returns the handle that renders the exposition text.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for name in [INTAKE_SECONDS, JOB_SECONDS] {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(name.into()), &BUCKETS)
                    .expect("non-empty buckets");
            }
            let handle = builder
                .install_recorder()
                .expect("the metrics recorder is installed once");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        INTAKE,
        "Client submissions by outcome (accepted, duplicate, or the problem code)."
    );
    describe_histogram!(
        INTAKE_SECONDS,
        metrics::Unit::Seconds,
        "Submission arrival to durable commit or refusal."
    );
    describe_counter!(TRANSITIONS, "Message state transitions by new state.");
    describe_histogram!(
        JOB_SECONDS,
        metrics::Unit::Seconds,
        "One job attempt by kind and outcome."
    );
    describe_counter!(RELAY_ERRORS, "Failed attempts to reach a partner node, by class.");
    describe_counter!(
        ATTACHMENT_BYTES,
        "Bytes of encrypted attachment streams sent to partner nodes (direction=sent) and received from them (direction=received)."
    );
    describe_gauge!(QUEUE_DEPTH, "Messages not done, by direction, partner and state.");
    describe_gauge!(
        QUEUE_OLDEST,
        metrics::Unit::Seconds,
        "Time the longest-waiting message of a queue has been in its state."
    );
    describe_gauge!(
        CERT_DAYS,
        "Days until a configured certificate expires (negative: expired)."
    );
    describe_gauge!(
        STORE_BYTES,
        metrics::Unit::Bytes,
        "Store size on disk (database and write-ahead log)."
    );
    describe_gauge!(CIRCUIT_OPEN, "1 while a partner's circuit is open or half-open.");
    describe_gauge!(DROP_WAITING, "Files waiting in a drop-folder client's out/.");
    describe_gauge!(
        DROP_OLDEST,
        metrics::Unit::Seconds,
        "Time the oldest file in a drop-folder client's out/ has been waiting."
    );
    describe_gauge!(DROP_REJECTED, "Files refused into a drop-folder client's rejected/.");
    describe_counter!(
        crate::revocation::CHECKS,
        "OCSP answers about partner certificates by role and outcome (good, revoked, unknown, failed)."
    );
    describe_gauge!(
        crate::revocation::FAILING,
        "Certificates of a role (partners', and our node certificate for stapling) whose last OCSP check got no usable answer (alert on > 0)."
    );
    describe_counter!(
        crate::revocation::SOFT_FAILS,
        "Certificates accepted without an OCSP answer under soft_fail, by role."
    );
    describe_counter!(RELOADS, "Configuration reloads by outcome (applied, refused).");
    describe_gauge!(
        RELOAD_REFUSED,
        "1 while the last configuration reload was refused (the one loaded before stays in force)."
    );
    describe_gauge!(
        CERT_EXPIRING,
        "Configured certificates that expire within 30 days or have expired, by role (alert on > 0)."
    );
}

pub fn intake(outcome: &'static str, took: Duration) {
    counter!(INTAKE, "outcome" => outcome).increment(1);
    histogram!(INTAKE_SECONDS).record(took.as_secs_f64());
}

pub fn reload(outcome: &'static str) {
    counter!(RELOADS, "outcome" => outcome).increment(1);
    metrics::gauge!(RELOAD_REFUSED).set(if outcome == "refused" { 1.0 } else { 0.0 });
}

pub fn transition(status: crate::store::Status) {
    counter!(TRANSITIONS, "status" => status.as_str()).increment(1);
}

pub fn job(kind: crate::store::JobKind, outcome: &'static str, took: Duration) {
    histogram!(JOB_SECONDS, "kind" => kind.as_str(), "outcome" => outcome).record(took.as_secs_f64());
}

/// Bytes of an attachment stream sent to a partner.
pub fn attachment_sent(bytes: u64) {
    counter!(ATTACHMENT_BYTES, "direction" => "sent").increment(bytes);
}

/// Bytes of an attachment stream received from a partner.
pub fn attachment_received(bytes: u64) {
    counter!(ATTACHMENT_BYTES, "direction" => "received").increment(bytes);
}

/// Classes of relay errors: `unreachable`, `timeout`, `http-5xx`, `http-429`, `http-408`,
/// `bad-receipt`.
pub fn relay_error(class: &'static str) {
    counter!(RELAY_ERRORS, "class" => class).increment(1);
}

/// The class of a transport failure without an answer.
pub fn no_answer_class(reason: &str) -> &'static str {
    if reason.contains("timed out") || reason.contains("timeout") {
        "timeout"
    } else {
        "unreachable"
    }
}

/// The class of an answer that is retried.
pub fn status_class(status: u16) -> &'static str {
    match status {
        429 => "http-429",
        408 => "http-408",
        _ => "http-5xx",
    }
}
