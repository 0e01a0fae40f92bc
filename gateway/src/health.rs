//! Partner health: a circuit breaker and a concurrency cap per partner node, so that one dead
//! or slow partner never holds up messages to the others (no head-of-line blocking).
//!
//! Workers ask [`Partners::skip`] which partners to leave alone before they claim a job, and
//! hold a [`Slot`] while they talk to a partner. A circuit opens after `circuit_failures`
//! consecutive transient failures (connection refused, timeout, 5xx); while open, no job of
//! that partner is claimed, so no attempt of its messages is spent. After `circuit_open` one
//! probe goes through (half-open); its success closes the circuit, its failure opens it again.
//! The state lives in memory: after a restart every circuit starts closed.
//!
//! With several processes of one node (a shared store) each process keeps its own breaker,
//! and `per_partner_concurrency` is the node's bound, split evenly over its live processes
//! ([`Partners::set_processes`], from the heartbeats; each at least one slot): a dead partner
//! costs each process its own `circuit_failures` attempts before that process stops trying.
//! A partner run on several machines is reached at each of its addresses in turn: the one
//! that answered last is tried first ([`Partners::address`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::store::{Millis, now_millis, rfc3339};

/// Circuit states (as shown to operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Circuit {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    last_success: Option<Millis>,
    last_failure: Option<Millis>,
    last_error: Option<String>,
    successes: u64,
    failures: u64,
    /// Which of the partner's transport addresses to try first.
    address: usize,
    /// Batches of notices to the partner being gathered or sent (at most one).
    noticing: usize,
    /// Until when envelopes go to the partner one per request (it refused several in one).
    singly_until: Option<Millis>,
}

impl State {
    fn circuit(&self, now: Instant) -> Circuit {
        match self.open_until {
            None => Circuit::Closed,
            Some(t) if now < t => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }
}

/// A partner's health as operators see it (times in RFC 3339).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub partner: String,
    pub circuit: Circuit,
    pub in_flight: usize,
    pub consecutive_failures: u32,
    pub successes: u64,
    pub failures: u64,
    /// failures / (successes + failures) since the node started (0 without attempts).
    pub error_rate: f64,
    pub last_success: Option<String>,
    pub last_failure: Option<String>,
    pub last_error: Option<String>,
    /// Until when envelopes go to the partner one per request, since it refused several in
    /// one (a node of an earlier version); absent while they may travel together.
    pub one_envelope_per_request_until: Option<String>,
}

/// Health of every partner node.
#[derive(Debug)]
pub struct Partners {
    states: Mutex<HashMap<String, State>>,
    concurrency: usize,
    /// The node's live processes (1 without a shared store).
    processes: std::sync::atomic::AtomicUsize,
    threshold: u32,
    open_for: Duration,
    /// Serialises skip → claim → take, so two workers cannot both take a partner's last slot.
    pub claim_lock: tokio::sync::Mutex<()>,
}

/// A worker's hold on one of a partner's concurrency slots, or on its one notice batch;
/// released on drop.
#[derive(Debug)]
pub struct Slot {
    partners: Arc<Partners>,
    partner: String,
    notices: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut states = self.partners.lock();
        if let Some(s) = states.get_mut(&self.partner) {
            if self.notices {
                s.noticing = s.noticing.saturating_sub(1);
            } else {
                s.in_flight = s.in_flight.saturating_sub(1);
            }
        }
    }
}

