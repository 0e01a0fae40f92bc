//! The store: durable messages, their event timelines, and the jobs that move them on.
//!
//! Design constraints (every implementation — SQLite in `sqlite.rs`, PostgreSQL in `pg.rs` —
//! keeps them; `conformance.rs` runs one suite against both):
//! 1. **Durable before acknowledged.** A method returns only after its write is committed and
//!    synced (`synchronous=FULL` for SQLite); callers acknowledge (HTTP 2xx, receipts) after that.
//! 2. **One transition = one atomic write.** A status change, its timeline event, the blobs it
//!    sets and the jobs it finishes or enqueues commit together ([`Change`]); there is no state
//!    in which a message moved but its follow-up job is missing (transactional outbox).
//! 3. **Work is claimed with leases.** A job is owned by whoever claimed it until its lease
//!    expires; after a crash the lease runs out and another worker (or the restarted node) takes
//!    the job over. Jobs are therefore at-least-once; their effects are idempotent.
//! 4. **Idempotent intake.** Outbound: one message per (client, XÖV message UUID); the same
//!    content again returns the existing id, other content is a conflict. Inbound: one message
//!    per (sender node, sender's message id); a resend gets the original receipt.
//! 5. **Metadata and payload are apart.** Listing and status queries never load payloads, so
//!    retention can purge payloads while the timeline stays.
//! 6. **Conditional transitions.** A [`Change`] may name the states it expects; if the message is
//!    elsewhere (an operator cancelled it, a duplicate worker got there first) nothing is written.
//! 7. **A restarted process takes its own work back at once.** [`Store::release_leases`] frees
//!    the leases the previous run of this process held: with SQLite (one process per data
//!    folder, under an exclusive lock) that is every lease; with PostgreSQL, the leases named
//!    with this process's holder name. Leases of other processes run out and are taken over;
//!    crash recovery of a restarted process does not wait for its own leases to run out.
//! 8. **Bounded.** A size limit refuses *new* work ([`StoreError::Full`], 503 to the caller)
//!    when it could take the store past 90 % of the limit once every message in flight has
//!    grown (sealed, opened), so messages already accepted keep the room they need to move on;
//!    a full store never corrupts or drops what it holds.
//! 9. **Deadlines.** Every outbound message carries the end of its retry time-box; after it,
//!    [`Store::expire`] moves it to `failed` unless a worker holds it right now.

#[cfg(test)]
mod conformance;
pub mod pg;
pub mod sqlite;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + crate::failpoints::clock_offset_ms()
}

/// RFC 3339 UTC rendering of a store time.
pub fn rfc3339(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Reads an RFC 3339 time as a store time.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Sent by one of our clients to a partner.
    Outbound,
    /// Received from a partner for one of our authorities.
    Inbound,
}

impl Direction {
    /// The direction a store column names (`inbound`, else outbound).
    fn from_column(d: &str) -> Direction {
        if d == "inbound" {
            Direction::Inbound
        } else {
            Direction::Outbound
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Lifecycle states (PRODUCT.md). Sender side: accepted → sealed → sent → received → delivered,
/// or rejected / failed / cancelled. Receiver side: received → opened → delivered | refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Sealed,
    Sent,
    Received,
    Opened,
    Delivered,
    Rejected,
    Refused,
    Failed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Sealed => "sealed",
            Status::Sent => "sent",
            Status::Received => "received",
            Status::Opened => "opened",
            Status::Delivered => "delivered",
            Status::Rejected => "rejected",
            Status::Refused => "refused",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kinds of background work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Outbound: build the envelope and send it to the partner node.
    Relay,
    /// Inbound: open the received envelope (validate its content) for delivery.
    Open,
    /// Inbound: tell the sender's node about delivery or refusal.
    Notice,
    /// Inbound: push the opened message to the client's callback.
    Push,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Relay => "relay",
            JobKind::Open => "open",
            JobKind::Notice => "notice",
            JobKind::Push => "push",
        }
    }

