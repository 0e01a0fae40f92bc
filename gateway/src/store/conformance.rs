//! One conformance suite for [`Store`], run against every implementation: SQLite in a temporary
//! folder, and PostgreSQL in a schema of its own on the database at `POSTSTELLE_TEST_STORE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test?sslmode=disable`, which `scripts/test` makes sure runs),
//! dropped afterwards. A missing PostgreSQL fails the suite: it is never skipped silently.

use std::sync::Arc;

use super::pg::{PgSettings, PgStore};
use super::sqlite::SqliteStore;
use super::*;

/// Where a test's store lives; `open` gives another handle on the same store (a new process).
enum Backend {
    Sqlite(tempfile::TempDir),
    Pg { url: String, schema: String },
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn pg() -> Backend {
        let url = std::env::var("POSTSTELLE_TEST_STORE_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".into());
        let schema = format!("poststelle_test_{}", uuid::Uuid::new_v4().simple());
        Backend::Pg { url, schema }
    }

    async fn open(&self) -> Arc<dyn Store> {
        self.open_limited(0).await
    }

    async fn open_limited(&self, max_mb: u64) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open_with_limit(dir.path(), max_mb).unwrap()),
            Backend::Pg { url, schema } => Arc::new(
                PgStore::open(&PgSettings {
                    url: url.clone(),
                    schema: schema.clone(),
                    pool_size: 8,
                    password: None,
                    holder: "conformance".into(),
                    max_size_mb: max_mb,
                    ca: None,
                })
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL for the store tests ({url}): {e}")),
            ),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Pg { url, schema } = self {
            let _ = super::pg::drop_schemas(url, std::slice::from_ref(schema));
        }
    }
}

fn outbound(uuid: &str, digest: &str) -> NewOutbound {
    NewOutbound {
        id: None,
        client: "c".into(),
        xoev_uuid: uuid.into(),
        digest: digest.into(),
        message_type: "t".into(),
        author: "psw:1".into(),
        reader: "psw:2".into(),
        partner_node: "b".into(),
        payload: b"<x/>".to_vec(),
        keep: Vec::new(),
        deadline: now_millis() + 60_000,
        sealed: None,
    }
}

fn inbound(remote_id: &str, digest: &str) -> NewInbound {
    NewInbound {
        sender_node: "b".into(),
        remote_id: remote_id.into(),
        xoev_uuid: "u".into(),
        digest: digest.into(),
        message_type: "t".into(),
        author: "psw:2".into(),
        reader: "psw:1".into(),
        envelope: b"<e/>".to_vec(),
        receipt: format!("<receipt for='{remote_id}'/>").into_bytes(),
    }
}

/// Runs one conformance test against both stores.
macro_rules! conformance {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::pg()).await;
            }
        }
    };
}

conformance!(accept_is_idempotent_per_client_and_uuid);
async fn accept_is_idempotent_per_client_and_uuid(b: Backend) {
    let s = b.open().await;
    let AcceptOutcome::Created(id) = s.accept(outbound("u1", "d1")).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        s.accept(outbound("u1", "d1")).await.unwrap(),
        AcceptOutcome::Existing(id.clone())
    );
    assert_eq!(
        s.accept(outbound("u1", "d2")).await.unwrap(),
        AcceptOutcome::Conflict(id.clone())
    );
    let m = s.message(&id).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Accepted);
    assert_eq!(s.blob(&id, Blob::Payload).await.unwrap().unwrap(), b"<x/>");
}