impl Partners {
    pub fn new(concurrency: usize, threshold: u32, open_for: Duration) -> Partners {
        Partners {
            states: Mutex::new(HashMap::new()),
            concurrency: concurrency.max(1),
            processes: std::sync::atomic::AtomicUsize::new(1),
            threshold: threshold.max(1),
            open_for,
            claim_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many processes the node runs now (from the heartbeats): this process's share of
    /// each partner's concurrency bound becomes `bound / processes`, at least 1.
    pub fn set_processes(&self, n: usize) {
        self.processes.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// This process's concurrency slots per partner.
    pub fn slots(&self) -> usize {
        (self.concurrency / self.processes.load(std::sync::atomic::Ordering::Relaxed)).max(1)
    }

    /// The index of the partner's address to try first (of `n` addresses).
    pub fn address(&self, partner: &str, n: usize) -> usize {
        self.lock().get(partner).map_or(0, |s| s.address) % n.max(1)
    }

    /// Try the partner's address `i` first from now on.
    pub fn prefer_address(&self, partner: &str, i: usize) {
        self.lock().entry(partner.to_owned()).or_default().address = i;
    }

    /// Partners no worker should take a job for now: circuit open, or every slot taken
    /// (half-open: one probe at a time).
    pub fn skip(&self) -> Vec<String> {
        let now = Instant::now();
        let slots = self.slots();
        self.lock()
            .iter()
            .filter(|(_, s)| match s.circuit(now) {
                Circuit::Open => true,
                Circuit::HalfOpen => s.in_flight >= 1,
                Circuit::Closed => s.in_flight >= slots,
            })
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Takes a slot of `partner` (call with the claim lock held, after a successful claim).
    pub fn take(self: &Arc<Self>, partner: &str) -> Slot {
        self.hold(partner, false)
    }

    /// Partners no notice worker should take a job for now: circuit open, or a batch of notices
    /// to it on its way. Notices go one batch at a time, so that those that come due while one
    /// travels go together in the next; they take none of the relay's slots.
    pub fn skip_notices(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, s)| s.circuit(now) == Circuit::Open || s.noticing >= 1)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Takes the one notice batch of `partner` (with the claim lock held, after a claim).
    pub fn take_notices(self: &Arc<Self>, partner: &str) -> Slot {
        self.hold(partner, true)
    }

    /// Counts a slot (or the notice batch) of `partner` as taken until the [`Slot`] drops.
    fn hold(self: &Arc<Self>, partner: &str, notices: bool) -> Slot {
        let mut states = self.lock();
        let s = states.entry(partner.to_owned()).or_default();
        match notices {
            true => s.noticing += 1,
            false => s.in_flight += 1,
        }
        Slot {
            partners: self.clone(),
            partner: partner.to_owned(),
            notices,
        }
    }

    /// Whether envelopes may travel to `partner` several in one request now.
    pub fn takes_several(&self, partner: &str) -> bool {
        let until = self.lock().get(partner).and_then(|s| s.singly_until);
        until.is_none_or(|t| now_millis() >= t)
    }

    /// The partner refused several envelopes in one request (a node of an earlier version):
    /// for `how_long`, each goes alone.
    pub fn send_singly(&self, partner: &str, how_long: Duration) {
        let until = now_millis() + how_long.as_millis() as Millis;
        self.lock().entry(partner.to_owned()).or_default().singly_until = Some(until);
    }

    /// The partner answered (whatever it said): the circuit closes.
    pub fn success(&self, partner: &str) {
        let mut states = self.lock();
        let s = states.entry(partner.to_owned()).or_default();
        if s.open_until.is_some() {
            tracing::info!(partner = %partner, "partner circuit closed");
        }
        s.consecutive_failures = 0;
        s.open_until = None;
        s.last_success = Some(now_millis());
        s.successes += 1;
    }

    /// A transient failure talking to the partner; opens the circuit at the threshold, and
    /// again at once when a half-open probe fails.
    pub fn failure(&self, partner: &str, error: &str) {
        let now = Instant::now();
        let mut states = self.lock();
        let s = states.entry(partner.to_owned()).or_default();
        s.consecutive_failures += 1;
        s.failures += 1;
        s.last_failure = Some(now_millis());
        s.last_error = Some(error.to_owned());
        let probe_failed = s.circuit(now) == Circuit::HalfOpen;
        if probe_failed || (s.open_until.is_none() && s.consecutive_failures >= self.threshold) {
            tracing::warn!(partner = %partner, failures = s.consecutive_failures,
                open_ms = self.open_for.as_millis() as u64, "partner circuit opened");
            s.open_until = Some(now + self.open_for);
        }
    }

    /// One partner's health (a partner never talked to is closed, with nothing recorded).
    pub fn health_of(&self, partner: &str) -> Health {
        let states = self.lock();
        let default = State::default();
        let s = states.get(partner).unwrap_or(&default);
        Health {
            partner: partner.to_owned(),
            circuit: s.circuit(Instant::now()),
            in_flight: s.in_flight,
            consecutive_failures: s.consecutive_failures,
            successes: s.successes,
            failures: s.failures,
            error_rate: if s.successes + s.failures == 0 {
                0.0
            } else {
                s.failures as f64 / (s.successes + s.failures) as f64
            },
            last_success: s.last_success.map(rfc3339),
            last_failure: s.last_failure.map(rfc3339),
            last_error: s.last_error.clone(),
            one_envelope_per_request_until: s.singly_until.filter(|t| *t > now_millis()).map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_opens_at_threshold_and_probes_once() {
        let p = Arc::new(Partners::new(2, 3, Duration::from_millis(30)));
        for _ in 0..2 {
            p.failure("b", "refused");
        }
        assert!(p.skip().is_empty(), "below the threshold the circuit stays closed");
        p.failure("b", "refused");
        assert_eq!(p.skip(), vec!["b".to_owned()], "open");
        std::thread::sleep(Duration::from_millis(40));
        assert!(p.skip().is_empty(), "half-open lets one probe through");
        let probe = p.take("b");
        assert_eq!(p.skip(), vec!["b".to_owned()], "only one probe at a time");
        p.failure("b", "refused");
        drop(probe);
        assert_eq!(p.skip(), vec!["b".to_owned()], "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(40));
        let probe = p.take("b");
        p.success("b");
        drop(probe);
        assert!(p.skip().is_empty());
        assert_eq!(p.health_of("b").circuit, Circuit::Closed);
        assert_eq!(p.health_of("b").failures, 4);
    }

    #[test]
    fn concurrency_cap_per_partner() {
        let p = Arc::new(Partners::new(2, 5, Duration::from_secs(1)));
        let a = p.take("b");
        assert!(p.skip().is_empty());
        let b = p.take("b");
        let c = p.take("c");
        assert_eq!(p.skip(), vec!["b".to_owned()], "b is at its cap, c is not");
        drop(a);
        drop(b);
        drop(c);
        assert!(p.skip().is_empty());
    }

    #[test]
    fn a_partner_has_one_notice_batch_on_its_way_and_it_takes_no_relay_slot() {
        let p = Arc::new(Partners::new(1, 1, Duration::from_secs(60)));
        let batch = p.take_notices("b");
        assert_eq!(p.skip_notices(), vec!["b".to_owned()]);
        assert!(p.skip().is_empty(), "the relay's slot of b is free");
        let relay = p.take("b");
        assert_eq!(p.skip(), vec!["b".to_owned()]);
        drop(batch);
        assert!(p.skip_notices().is_empty(), "a relay does not hold b's notices");
        drop(relay);
        p.failure("c", "down");
        assert_eq!(p.skip_notices(), vec!["c".to_owned()], "no notice to an open circuit");
    }

    #[test]
    fn the_bound_is_split_over_the_live_processes() {
        let p = Arc::new(Partners::new(4, 5, Duration::from_secs(1)));
        p.set_processes(3);
        assert_eq!(p.slots(), 1);
        let a = p.take("b");
        assert_eq!(
            p.skip(),
            vec!["b".to_owned()],
            "one of four slots each for three processes"
        );
        p.set_processes(2);
        assert!(p.skip().is_empty(), "two each once a process is gone");
        let b = p.take("b");
        assert_eq!(p.skip(), vec!["b".to_owned()]);
        p.set_processes(9);
        assert_eq!(p.slots(), 1, "at least one slot each");
        drop((a, b));
    }
}
