//! The context every request handler and worker shares. It names no listener or worker
//! module: what it holds (store, validator, keys, partner health, broker handle, audit log)
//! lives in the layers below.

use std::sync::Arc;

use adapters::{Registry, SchemaSet};
use tokio::sync::Notify;

use crate::config::Config;
use crate::store::{JobKind, Store};
use crate::xml::validate::ValidatorPool;

/// Everything request handlers and workers share.
pub struct Ctx {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    pub validator: ValidatorPool,
    /// The envelope/receipt schema (`envelope-1.0/envelope.xsd`).
    pub envelope_schema: Arc<SchemaSet>,
    /// HTTPS client for partner transport (node identity, only the configured CA trusted).
    pub relay_client: crate::tls::RelayClient,
    /// HTTP client for push delivery to legacy systems' callbacks.
    pub push_client: reqwest::Client,
    /// Keys and directory certificates for the security layer.
    pub keys: Arc<crate::certs::NodeKeys>,
    /// Circuit breakers and concurrency slots per partner node.
    pub partners: Arc<crate::health::Partners>,
    /// Client submissions in progress (`server.max_concurrent_intake`); none free → 503.
    pub intake_permits: Arc<tokio::sync::Semaphore>,
    /// The AMQP broker connection's publishing side (idle without `[amqp]`).
    pub broker: Arc<crate::amqp::Broker>,
    /// The hash-chained audit log (`<data_dir>/audit.log`, or in a shared store).
    pub audit: crate::audit::AuditLog,
    /// When this process started (milliseconds).
    pub started: crate::store::Millis,
    /// This process among the node's processes: its lease holder name (`node@host`, with
    /// `#slot` on a shared store) and host.
    pub instance: String,
    pub host: String,
    /// Every configured certificate, as loaded at start (operators' expiry views).
    pub certificates: Vec<crate::certs::LoadedCertificate>,
    /// Wakes idle workers of a kind as soon as a job of that kind is enqueued.
    pub(crate) wakers: [Notify; 4],
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("node", &self.config.node_name)
            .finish_non_exhaustive()
    }
}

fn waker_index(kind: JobKind) -> usize {
    match kind {
        JobKind::Relay => 0,
        JobKind::Open => 1,
        JobKind::Notice => 2,
        JobKind::Push => 3,
    }
}

impl Ctx {
    /// This process as a heartbeat row shows it, seen at `last_seen`.
    pub fn process(&self, last_seen: crate::store::Millis) -> crate::store::Process {
        crate::store::Process {
            id: self.instance.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            started: self.started,
            last_seen,
        }
    }

    pub fn wake(&self, kind: JobKind) {
        self.wakers[waker_index(kind)].notify_one();
    }

    pub(crate) fn waker(&self, kind: JobKind) -> &Notify {
        &self.wakers[waker_index(kind)]
    }
}