conformance!(a_message_sealed_before_its_write_is_stored_sealed_and_resubmitted_as_before);
async fn a_message_sealed_before_its_write_is_stored_sealed_and_resubmitted_as_before(b: Backend) {
    let s = b.open().await;
    let sealed = |id: &str| SealedEnvelope {
        id: id.into(),
        created_at: 1_700_000_000_000,
        envelope: b"<envelope/>".to_vec(),
    };
    let first = NewOutbound {
        sealed: Some(sealed("0190f2a4-0000-7000-8000-00000000000a")),
        ..outbound("u1", "d1")
    };
    let id = "0190f2a4-0000-7000-8000-00000000000a".to_owned();
    assert_eq!(s.accept(first).await.unwrap(), AcceptOutcome::Created(id.clone()));
    let m = s.message(&id).await.unwrap().unwrap();
    assert_eq!((m.status, m.created_at), (Status::Sealed, 1_700_000_000_000));
    assert_eq!(s.blob(&id, Blob::Envelope).await.unwrap().unwrap(), b"<envelope/>");
    let timeline: Vec<_> = s.events(&id).await.unwrap().into_iter().map(|e| e.status).collect();
    assert_eq!(timeline, [Status::Accepted, Status::Sealed]);
    // The relay's job is there as for any accepted message.
    let job = s
        .claim(JobKind::Relay, Duration::from_secs(30), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.message_id, id);
    // A resubmission sealed again under a new id finds the first; its envelope is dropped.
    let again = NewOutbound {
        sealed: Some(sealed("0190f2a4-0000-7000-8000-00000000000b")),
        ..outbound("u1", "d1")
    };
    assert_eq!(s.accept(again).await.unwrap(), AcceptOutcome::Existing(id.clone()));
    assert!(
        s.message("0190f2a4-0000-7000-8000-00000000000b")
            .await
            .unwrap()
            .is_none()
    );
    // A client's chosen id is the one intake seals under.
    let chosen = NewOutbound {
        id: Some("0190f2a4-0000-7000-8000-00000000000c".into()),
        sealed: Some(sealed("0190f2a4-0000-7000-8000-00000000000c")),
        ..outbound("u2", "d2")
    };
    assert_eq!(
        s.accept(chosen).await.unwrap(),
        AcceptOutcome::Created("0190f2a4-0000-7000-8000-00000000000c".into())
    );
}

conformance!(a_chosen_id_is_idempotent_and_never_reused_for_other_content);
async fn a_chosen_id_is_idempotent_and_never_reused_for_other_content(b: Backend) {
    let s = b.open().await;
    let chosen = NewOutbound {
        id: Some("0190f2a4-0000-7000-8000-000000000001".into()),
        ..outbound("u1", "d1")
    };
    assert_eq!(
        s.accept(chosen.clone()).await.unwrap(),
        AcceptOutcome::Created("0190f2a4-0000-7000-8000-000000000001".into())
    );
    assert_eq!(
        s.accept(chosen.clone()).await.unwrap(),
        AcceptOutcome::Existing("0190f2a4-0000-7000-8000-000000000001".into())
    );
    // The same id with another message, even from another client, is a conflict.
    let other = NewOutbound {
        client: "other".into(),
        ..NewOutbound {
            xoev_uuid: "u2".into(),
            ..chosen.clone()
        }
    };
    assert!(matches!(s.accept(other).await.unwrap(), AcceptOutcome::Conflict(_)));
    // The same content under another chosen id is a conflict too.
    let moved = NewOutbound {
        id: Some("0190f2a4-0000-7000-8000-000000000002".into()),
        ..chosen
    };
    assert!(matches!(s.accept(moved).await.unwrap(), AcceptOutcome::Conflict(_)));
}

