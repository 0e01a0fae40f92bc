//! Receipts signed together under load (the transport listener's, `partner::receive`): while
//! one is being signed, those of other envelopes from the same partner node that arrive wait
//! and are then signed as one batch (`pst:Notices`, `envelope::build_notices`), which each of
//! their answers carries. Alone, a receipt is signed as a `pst:Receipt`, as it always was. A
//! receipt waits at most for the one signature ahead of it; the sender finds its entry by its
//! message id and envelope digest (`pipeline::relay`). A batch never mixes partners: none
//! learns of another's envelopes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{MAX_NOTICES, Receipt, seal};
use crate::certs::NodeKeys;
use crate::problem::{Code, Problem};

type Signed = Result<Arc<[u8]>, Problem>;

/// A receipt waiting to be signed, and where its signed document goes.
type Waiting = (Receipt, oneshot::Sender<Signed>);

/// Signs one receipt, or several together.
type SignStep = Arc<dyn Fn(&[Receipt]) -> Result<Vec<u8>, Problem> + Send + Sync>;

/// Per partner node with a signature in progress, the receipts waiting for it.
#[derive(Default)]
pub struct Signer {
    waiting: Mutex<HashMap<String, Vec<Waiting>>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("together::Signer")
    }
}

impl Signer {
    /// `receipt` for an envelope from `partner`, signed by this node: alone when no other
    /// signature for that partner is in progress, else with the others that arrived meanwhile,
    /// once that one is done.
    pub async fn sign(self: &Arc<Self>, keys: Arc<NodeKeys>, partner: &str, receipt: Receipt) -> Signed {
        let sign = move |receipts: &[Receipt]| match receipts {
            [r] => seal::signed_receipt(r, &keys.node),
            all => seal::signed_notices(all, &keys.node),
        };
        self.sign_with(partner, receipt, Arc::new(sign)).await
    }

    /// [`Signer::sign`] with the signing step given (one receipt, or several together).
    async fn sign_with(self: &Arc<Self>, partner: &str, receipt: Receipt, sign: SignStep) -> Signed {
        let waiting_for = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.get_mut(partner) {
                Some(queue) if queue.len() < MAX_NOTICES => {
                    let (tx, rx) = oneshot::channel();
                    queue.push((receipt.clone(), tx));
                    Some(Some(rx))
                }
                // So many at once: this one goes alone.
                Some(_) => Some(None),
                None => {
                    waiting.insert(partner.to_owned(), Vec::new());
                    None
                }
            }
        };
        let alone = |r: Receipt| sign(std::slice::from_ref(&r)).map(Arc::from);
        match waiting_for {
            Some(Some(rx)) => {
                return rx
                    .await
                    .unwrap_or_else(|_| Err(Problem::new(Code::Internal, "the receipt was not signed")));
            }
            Some(None) => return alone(receipt),
            None => {}
        }
        // Fault injection (tests only): `return(MS)` holds this signature MS milliseconds.
        if let Some(ms) = crate::failpoints::value("receipts.hold").and_then(|v| v.parse().ok()) {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let signed = alone(receipt);
        // Those that arrived meanwhile are signed together, off this request's path.
        let (this, partner) = (self.clone(), partner.to_owned());
        tokio::spawn(async move { this.drain(&partner, &sign) });
        signed
    }

    /// Signs what waits for `partner`, batch after batch, until nothing does.
    fn drain(&self, partner: &str, sign: &SignStep) {
        loop {
            let batch = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                match waiting.get_mut(partner) {
                    Some(queue) if !queue.is_empty() => std::mem::take(queue),
                    _ => {
                        waiting.remove(partner);
                        return;
                    }
                }
            };
            let receipts: Vec<Receipt> = batch.iter().map(|(r, _)| r.clone()).collect();
            let signed: Signed = sign(&receipts).map(Arc::from);
            for (_, tx) in batch {
                let _ = tx.send(signed.clone());
            }
        }
    }

    #[cfg(test)]
    fn queued(&self, partner: &str) -> usize {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.get(partner).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::envelope::Outcome;

    fn receipt(id: &str) -> Receipt {
        Receipt {
            message_id: id.into(),
            outcome: Outcome::Received,
            code: None,
            detail: None,
            envelope_sha256: None,
            receiver_node: "b".into(),
            time: "2026-12-07T10:00:00Z".into(),
        }
    }

    /// The "signature": the ids it covers. The first one of partner a waits for `go`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn receipts_that_wait_are_signed_together_and_only_with_their_partners() {
        let signer = Arc::new(Signer::default());
        let (started_tx, started) = mpsc::channel::<()>();
        let (go, go_rx) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(Some((started_tx, go_rx))));
        let step: SignStep = Arc::new(move |rs: &[Receipt]| {
            let first = gate.lock().unwrap().take();
            if let Some((started, go)) = first {
                started.send(()).unwrap();
                go.recv().unwrap();
            }
            Ok(rs
                .iter()
                .map(|r| r.message_id.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .into_bytes())
        });
        let call = |partner: &'static str, id: &'static str| {
            let (signer, step) = (signer.clone(), step.clone());
            tokio::spawn(async move { signer.sign_with(partner, receipt(id), step).await.unwrap() })
        };
        let first = call("a", "a1");
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        let (a2, a3) = (call("a", "a2"), call("a", "a3"));
        // Another partner's receipt does not wait for a's signature, and is not in its batch.
        let c1 = tokio::time::timeout(Duration::from_secs(10), call("c", "c1"))
            .await
            .expect("c's receipt waited for a's signature");
        assert_eq!(&*c1.unwrap(), b"c1");
        while signer.queued("a") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        go.send(()).unwrap();
        assert_eq!(&*first.await.unwrap(), b"a1");
        let (a2, a3) = (a2.await.unwrap(), a3.await.unwrap());
        assert_eq!(a2, a3, "one document for both");
        assert!(&*a2 == b"a2,a3" || &*a2 == b"a3,a2", "{}", String::from_utf8_lossy(&a2));
        // Nothing is in progress any more: the next one goes alone.
        assert_eq!(&*call("a", "a4").await.unwrap(), b"a4");
    }
}
