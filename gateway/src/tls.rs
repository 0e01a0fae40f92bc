//! TLS on both sides with OpenSSL: the server accept loop (so that handlers see the client's
//! leaf certificate), and the relay client's identity and trust.
//!
//! Profile (PRODUCT.md): TLS 1.3, or 1.2 with ECDHE + AES-GCM only. The transport listener
//! requires a client certificate chaining to the configured CA; the API listener accepts one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::hash::MessageDigest;
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// TLS 1.2 suites allowed: ECDHE with AES-GCM only. TLS 1.3 suites are all AEAD.
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";

/// Open connections per peer IP address, counted per listener.
#[derive(Debug, Default)]
struct PerPeer(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

impl PerPeer {
    fn enter(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<PeerGuard> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerGuard(self.clone(), ip))
    }
}

struct PeerGuard(Arc<PerPeer>, std::net::IpAddr);

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut m = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// The verified client certificate of a TLS connection, as seen by handlers.
#[derive(Debug, Clone, Default)]
pub struct PeerCert {
    /// SHA-256 of the leaf certificate's DER, if the client presented one.
    pub fingerprint: Option<[u8; 32]>,
}

pub fn fingerprint(cert: &X509) -> Result<[u8; 32], openssl::error::ErrorStack> {
    let d = cert.digest(MessageDigest::sha256())?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    Ok(out)
}

pub fn fingerprint_of_pem_file(path: &Path) -> Result<[u8; 32], String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let cert = X509::from_pem(&pem).map_err(|e| format!("{}: not a PEM certificate ({e})", path.display()))?;
    fingerprint(&cert).map_err(|e| e.to_string())
}

/// Builds a server-side acceptor. `require_client_cert` makes the handshake fail without one.
pub fn acceptor(cert: &Path, key: &Path, ca: &Path, require_client_cert: bool) -> anyhow::Result<SslAcceptor> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list(TLS12_CIPHERS)?;
    b.set_certificate_chain_file(cert)?;
    b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM)?;
    b.check_private_key()?;
    b.set_ca_file(ca)?;
    let mode = if require_client_cert {
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
    } else {
        SslVerifyMode::PEER
    };
    b.set_verify(mode);
    Ok(b.build())
}

/// Serves `router` over TLS until `shutdown` turns true; each request carries the [`PeerCert`].
///
/// Slow-loris protection (`[server]`): at most `max_connections` open connections (beyond, new
/// ones wait in the kernel backlog) and `max_connections_per_peer` per IP address (beyond,
/// closed at once); the TLS handshake and each request head (also the keep-alive idle time)
/// must arrive within their timeouts, or the connection is closed. Handlers bound the body.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: Arc<SslAcceptor>,
    router: Router,
    server: crate::config::Server,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let per_peer = Arc::new(PerPeer::default());
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let Some(peer_guard) = per_peer.enter(addr.ip(), server.max_connections_per_peer) else {
            tracing::warn!(peer = %addr.ip(), "too many connections from one peer: closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _peer = peer_guard;
            let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                return;
            };
            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, tcp) else {
                return;
            };
            let handshake =
                tokio::time::timeout(server.handshake_timeout(), std::pin::Pin::new(&mut stream).accept()).await;
            if !matches!(handshake, Ok(Ok(()))) {
                tracing::debug!("TLS handshake failed or timed out");
                return;
            }
            let peer = PeerCert {
                fingerprint: stream.ssl().peer_certificate().and_then(|c| fingerprint(&c).ok()),
            };
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(server.header_timeout());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Serves plain HTTP (the admin listener) until `shutdown` turns true.
pub async fn serve_plain(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}

/// The relay's HTTPS client: our node certificate as identity, only the configured CA trusted.
pub fn relay_client(
    cert: &Path,
    key: &Path,
    ca: &Path,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let cert_pem = std::fs::read(cert)?;
    let key_pem = std::fs::read(key)?;
    let identity = reqwest::Identity::from_pkcs8_pem(&cert_pem, &key_pem)?;
    Ok(trusting(ca)?
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .identity(identity)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_max_idle_per_host(8)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// An HTTPS client builder (native-tls) that trusts exactly the CA certificates in the PEM
/// file `ca`, not the system's roots.
pub fn trusting(ca: &Path) -> anyhow::Result<reqwest::ClientBuilder> {
    let pem = std::fs::read(ca)?;
    let mut b = reqwest::Client::builder()
        .use_native_tls()
        .tls_built_in_root_certs(false);
    for c in reqwest::Certificate::from_pem_bundle(&pem)? {
        b = b.add_root_certificate(c);
    }
    Ok(b)
}