conformance!(a_resend_gets_the_original_receipt_and_other_content_is_a_conflict);
async fn a_resend_gets_the_original_receipt_and_other_content_is_a_conflict(b: Backend) {
    let s = b.open().await;
    let ReceiveOutcome::Created(id) = s.receive(inbound("r1", "d1")).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        s.receive(inbound("r1", "d1")).await.unwrap(),
        ReceiveOutcome::Duplicate {
            id: id.clone(),
            receipt: b"<receipt for='r1'/>".to_vec()
        }
    );
    assert_eq!(s.receive(inbound("r1", "d2")).await.unwrap(), ReceiveOutcome::Conflict);
    // A receipt stored empty, then replaced by a change (as a batch's answer signed again
    // after a conflict replaces the first): a resend gets what the change kept.
    let later = NewInbound {
        receipt: Vec::new(),
        ..inbound("r2", "d1")
    };
    let ReceiveOutcome::Created(id2) = s.receive(later.clone()).await.unwrap() else {
        panic!()
    };
    let resent = s.receive(later.clone()).await.unwrap();
    assert_eq!(
        resent,
        ReceiveOutcome::Duplicate {
            id: id2.clone(),
            receipt: Vec::new()
        }
    );
    let keep = Change {
        message_id: id2.clone(),
        blobs: vec![(Blob::Receipt, b"<kept/>".to_vec())],
        ..Change::default()
    };
    assert!(s.apply(keep).await.unwrap());
    let ReceiveOutcome::Duplicate { receipt, .. } = s.receive(later).await.unwrap() else {
        panic!()
    };
    assert_eq!(receipt, b"<kept/>");
    let m = s.message(&id).await.unwrap().unwrap();
    assert_eq!((m.direction, m.status), (Direction::Inbound, Status::Received));
    assert_eq!(m.remote_id.as_deref(), Some("r1"));
    let job = s
        .claim(JobKind::Open, Duration::from_secs(30), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.message_id, id);
}

conformance!(jobs_are_leased_and_survive_reopen);
async fn jobs_are_leased_and_survive_reopen(b: Backend) {
    let id = {
        let s = b.open().await;
        let AcceptOutcome::Created(id) = s.accept(outbound("u1", "d1")).await.unwrap() else {
            panic!()
        };
        let job = s
            .claim(JobKind::Relay, Duration::from_millis(1), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.attempts, 1);
        id
    };
    // A new process: the lease has expired, the job is claimable again.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s = b.open().await;
    let job = s
        .claim(JobKind::Relay, Duration::from_secs(30), &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.message_id, id);
    assert_eq!(job.attempts, 2);
    assert!(
        s.claim(JobKind::Relay, Duration::from_secs(30), &[])
            .await
            .unwrap()
            .is_none(),
        "leased"
    );
    let applied = s
        .apply(Change {
            message_id: id.clone(),
            expect: vec![Status::Accepted],
            status: Some(Status::Sealed),
            finish_job: Some(job.id),
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(applied);
    let stale = s
        .apply(Change {
            message_id: id.clone(),
            expect: vec![Status::Accepted],
            status: Some(Status::Cancelled),
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(!stale, "conditional transition must not apply");
    let ev: Vec<Status> = s.events(&id).await.unwrap().iter().map(|e| e.status).collect();
    assert_eq!(ev, vec![Status::Accepted, Status::Sealed]);
}

conformance!(concurrent_writes_are_all_committed_and_answered);
async fn concurrent_writes_are_all_committed_and_answered(b: Backend) {
    let s = b.open().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.accept(outbound(&format!("u{i}"), "d")).await },
        ));
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap().unwrap(), AcceptOutcome::Created(_)));
    }
    let counts = s.counts().await.unwrap();
    assert_eq!(counts, vec![(Direction::Outbound, Status::Accepted, 200)]);
}