    pub const ALL: [JobKind; 4] = [JobKind::Relay, JobKind::Open, JobKind::Notice, JobKind::Push];

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A message's metadata (no payloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: String,
    pub direction: Direction,
    pub status: Status,
    /// Outbound: the submitting client's name.
    pub client: Option<String>,
    pub xoev_uuid: String,
    /// Hex SHA-256 of the XÖV message as submitted (outbound) or of the envelope (inbound).
    pub digest: String,
    pub message_type: String,
    pub author: String,
    pub reader: String,
    /// The partner node: recipient's node (outbound) or sender's node (inbound).
    pub partner_node: String,
    /// Inbound: the sender node's message id (what notices refer to).
    pub remote_id: Option<String>,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// One entry of a message's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub at: Millis,
    pub status: Status,
    pub detail: Option<String>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub message_id: String,
    /// The message's partner node (whom relay and notice jobs talk to).
    pub partner_node: String,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The message's retry deadline (outbound), if it has one.
    pub deadline: Option<Millis>,
    /// When the message was stored.
    pub created_at: Millis,
}

/// One queue as operators see it: the messages of one direction, partner and state that are
/// not done (dead letters included), with how long the longest-waiting one has been there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub direction: Direction,
    pub partner_node: String,
    pub status: Status,
    pub depth: u64,
    /// The earliest `updated_at` among them: since when the oldest has been in this state.
    pub oldest: Millis,
}

/// Activity in one minute (for the dashboard's last-hour charts).
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    /// The minute's start (milliseconds).
    pub start: Millis,
    /// Outbound messages delivered to the partner's client.
    pub delivered: u64,
    /// Outbound messages that became dead letters.
    pub failed: u64,
    /// Inbound messages received from partners.
    pub received: u64,
    /// Outbound acceptance → delivered, average and maximum (milliseconds).
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<i64>,
}

/// A query over message metadata (operators' search, dead-letter replay).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub direction: Option<Direction>,
    /// Any of these states (empty: any state).
    pub status: Vec<Status>,
    pub partner_node: Option<String>,
    pub message_type: Option<String>,
    pub xoev_uuid: Option<String>,
    /// Created at or after / before (milliseconds).
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// At most this many, oldest first (0: a default of 1000).
    pub limit: usize,
    /// Newest first instead (the limit then keeps the newest).
    pub newest_first: bool,
}

/// What one retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Payload and envelope blobs deleted.
    pub blobs: usize,
    /// Messages deleted with their timeline and receipts.
    pub messages: usize,
}

#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// The id the client chose (XTA: from `createMessageId`); `None`: the store makes one.
    /// The same id again with other content, or from another client, is a conflict.
    pub id: Option<String>,
    pub client: String,
    pub xoev_uuid: String,
    pub digest: String,
    pub message_type: String,
    pub author: String,
    pub reader: String,
    pub partner_node: String,
    pub payload: Vec<u8>,
    /// Further blobs stored with it in the same write (XTA metadata, attachments).
    pub keep: Vec<(Blob, Vec<u8>)>,
    /// End of the retry time-box.
    pub deadline: Millis,
    /// The envelope, when it was sealed before the write: stored with the message, which then
    /// starts as `sealed` (its timeline `accepted`, `sealed` at the same time).
    pub sealed: Option<SealedEnvelope>,
}

impl NewOutbound {
    /// How a new message starts: its id (the client's, the sealed envelope's, or `new_id`'s),
    /// its creation time (the sealed envelope's, or now) and its status (`sealed` with an
    /// envelope, else `accepted`). For both stores' `accept`.
    pub(crate) fn start(&self, new_id: impl FnOnce() -> String) -> (String, Millis, Status) {
        let id = self
            .id
            .clone()
            .or_else(|| self.sealed.as_ref().map(|s| s.id.clone()))
            .unwrap_or_else(new_id);
        match &self.sealed {
            Some(s) => (id, s.created_at, Status::Sealed),
            None => (id, now_millis(), Status::Accepted),
        }
    }
}

/// An envelope sealed before its message was stored. It names the message's id and creation
/// time, so these are fixed before the write: `id` is used unless the client chose one (then
/// the two are the same), and the message is created at `created_at`. A resubmission finds the
/// existing message as without it; the envelope is then dropped.
#[derive(Debug, Clone)]
pub struct SealedEnvelope {
    pub id: String,
    pub created_at: Millis,
    pub envelope: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// Stored now under this id.
    Created(String),
    /// The same client sent the same content under this UUID before.
    Existing(String),
    /// The same client sent other content under this UUID before.
    Conflict(String),
}

