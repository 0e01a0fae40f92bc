//! Actions on one message that several APIs offer, implemented once: an operator's retry and
//! cancel (admin API; XTA's cancel for a client's own message), a client's acknowledgement of
//! an inbox message (REST ack, XTA close), and the lookups that decide whose message it is.

use crate::config::Client;
use crate::ctx::Ctx;
use crate::problem::{Code, Problem};
use crate::store::{Blob, Change, Direction, JobKind, Message, Status, now_millis};
use crate::wire::store_problem;

/// Any message of this node, by id (operators).
pub async fn find_message(ctx: &Ctx, id: &str) -> Result<Message, Problem> {
    ctx.store
        .message(id)
        .await
        .map_err(store_problem)?
        .ok_or_else(|| Problem::new(Code::NotFound, format!("no message {id}")))
}

/// An outbound message of this client.
pub async fn own_message(ctx: &Ctx, client: &Client, id: &str) -> Result<Message, Problem> {
    match ctx.store.message(id).await.map_err(store_problem)? {
        Some(m) if m.direction == Direction::Outbound && m.client.as_deref() == Some(client.name.as_str()) => Ok(m),
        _ => Err(Problem::new(Code::NotFound, format!("no message {id} of this client"))),
    }
}

/// An opened or delivered message in this client's inbox.
pub async fn inbox_message(ctx: &Ctx, client: &Client, id: &str) -> Result<Message, Problem> {
    match ctx.store.message(id).await.map_err(store_problem)? {
        Some(m)
            if m.direction == Direction::Inbound
                && m.reader == client.authority
                && matches!(m.status, Status::Opened | Status::Delivered) =>
        {
            Ok(m)
        }
        _ => Err(Problem::new(Code::NotFound, format!("no message {id} in this inbox"))),
    }
}

/// Sends a dead letter back to the relay with a fresh retry time-box; returns its new state.
pub async fn retry_message(ctx: &Ctx, id: &str) -> Result<Status, Problem> {
    let m = find_message(ctx, id).await?;
    if m.direction != Direction::Outbound || m.status != Status::Failed {
        return Err(Problem::new(
            Code::WrongState,
            format!(
                "only failed outbound messages can be retried; {id} is {} {}",
                m.direction.as_str(),
                m.status
            ),
        ));
    }
    let sealed = ctx
        .store
        .blob(id, Blob::Envelope)
        .await
        .map_err(store_problem)?
        .is_some();
    let to = if sealed { Status::Sealed } else { Status::Accepted };
    let now = now_millis();
    let applied = ctx
        .store
        .apply(Change {
            message_id: id.to_owned(),
            expect: vec![Status::Failed],
            status: Some(to),
            detail: Some("retried by an operator".into()),
            drop_jobs: true,
            clear_error: true,
            deadline: Some(now + ctx.config().relay.retry_window.as_millis() as i64),
            enqueue: vec![(JobKind::Relay, now)],
            ..Change::default()
        })
        .await
        .map_err(store_problem)?;
    if !applied {
        return Err(Problem::new(Code::WrongState, format!("{id} changed state meanwhile")));
    }
    tracing::info!(message_id = %id, "operator retry");
    ctx.wake(JobKind::Relay);
    Ok(to)
}
/// Cancels an outbound message not yet sent (`detail`: who did it, for the timeline).
pub async fn cancel_message(ctx: &Ctx, id: &str, detail: &str) -> Result<(), Problem> {
    let id = id.to_owned();
    let m = find_message(ctx, &id).await?;
    let cancellable = [Status::Accepted, Status::Sealed, Status::Failed];
    if m.direction != Direction::Outbound || !cancellable.contains(&m.status) {
        return Err(Problem::new(
            Code::WrongState,
            format!(
                "only outbound messages not yet sent can be cancelled; {id} is {}",
                m.status
            ),
        ));
    }
    let applied = ctx
        .store
        .apply(Change {
            message_id: id.clone(),
            expect: cancellable.to_vec(),
            unless_leased: true,
            status: Some(Status::Cancelled),
            detail: Some(detail.into()),
            error: Some((Code::Cancelled.as_str().into(), detail.into())),
            drop_jobs: true,
            ..Change::default()
        })
        .await
        .map_err(store_problem)?;
    if !applied {
        return Err(Problem::new(
            Code::WrongState,
            format!("{id} is being sent right now or changed state; try again"),
        ));
    }
    tracing::info!(message_id = %id, detail, "message cancelled");
    Ok(())
}
/// The client took an inbox message: `delivered` (once), and a notice goes to the sender.
pub async fn acknowledge(ctx: &Ctx, client: &Client, id: &str, detail: &str) -> Result<(), Problem> {
    let m = inbox_message(ctx, client, id).await?;
    if m.status == Status::Opened {
        let applied = ctx
            .store
            .apply(Change {
                message_id: id.to_owned(),
                expect: vec![Status::Opened],
                status: Some(Status::Delivered),
                detail: Some(detail.to_owned()),
                enqueue: vec![(JobKind::Notice, now_millis())],
                ..Change::default()
            })
            .await
            .map_err(store_problem)?;
        crate::failpoint!("ack.after_commit");
        if applied {
            ctx.wake(JobKind::Notice);
        }
    }
    Ok(())
}