conformance!(the_same_submission_racing_on_two_handles_is_stored_once);
async fn the_same_submission_racing_on_two_handles_is_stored_once(b: Backend) {
    let (one, two) = (b.open().await, b.open().await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move { s.accept(outbound("same", "d")).await }));
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            AcceptOutcome::Created(id) => created.push(id),
            AcceptOutcome::Existing(id) => existing.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one writer wins");
    assert!(
        existing.iter().all(|id| *id == created[0]),
        "the losers answer with its id"
    );
    assert_eq!(
        one.counts().await.unwrap(),
        vec![(Direction::Outbound, Status::Accepted, 1)]
    );
    // The same envelope received by two processes at once: stored once, one receipt for all.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { one.clone() } else { two.clone() };
        tasks.push(tokio::spawn(async move { s.receive(inbound("same", "d")).await }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap().unwrap() {
            ReceiveOutcome::Created(_) => created += 1,
            ReceiveOutcome::Duplicate { receipt, .. } => assert_eq!(receipt, b"<receipt for='same'/>"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 1, "one writer wins");
}

conformance!(no_job_is_handed_out_twice_while_its_lease_runs);
async fn no_job_is_handed_out_twice_while_its_lease_runs(b: Backend) {
    let (one, two) = (b.open().await, b.open().await);
    for i in 0..40 {
        one.accept(outbound(&format!("u{i}"), "d")).await.unwrap();
    }
    let claimer = |s: Arc<dyn Store>| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = s.claim(JobKind::Relay, Duration::from_secs(60), &[]).await.unwrap() {
                got.push(j.id);
            }
            got
        })
    };
    let (a, b2) = (claimer(one.clone()), claimer(two.clone()));
    let (a, b2) = (a.await.unwrap(), b2.await.unwrap());
    let mut all: Vec<i64> = a.iter().chain(&b2).copied().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a job was handed out twice");
    assert_eq!(all.len(), 40, "every job was handed out");
}

conformance!(claims_skip_partners_and_a_process_releases_its_own_leases);
async fn claims_skip_partners_and_a_process_releases_its_own_leases(b: Backend) {
    let s = b.open().await;
    s.accept(outbound("u1", "d")).await.unwrap();
    let mut other = outbound("u2", "d");
    other.partner_node = "c".into();
    s.accept(other).await.unwrap();
    let lease = Duration::from_secs(60);
    let job = s.claim(JobKind::Relay, lease, &["b".into()]).await.unwrap().unwrap();
    assert_eq!(job.partner_node, "c", "b is skipped although its job is older");
    assert!(s.claim(JobKind::Relay, lease, &["b".into()]).await.unwrap().is_none());
    assert_eq!(s.release_leases().await.unwrap(), 1);
    let again = s.claim(JobKind::Relay, lease, &[]).await.unwrap().unwrap();
    assert_eq!(again.partner_node, "b");
}

conformance!(more_jobs_for_one_partner_are_claimed_as_a_batch);
async fn more_jobs_for_one_partner_are_claimed_as_a_batch(b: Backend) {
    let s = b.open().await;
    for u in ["u1", "u2", "u3", "u4"] {
        s.accept(outbound(u, "d")).await.unwrap();
    }
    let mut other = outbound("u5", "d");
    other.partner_node = "c".into();
    s.accept(other).await.unwrap();
    let lease = Duration::from_secs(60);
    let first = s.claim(JobKind::Relay, lease, &[]).await.unwrap().unwrap();
    assert_eq!(first.partner_node, "b");
    let more = s.claim_more(JobKind::Relay, "b", lease, 2).await.unwrap();
    assert_eq!(more.len(), 2, "the limit holds");
    let more_ids: Vec<i64> = more.iter().map(|j| j.id).collect();
    assert!(!more_ids.contains(&first.id), "a leased job is not claimed again");
    assert!(
        more.iter()
            .all(|j| j.partner_node == "b" && j.attempts == 1 && j.kind == JobKind::Relay)
    );
    let last = s.claim_more(JobKind::Relay, "b", lease, 10).await.unwrap();
    assert_eq!(last.len(), 1, "only b's one free job is left: {last:?}");
    assert!(!more_ids.contains(&last[0].id));
    assert!(s.claim_more(JobKind::Relay, "b", lease, 10).await.unwrap().is_empty());
    assert!(
        s.claim_more(JobKind::Open, "c", lease, 10).await.unwrap().is_empty(),
        "only jobs of the kind"
    );
    let c = s.claim_more(JobKind::Relay, "c", lease, 10).await.unwrap();
    assert_eq!(c.len(), 1);
    // A job released for later is not due.
    s.retry_later(c[0].id, now_millis() + 600_000, "later").await.unwrap();
    assert!(s.claim_more(JobKind::Relay, "c", lease, 10).await.unwrap().is_empty());
}