#[derive(Debug, Clone)]
pub struct NewInbound {
    pub sender_node: String,
    pub remote_id: String,
    pub xoev_uuid: String,
    pub digest: String,
    pub message_type: String,
    pub author: String,
    pub reader: String,
    pub envelope: Vec<u8>,
    /// The receipt answered now, kept to answer resends with the same bytes.
    pub receipt: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveOutcome {
    Created(String),
    /// A resend of the message stored under `id`: the original receipt.
    Duplicate {
        id: String,
        receipt: Vec<u8>,
    },
    /// Same message id, different envelope digest.
    Conflict,
}

/// Which stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blob {
    /// The XÖV message (outbound: as submitted; inbound: as opened).
    Payload,
    /// The envelope as sent or received.
    Envelope,
    /// Outbound: the partner's receipt. Inbound: our receipt.
    Receipt,
    /// Outbound: the partner's latest notice (delivered / refused).
    Notice,
    /// Outbound over XTA: the client's `MessageMetaData`, kept for its transport reports.
    XtaMetadata,
    /// Files that travel with the message (`envelope::encode_attachments`): outbound as the
    /// client sent them, inbound as opened. Content: purged with the payload.
    Attachments,
}

/// One atomic transition of a message (see constraint 2).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub message_id: String,
    /// Write only if the message is in one of these states (empty: any).
    pub expect: Vec<Status>,
    /// New status; also recorded as a timeline event.
    pub status: Option<Status>,
    /// Extra timeline events before the status event (e.g. `sent` just before `received`).
    pub events_before: Vec<(Status, Option<String>)>,
    pub detail: Option<String>,
    pub error: Option<(String, String)>,
    pub blobs: Vec<(Blob, Vec<u8>)>,
    /// The job this change completes (deleted with the change).
    pub finish_job: Option<i64>,
    /// Follow-up jobs, due at the given times.
    pub enqueue: Vec<(JobKind, Millis)>,
    /// Delete every other job of the message (cancel, operator retry).
    pub drop_jobs: bool,
    /// Clear the message's error code and detail.
    pub clear_error: bool,
    /// A new retry deadline.
    pub deadline: Option<Millis>,
    /// Write nothing while a worker holds a lease on one of the message's jobs (operators
    /// do not pull a message from under a send in progress).
    pub unless_leased: bool,
    /// Answer before the commit is on disk (SQLite: without an fsync of its own, as a job
    /// claim; the next durable commit's fsync covers it). Only for a change whose loss to a
    /// power failure repeats idempotent work and tells no one anything: the end of a notice job
    /// whose notice the partner took (sent again, it is answered as before). PostgreSQL
    /// commits it like any other change.
    pub lazy: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store is busy")]
    Busy,
    #[error("store is full")]
    Full,
    #[error("store failed: {0}")]
    Failed(String),
}

