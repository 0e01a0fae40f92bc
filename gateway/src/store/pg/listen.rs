//! Wake-ups across processes: every new job row fires a `NOTIFY` (a trigger, migration 2) on
//! the channel named like the schema, with the job's kind and the enqueuing process's
//! instance id as payload; each process `LISTEN`s on one connection of its own and hands the
//! kinds that *other* processes enqueued to its workers, which then claim at once instead of
//! at their next poll. A process's own jobs wake its workers in-process already.
//!
//! PostgreSQL folds identical notifications of one transaction into one, so a transition
//! that enqueues several jobs of a kind costs one notification. Notifications are a hint, never
//! the only way to work: workers still poll, and after the listening connection was lost and
//! came back every kind is woken once, for whatever was enqueued in between.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use super::JobKind;

/// The trigger that announces new jobs (see the module comment).
pub(super) const MIGRATION: &str = r#"
CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA, NEW.kind || ' ' || COALESCE(current_setting('poststelle.instance', true), ''));
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_notify();
"#;

/// The longest wait between two attempts to get the listening connection back.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Listens on `channel` until every receiver is gone, reconnecting after failures; sends
/// the kinds of jobs that an instance other than `instance` enqueued.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
    channel: String,
    instance: String,
    wake: broadcast::Sender<JobKind>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut reconnected = false;
    while wake.receiver_count() > 0 {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        if let AsyncMessage::Notification(n) = m
                            && tx.send(n.payload().to_owned()).is_err()
                        {
                            return;
                        }
                    }
                });
                if client.batch_execute(&format!("LISTEN {channel}")).await.is_ok() {
                    backoff = Duration::from_millis(100);
                    if reconnected {
                        wake_all(&wake);
                    }
                    while let Some(payload) = rx.recv().await {
                        if let Some(kind) = from_other(&payload, &instance)
                            && wake.send(kind).is_err()
                        {
                            break;
                        }
                    }
                }
                driver.abort();
                tracing::warn!("the store's notification connection was lost; workers poll until it is back");
            }
            Err(e) => tracing::debug!(error = %e, "store notification connection"),
        }
        reconnected = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn wake_all(wake: &broadcast::Sender<JobKind>) {
    for kind in JobKind::ALL {
        let _ = wake.send(kind);
    }
}

/// The job kind of a notification payload (`KIND INSTANCE`), unless this instance sent it.
fn from_other(payload: &str, instance: &str) -> Option<JobKind> {
    let (kind, sender) = payload.split_once(' ')?;
    (sender != instance).then(|| JobKind::parse(kind)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_notifications_and_unknown_kinds_are_ignored() {
        assert_eq!(from_other("relay other", "me"), Some(JobKind::Relay));
        assert_eq!(from_other("open ", "me"), Some(JobKind::Open));
        assert_eq!(from_other("relay me", "me"), None);
        assert_eq!(from_other("sweep other", "me"), None);
        assert_eq!(from_other("relay", "me"), None);
    }
}