conformance!(expired_messages_fail_unless_leased_and_purge_keeps_dead_letters);
async fn expired_messages_fail_unless_leased_and_purge_keeps_dead_letters(b: Backend) {
    let s = b.open().await;
    let AcceptOutcome::Created(free) = s.accept(outbound("u1", "d")).await.unwrap() else {
        panic!()
    };
    let AcceptOutcome::Created(held) = s.accept(outbound("u2", "d")).await.unwrap() else {
        panic!()
    };
    // Claim jobs until the second message's job is leased; release the first's.
    loop {
        let j = s
            .claim(JobKind::Relay, Duration::from_secs(600), &[])
            .await
            .unwrap()
            .unwrap();
        if j.message_id == held {
            break;
        }
        s.retry_later(j.id, now_millis() + 600_000, "partner b unreachable")
            .await
            .unwrap();
    }
    let later = now_millis() + 120_000;
    assert_eq!(s.expire(later).await.unwrap(), vec![free.clone()]);
    let m = s.message(&free).await.unwrap().unwrap();
    assert_eq!(m.status, Status::Failed);
    assert_eq!(m.error_code.as_deref(), Some("retries-exhausted"));
    assert!(m.error_detail.unwrap().contains("partner b unreachable"));
    assert_eq!(s.message(&held).await.unwrap().unwrap().status, Status::Accepted);
    // Retention never removes a dead letter.
    let p = s.purge(later + 1, later + 1).await.unwrap();
    assert_eq!(p, Purged::default());
    assert!(s.blob(&free, Blob::Payload).await.unwrap().is_some());
}

conformance!(retention_purges_payloads_then_ended_messages);
async fn retention_purges_payloads_then_ended_messages(b: Backend) {
    let s = b.open().await;
    // More messages than one retention batch holds (PostgreSQL purges in batches, two under test).
    let mut ids = Vec::new();
    for i in 0..5 {
        let AcceptOutcome::Created(id) = s.accept(outbound(&format!("u{i}"), "d")).await.unwrap() else {
            panic!()
        };
        s.apply(Change {
            message_id: id.clone(),
            status: Some(Status::Delivered),
            drop_jobs: true,
            ..Change::default()
        })
        .await
        .unwrap();
        ids.push(id);
    }
    let AcceptOutcome::Created(open) = s.accept(outbound("u-open", "d")).await.unwrap() else {
        panic!()
    };
    let later = now_millis() + 1000;
    let p = s.purge(later, 0).await.unwrap();
    assert_eq!(p, Purged { blobs: 5, messages: 0 });
    for id in &ids {
        assert!(s.blob(id, Blob::Payload).await.unwrap().is_none());
        assert_eq!(s.events(id).await.unwrap().len(), 2, "the timeline stays");
    }
    let p = s.purge(later, later).await.unwrap();
    assert_eq!(p, Purged { blobs: 0, messages: 5 });
    for id in &ids {
        assert!(s.message(id).await.unwrap().is_none());
    }
    assert!(
        s.blob(&open, Blob::Payload).await.unwrap().is_some(),
        "a message in flight stays whole"
    );
}