/// The durable store (see the constraints above).
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    async fn accept(&self, m: NewOutbound) -> Result<AcceptOutcome, StoreError>;
    async fn receive(&self, m: NewInbound) -> Result<ReceiveOutcome, StoreError>;
    /// Claims the next due job of `kind` whose lease is free, leasing it for `lease`; jobs of
    /// messages for the partner nodes in `skip` are left alone (open circuit, concurrency cap).
    async fn claim(&self, kind: JobKind, lease: Duration, skip: &[String]) -> Result<Option<Job>, StoreError>;
    /// Claims up to `limit` more due jobs of `kind` for messages of partner node `partner`,
    /// the oldest first: what travels in one batch with a job [`Store::claim`] handed out.
    async fn claim_more(
        &self,
        kind: JobKind,
        partner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;
    /// Frees the leases this process's previous run held (at start; see constraint 7).
    async fn release_leases(&self) -> Result<u64, StoreError>;
    /// Applies a change; `Ok(false)` if the message was not in an expected state (nothing written,
    /// but `finish_job` is still removed so a stale job does not spin).
    async fn apply(&self, change: Change) -> Result<bool, StoreError>;
    /// Releases a job for another attempt at `due`, recording why.
    async fn retry_later(&self, job_id: i64, due: Millis, error: &str) -> Result<(), StoreError>;
    async fn message(&self, id: &str) -> Result<Option<Message>, StoreError>;
    /// A message's timeline, oldest first.
    async fn events(&self, id: &str) -> Result<Vec<Event>, StoreError>;
    async fn blob(&self, id: &str, blob: Blob) -> Result<Option<Vec<u8>>, StoreError>;
    /// Every stored blob of a kind (the attachment sweep reads all manifests).
    async fn blobs_of_kind(&self, blob: Blob) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Inbound messages for `authority` in state `opened` (delivered to the client, not acked).
    async fn inbox(&self, authority: &str) -> Result<Vec<Message>, StoreError>;
    /// Received messages for `reader` that the sender's node sent under `remote_id`, opened or
    /// delivered (XTA's MsgBox names messages by the id they travelled under; several
    /// partners could have used the same one).
    async fn inbound_by_remote_id(&self, reader: &str, remote_id: &str) -> Result<Vec<Message>, StoreError>;
    /// Counts of messages per (direction, status), for readiness and status views.
    async fn counts(&self) -> Result<Vec<(Direction, Status, u64)>, StoreError>;
    /// Queues: messages not done (every state but delivered, rejected, refused, cancelled) per
    /// direction, partner and state.
    async fn queues(&self) -> Result<Vec<Queue>, StoreError>;
    /// Activity per minute since `since`, minutes without any left out.
    async fn minutes(&self, since: Millis) -> Result<Vec<Minute>, StoreError>;
    /// Message metadata matching `filter`, oldest first.
    async fn list(&self, filter: Filter) -> Result<Vec<Message>, StoreError>;
    /// Moves outbound messages past their deadline, not held by a worker, to `failed`
    /// (`retries-exhausted`, keeping the last error); returns their ids.
    async fn expire(&self, now: Millis) -> Result<Vec<String>, StoreError>;
    /// Deletes payloads of ended messages last changed before `payload_before`, and ended
    /// messages entirely last changed before `metadata_before`.
    async fn purge(&self, payload_before: Millis, metadata_before: Millis) -> Result<Purged, StoreError>;
    /// How many bytes the store takes (SQLite: its files; PostgreSQL: its schema's tables).
    async fn size(&self) -> Result<u64, StoreError>;
    /// The kinds of jobs that *other processes* sharing this store enqueue, as they commit
    /// (PostgreSQL: `LISTEN`/`NOTIFY`), so that this process's workers claim them at once
    /// rather than at their next poll. `None` where no other process can enqueue (SQLite:
    /// one process per store). A hint only: workers keep polling.
    fn wakeups(&self) -> Option<tokio::sync::broadcast::Receiver<JobKind>> {
        None
    }
    /// Whether the node's audit log lives in this store (PostgreSQL: one chain for all the
    /// processes of a node); otherwise the node keeps it in a file in its data folder.
    fn keeps_audit(&self) -> bool {
        false
    }
    /// Appends the next entry of the audit chain in a transaction of its own; appends are
    /// serialised across processes, and the chain's head is written with the entry.
    async fn audit_append(&self, _entry: AuditEntry<'_>) -> Result<(), StoreError> {
        Err(no_audit())
    }
    /// Audit entries (sequence number, text) after sequence number `after`, at most `limit`,
    /// in order.
    async fn audit_read(&self, _after: u64, _limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        Err(no_audit())
    }
    /// The audit chain's head: its last sequence number and hash (`None`: no entry yet).
    async fn audit_head(&self) -> Result<Option<(u64, String)>, StoreError> {
        Err(no_audit())
    }
    /// Records that a process of the node is alive: inserts or refreshes its heartbeat row.
    /// A store that serves one process only (SQLite) keeps none.
    async fn heartbeat(&self, _process: &Process) -> Result<(), StoreError> {
        Ok(())
    }
    /// The node's processes by their heartbeat rows, by id; empty where the store keeps none.
    /// Rows not refreshed for a day are dropped.
    async fn processes(&self) -> Result<Vec<Process>, StoreError> {
        Ok(Vec::new())
    }
    /// Whether `holder` runs the periodic sweep `task` now: a shared store hands each task to
    /// one process at a time for `lease`, renewed by its holder each time it asks, taken over
    /// by another once it ran out (its holder died). Always true where one process uses the
    /// store.
    async fn lead(&self, _task: &str, _holder: &str, _lease: Duration) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Turns the status-event outbox on or off. While it is on, every timeline event written
    /// also writes an outbox row in the same transaction (a trigger on the events table), so a
    /// status event can be lost neither by a crash after the commit nor by a broker away;
    /// turning it off empties it. (On with `[amqp]`, whose publisher drains it.)
    async fn status_outbox(&self, on: bool) -> Result<(), StoreError>;
    /// Claims up to `limit` outbox rows, oldest first, whose lease is free, leasing them to
    /// `holder` for `lease` (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so the node's processes
    /// claim disjoint batches); a claimed row not done before its lease runs out is claimed
    /// again (its publisher died).
    async fn outbox_claim(&self, holder: &str, lease: Duration, limit: usize) -> Result<Vec<OutboxEvent>, StoreError>;
    /// Deletes outbox rows whose events went out.
    async fn outbox_done(&self, seqs: &[i64]) -> Result<(), StoreError>;
}

