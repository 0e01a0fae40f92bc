//! Receipts signed together under load (the transport listener's, `partner::receive`): while one is being signed,
//! those of other envelopes that arrive wait and are then signed as one batch (`pst:Notices`,
//! `envelope::build_notices`), which each of their answers carries. Alone, a receipt is signed
//! as a `pst:Receipt`, as it always was. A receipt waits at most for the one signature ahead of
//! it; the sender finds its entry by its message id and envelope digest (`pipeline::relay`).

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{MAX_NOTICES, Receipt, seal};
use crate::certs::NodeKeys;
use crate::problem::{Code, Problem};

type Signed = Result<Arc<[u8]>, Problem>;

/// A receipt waiting to be signed, and where its signed document goes.
type Waiting = (Receipt, oneshot::Sender<Signed>);

/// Receipts waiting for the signature in progress (`None`: none in progress).
#[derive(Default)]
pub struct Signer {
    waiting: Mutex<Option<Vec<Waiting>>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("receipts::Signer")
    }
}

impl Signer {
    /// `receipt`, signed by this node: alone when no other signature is in progress, else
    /// with the others that arrived meanwhile, once that one is done.
    pub async fn sign(self: &Arc<Self>, keys: Arc<NodeKeys>, receipt: Receipt) -> Signed {
        let waiting_for = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            match waiting.as_mut() {
                Some(queue) if queue.len() < MAX_NOTICES => {
                    let (tx, rx) = oneshot::channel();
                    queue.push((receipt.clone(), tx));
                    Some(Some(rx))
                }
                // So many at once: this one goes alone.
                Some(_) => Some(None),
                None => {
                    *waiting = Some(Vec::new());
                    None
                }
            }
        };
        match waiting_for {
            Some(Some(rx)) => {
                return rx
                    .await
                    .unwrap_or_else(|_| Err(Problem::new(Code::Internal, "the receipt was not signed")));
            }
            Some(None) => return one(&keys, &receipt),
            None => {}
        }
        // Fault injection (tests only): `return(MS)` holds this signature MS milliseconds.
        if let Some(ms) = crate::failpoints::value("receipts.hold").and_then(|v| v.parse().ok()) {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let signed = one(&keys, &receipt);
        // Those that arrived meanwhile are signed together, off this request's path.
        let this = self.clone();
        tokio::spawn(async move { this.drain(&keys) });
        signed
    }

    /// Signs what waits, batch after batch, until nothing does.
    fn drain(&self, keys: &NodeKeys) {
        loop {
            let batch = {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                match waiting.as_mut() {
                    Some(queue) if !queue.is_empty() => std::mem::take(queue),
                    _ => {
                        *waiting = None;
                        return;
                    }
                }
            };
            let receipts: Vec<Receipt> = batch.iter().map(|(r, _)| r.clone()).collect();
            let signed = match receipts.as_slice() {
                [r] => one(keys, r),
                all => seal::signed_notices(all, &keys.node).map(Arc::from),
            };
            for (_, tx) in batch {
                let _ = tx.send(signed.clone());
            }
        }
    }
}

fn one(keys: &NodeKeys, r: &Receipt) -> Signed {
    seal::signed_receipt(r, &keys.node).map(Arc::from)
}