conformance!(listing_queues_and_minutes_agree);
async fn listing_queues_and_minutes_agree(b: Backend) {
    let s = b.open().await;
    for i in 0..3 {
        s.accept(outbound(&format!("u{i}"), "d")).await.unwrap();
    }
    let ReceiveOutcome::Created(rid) = s.receive(inbound("r1", "d")).await.unwrap() else {
        panic!()
    };
    let newest = s
        .list(Filter {
            direction: Some(Direction::Outbound),
            limit: 2,
            newest_first: true,
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(newest[0].xoev_uuid, "u2");
    let received = s
        .list(Filter {
            status: vec![Status::Received],
            ..Filter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        received.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [rid.as_str()]
    );
    let queues = s.queues().await.unwrap();
    let depth = |d: Direction| queues.iter().find(|q| q.direction == d).map(|q| q.depth);
    assert_eq!(depth(Direction::Outbound), Some(3));
    assert_eq!(depth(Direction::Inbound), Some(1));
    let minutes = s.minutes(0).await.unwrap();
    assert_eq!(minutes.iter().map(|m| m.received).sum::<u64>(), 1);
    assert!(s.size().await.unwrap() > 0, "the store reports its size");
    // A lookup with a value no message can hold finds nothing (an operator's search with a
    // NUL byte, as a fuzzer sends it), never a store failure.
    let nul = "x\0y".to_owned();
    let found = s
        .list(Filter {
            partner_node: Some(nul.clone()),
            ..Filter::default()
        })
        .await
        .unwrap();
    assert!(found.is_empty());
    assert!(s.message(&nul).await.unwrap().is_none());
    assert!(s.events(&nul).await.unwrap().is_empty());
    assert!(s.blob(&nul, Blob::Payload).await.unwrap().is_none());
    assert!(s.inbox(&nul).await.unwrap().is_empty());
    assert!(s.inbound_by_remote_id(&nul, &nul).await.unwrap().is_empty());
}

conformance!(a_size_limit_refuses_new_work_as_full);
async fn a_size_limit_refuses_new_work_as_full(b: Backend) {
    let s = b.open_limited(1).await;
    let mut big = outbound("u0", "d");
    big.payload = vec![b'x'; 100 * 1024];
    let mut accepted = 0;
    let err = loop {
        big.xoev_uuid = format!("u{accepted}");
        match s.accept(big.clone()).await {
            Ok(AcceptOutcome::Created(_)) => accepted += 1,
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
        assert!(accepted < 100, "the limit never applied");
    };
    assert!(matches!(err, StoreError::Full), "{err:?}");
    assert!(accepted >= 1);
    // What was accepted is intact.
    assert_eq!(
        s.counts().await.unwrap(),
        vec![(Direction::Outbound, Status::Accepted, accepted)]
    );
}

conformance!(the_status_outbox_keeps_each_transition_until_done_and_hands_it_out_once);
async fn the_status_outbox_keeps_each_transition_until_done_and_hands_it_out_once(b: Backend) {
    let lease = Duration::from_secs(30);
    let (s, other) = (b.open().await, b.open().await);
    // Off: transitions leave nothing behind.
    s.accept(outbound("u0", "d")).await.unwrap();
    assert!(s.outbox_claim("p1", lease, 100).await.unwrap().is_empty());
    s.status_outbox(true).await.unwrap();
    let AcceptOutcome::Created(id) = s.accept(outbound("u1", "d")).await.unwrap() else {
        panic!()
    };
    let change = Change {
        message_id: id.clone(),
        status: Some(Status::Sealed),
        ..Change::default()
    };
    assert!(s.apply(change).await.unwrap());
    // Two claimers get disjoint rows, oldest first.
    let first = s.outbox_claim("p1", lease, 1).await.unwrap();
    let second = other.outbox_claim("p2", Duration::from_millis(1), 100).await.unwrap();
    let seen = |v: &[OutboxEvent]| v.iter().map(|e| (e.message_id.clone(), e.status)).collect::<Vec<_>>();
    assert_eq!(seen(&first), vec![(id.clone(), Status::Accepted)]);
    assert_eq!(seen(&second), vec![(id.clone(), Status::Sealed)]);
    assert!(first[0].seq < second[0].seq);
    s.outbox_done(&[first[0].seq]).await.unwrap();
    // p2 died before it was done: once its lease ran out, its row is handed out again; a row
    // done is not.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = s.outbox_claim("p1", lease, 100).await.unwrap();
    assert_eq!(again, second);
    assert!(other.outbox_claim("p2", lease, 100).await.unwrap().is_empty());
    // Off again: emptied, and nothing new is written.
    s.status_outbox(false).await.unwrap();
    s.accept(outbound("u2", "d")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(
        s.outbox_claim("p1", Duration::from_millis(1), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Waits until `woken` hears of jobs `enqueuer` enqueues: the listener connects in the
/// background, and a notification sent before it listens is lost, so enqueue until one
/// arrives. Leaves nothing queued in `woken`.
async fn listening(enqueuer: &Arc<dyn Store>, woken: &mut tokio::sync::broadcast::Receiver<JobKind>) {
    let mut n = 0;
    loop {
        n += 1;
        enqueuer.accept(outbound(&format!("warm-{n}"), "d")).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), woken.recv()).await {
            Ok(kind) => {
                assert_eq!(kind.unwrap(), JobKind::Relay);
                break;
            }
            Err(_) => assert!(n < 50, "no wake-up within 10 s"),
        }
    }
    while woken.try_recv().is_ok() {}
}

/// Processes sharing a PostgreSQL store wake each other for new jobs (LISTEN/NOTIFY), and a
/// process is not woken by its own jobs (its workers are woken in-process already).
#[tokio::test]
async fn postgres_wakes_the_other_processes_for_new_jobs_not_the_one_that_enqueued() {
    let b = Backend::pg();
    let (one, two) = (b.open().await, b.open().await);
    let mut woken = two.wakeups().expect("PostgreSQL announces new jobs");
    listening(&one, &mut woken).await;
    // Its own relay job wakes nobody; the other process's open job does, and comes first.
    two.accept(outbound("own", "d")).await.unwrap();
    one.receive(inbound("r-other", "d")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
    assert_eq!(next.expect("woken for the other's job").unwrap(), JobKind::Open);
}

/// A periodic sweep runs in one process of a node at a time; its holder renews the lease,
/// another process takes it over once it ran out.
#[tokio::test]
async fn postgres_hands_a_sweep_to_one_process_at_a_time() {
    let b = Backend::pg();
    let (one, two) = (b.open().await, b.open().await);
    let minute = Duration::from_secs(60);
    assert!(one.lead("maintenance", "a@h#0", minute).await.unwrap());
    assert!(!two.lead("maintenance", "a@h#1", minute).await.unwrap());
    assert!(
        one.lead("maintenance", "a@h#0", minute).await.unwrap(),
        "the holder renews"
    );
    assert!(
        two.lead("other-task", "a@h#1", minute).await.unwrap(),
        "tasks are apart"
    );
    // The holder's lease runs out (it stopped renewing): the other process takes over.
    assert!(one.lead("maintenance", "a@h#0", Duration::ZERO).await.unwrap());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(two.lead("maintenance", "a@h#1", minute).await.unwrap());
    assert!(!one.lead("maintenance", "a@h#0", minute).await.unwrap());
}

/// Notifications cost a lock at commit: the store sends them only while more than one process
/// of the node is alive by its heartbeat.
#[tokio::test]
async fn postgres_notifies_only_while_another_process_is_alive() {
    let b = Backend::pg();
    let (one, two) = (b.open().await, b.open().await);
    let mut woken = two.wakeups().expect("PostgreSQL announces new jobs");
    listening(&one, &mut woken).await;
    let process = |id: &str| Process {
        id: id.into(),
        host: "h".into(),
        pid: 1,
        started: now_millis(),
        last_seen: now_millis(),
    };
    // One live process: no notifications.
    one.heartbeat(&process("a@h:f#0")).await.unwrap();
    one.accept(outbound("alone", "d")).await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_secs(1), woken.recv()).await;
    assert!(quiet.is_err(), "notified with one process alive: {quiet:?}");
    // A second one comes alive: notifications again.
    two.heartbeat(&process("a@h:f#1")).await.unwrap();
    one.accept(outbound("together", "d")).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
    assert_eq!(next.expect("woken with two processes alive").unwrap(), JobKind::Relay);
}