/// One committed status transition in the outbox, waiting to go out as a status event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The timeline event's sequence number (increasing with commits of one process).
    pub seq: i64,
    pub message_id: String,
    pub status: Status,
    /// When the transition was committed.
    pub at: Millis,
}

/// A process whose heartbeat row is older than this counts as gone (it refreshes it every 5 s).
pub const PROCESS_STALE_MS: Millis = 15_000;

/// One process of a node, as its heartbeat row shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The process's lease holder name (`node@host:FOLDER#slot`, FOLDER the data folder's id).
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started: Millis,
    pub last_seen: Millis,
}

/// Builds audit entry number `seq` after the entry whose hash is `prev` (`None`: the first):
/// its text and its hash.
pub type AuditEntry<'a> = &'a (dyn Fn(u64, Option<&str>) -> (String, String) + Send + Sync);

/// Applies `changes` all at once, so that the store can commit them together (SQLite's writer
/// takes what waits into one commit); the first failure, after all were tried.
pub async fn apply_all(store: &std::sync::Arc<dyn Store>, changes: Vec<Change>) -> Result<(), StoreError> {
    let mut applying = tokio::task::JoinSet::new();
    for change in changes {
        let store = store.clone();
        applying.spawn(async move { store.apply(change).await });
    }
    let mut first = Ok(());
    while let Some(done) = applying.join_next().await {
        let r = match done {
            Ok(r) => r.map(|_| ()),
            Err(e) => Err(StoreError::Failed(format!("a change was not applied: {e}"))),
        };
        if first.is_ok() {
            first = r;
        }
    }
    first
}

fn no_audit() -> StoreError {
    StoreError::Failed("this store keeps no audit log (it is a file in the data folder)".into())
}

/// A blob kind's name in the stores' tables.
fn blob_name(b: Blob) -> &'static str {
    match b {
        Blob::Payload => "payload",
        Blob::Envelope => "envelope",
        Blob::Receipt => "receipt",
        Blob::Notice => "notice",
        Blob::XtaMetadata => "xta-metadata",
        Blob::Attachments => "attachments",
    }
}

/// The columns of a [`Message`], in the order both stores read them.
const MESSAGE_COLUMNS: &str = "id, direction, status, client, xoev_uuid, digest, message_type, author, reader, \
     partner_node, remote_id, error_code, error_detail, created_at, updated_at";

/// States an outbound message is in while the relay still works on it.
const IN_RELAY: &str = "('accepted', 'sealed', 'sent')";
/// Ended states whose data retention removes (dead letters wait for an operator).
const PURGEABLE: &str = "('delivered', 'rejected', 'refused', 'cancelled')";

/// States in which a message has ended (nothing more will happen without an operator).
pub const ENDED: [Status; 5] = [
    Status::Delivered,
    Status::Rejected,
    Status::Refused,
    Status::Cancelled,
    Status::Failed,
];
