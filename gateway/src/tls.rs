//! TLS on both sides with OpenSSL: the server accept loop (so that handlers see the client's
//! leaf certificate), and the relay client's identity and trust.
//!
//! Profile (PRODUCT.md): TLS 1.3, or 1.2 with ECDHE + AES-GCM only. The transport listener
//! requires a client certificate chaining to the configured CA; the API listener accepts one.
//! Every peer chain, on both listeners and in the relay client, also passes the profile's
//! certificate algorithm policy in the handshake ([`PeerPolicy`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::{X509, X509StoreContextRef, X509VerifyResult};
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

/// How long a closing connection still reads and drops what the client sends, and how much.
const LINGER: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 64 << 20;

/// A server connection that closes gracefully: when hyper shuts it down (a refusal before the
/// body was read, `Connection: close`, the end of keep-alive), it sends TLS close_notify and a
/// TCP FIN, then reads and drops what the client still sends (at most [`LINGER_BYTES`] for at
/// most [`LINGER`]) before the socket closes. Closing with unread bytes in the receive buffer
/// makes the kernel send a reset, which can reach a client still writing its body before it
/// reads our answer: the 413, 415 or 401 would be lost (nginx's `lingering_close`).
struct Lingering {
    inner: tokio_openssl::SslStream<tokio::net::TcpStream>,
    drain: Option<(std::pin::Pin<Box<tokio::time::Sleep>>, usize)>,
    done: bool,
}

impl tokio::io::AsyncRead for Lingering {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Lingering {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        if this.drain.is_none() {
            // close_notify and FIN first: the client sees the answer is complete.
            if let Err(e) = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_shutdown(cx)) {
                this.done = true;
                return Poll::Ready(Err(e));
            }
            this.drain = Some((Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        }
        let Some((until, left)) = this.drain.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        // The raw socket: what still arrives is dropped undecrypted.
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if until.as_mut().poll(cx).is_ready() {
                break;
            }
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(this.inner.get_mut()).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && buf.filled().len() < *left => {
                    *left -= buf.filled().len();
                }
                // End of stream, an error, or the byte budget spent.
                Poll::Ready(_) => break,
            }
        }
        this.done = true;
        Poll::Ready(Ok(()))
    }
}

/// Statuses a handler answers before it reads the request's body: with a body on the way, the
/// connection is closed after the answer (lingering), so that the rest is not taken for the
/// next request.
fn refused_early(status: axum::http::StatusCode) -> bool {
    use axum::http::StatusCode;
    [
        StatusCode::UNAUTHORIZED,
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        // Overloaded (intake permits, a full disk) before or while the body was read.
        StatusCode::SERVICE_UNAVAILABLE,
    ]
    .contains(&status)
}

/// The verified client certificate of a TLS connection, as seen by handlers.
#[derive(Debug, Clone, Default)]
pub struct PeerCert {
    /// SHA-256 of the leaf certificate's DER, if the client presented one.
    pub fingerprint: Option<[u8; 32]>,
}

use crate::xmlsec::trust::fingerprint;

/// What a TLS peer's certificate chain must satisfy beyond the chain to the CA, checked in the
/// handshake (leaf first, each intermediate, the anchor's key): signatures with SHA-256/384/512
/// only, keys at the profile's floor (`xmlsec::trust::check_chain_algorithms`). OpenSSL's
/// security level 2 stands behind it, so no system-wide OpenSSL configuration can loosen it.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Leaf certificates (SHA-256 fingerprints) allowed a 2048-bit RSA key: the partners with
    /// the configured exception (`security.allow_rsa_2048`).
    pub rsa_2048: Arc<Vec<[u8; 32]>>,
    /// With OCSP configured: the leaf's revocation status (partner node certificates).
    pub revocation: Option<Arc<crate::revocation::Checker>>,
}

/// OpenSSL's security level for every context: 112 bits, which refuses SHA-1 and MD5
/// signatures and keys under 2048 bits (the explicit [`PeerPolicy`] check raises RSA to 3072).
const SECURITY_LEVEL: u32 = 2;

/// The handshake's certificate callback: OpenSSL's verdict first, then, once for the whole
/// chain (at the leaf, which OpenSSL checks last), the profile's algorithm policy.
///
/// With `expected`, the leaf must also be exactly one of those certificates (SHA-256 of its
/// DER): the relay talks to a partner's transport only if it presents the partner's directory
/// certificate (the old or the new during a rollover), not any other certificate of the CA.
fn verify_peer(
    policy: &PeerPolicy,
    expected: Option<&[[u8; 32]]>,
    preverify_ok: bool,
    ctx: &mut X509StoreContextRef,
) -> bool {
    if !preverify_ok {
        // Also where OpenSSL's own floor (security level) refused a SHA-1/MD5 signature.
        tracing::warn!(
            depth = ctx.error_depth(),
            reason = ctx.error().error_string(),
            "TLS peer certificate refused"
        );
        return false;
    }
    if ctx.error_depth() != 0 {
        return true;
    }
    let chain: Vec<X509> = ctx
        .chain()
        .map(|c| c.iter().map(|x| x.to_owned()).collect())
        .unwrap_or_default();
    let Some(leaf) = chain.first() else {
        // Returning false without an error would make OpenSSL answer "internal error".
        tracing::warn!(reason = "no certificate chain", "TLS peer certificate refused");
        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    };
    let leaf_fingerprint = fingerprint(leaf).ok();
    let allow_2048 = leaf_fingerprint.is_some_and(|f| policy.rsa_2048.contains(&f));
    if let Err(p) = crate::xmlsec::trust::check_chain_algorithms(&chain, allow_2048) {
        tracing::warn!(code = p.code.as_str(), reason = %p.detail, "TLS peer certificate refused");
        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    }
    if let (Some(checker), Some(fp)) = (&policy.revocation, &leaf_fingerprint)
        && let Err(reason) = checker.verdict(fp, crate::revocation::CertRole::Node)
    {
        tracing::warn!(%reason, "TLS peer certificate refused");
        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    }
    if let Some(expected) = expected
        && !leaf_fingerprint.is_some_and(|f| expected.contains(&f))
    {
        tracing::warn!(
            reason = "not the certificate of the partner this address belongs to in the directory",
            "TLS peer certificate refused"
        );
        ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    }
    true
}

/// Why a TLS context or client could not be set up: a file unreadable, a key that does not
/// match its certificate, a certificate OpenSSL refuses.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Ssl(#[from] openssl::error::ErrorStack),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Key(String),
}

/// The TLS profile both sides share: security level, TLS 1.2+ with ECDHE + AES-GCM, our node
/// identity, and the configured CA as the only trust anchor.
fn profile(b: &mut openssl::ssl::SslContextBuilder, id: &Tls, ca: &Path) -> Result<(), SetupError> {
    b.set_security_level(SECURITY_LEVEL);
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_cipher_list(TLS12_CIPHERS)?;
    b.set_certificate_chain_file(id.cert)?;
    let key = crate::xmlsec::trust::load_private_key_with(id.key, id.passphrase).map_err(SetupError::Key)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;
    b.set_ca_file(ca)?;
    Ok(())
}

/// A TLS identity's files: certificate chain, key, and the key file's passphrase if encrypted.
#[derive(Debug, Clone, Copy)]
pub struct Tls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub passphrase: Option<&'a [u8]>,
}

/// Our certificate's OCSP answer to staple in handshakes: where the checker keeps it, and which
/// certificate (SHA-256 fingerprint).
#[derive(Debug, Clone)]
pub struct Staple {
    pub checker: Arc<crate::revocation::Checker>,
    pub fingerprint: [u8; 32],
}

/// Builds a server-side acceptor. `require_client_cert` makes the handshake fail without one.
/// With `staple`, a client that asks for the certificate status (`status_request`) gets our
/// certificate's current OCSP answer, if the checker has one.
pub fn acceptor(
    id: Tls<'_>,
    ca: &Path,
    require_client_cert: bool,
    policy: PeerPolicy,
    staple: Option<Staple>,
) -> Result<SslAcceptor, SetupError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    profile(&mut b, &id, ca)?;
    if let Some(s) = staple {
        b.set_status_callback(move |ssl| match s.checker.staple(&s.fingerprint) {
            Some(der) => ssl.set_ocsp_status(&der).map(|()| true),
            None => Ok(false),
        })?;
    }
    // A server that asks for client certificates must name its session context, or OpenSSL
    // answers a client resuming a session (the relay does, after a timed-out connection) with
    // the alert "internal error" ("session id context uninitialized"). The mTLS listener's
    // sessions are not the others'.
    b.set_session_id_context(if require_client_cert {
        b"poststelle-mtls"
    } else {
        b"poststelle-tls"
    })?;
    let mode = if require_client_cert {
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
    } else {
        SslVerifyMode::PEER
    };
    b.set_verify_callback(mode, move |ok, ctx| verify_peer(&policy, None, ok, ctx));
    Ok(b.build())
}

/// Serves `router` over TLS until `shutdown` turns true; each request carries the [`PeerCert`].
///
/// Slow-loris protection (`[server]`): at most `max_connections` open connections (beyond, new
/// ones wait in the kernel backlog) and `max_connections_per_peer` per IP address (beyond,
/// closed at once); the TLS handshake and each request head (also the keep-alive idle time)
/// must arrive within their timeouts, or the connection is closed. Handlers bound the body.
/// Each new connection takes the acceptor `acceptor` returns then (a reload replaces it);
/// connections already open keep theirs.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: impl Fn() -> Arc<SslAcceptor> + Send + 'static,
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
        let acceptor = acceptor();
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
                let error = match &handshake {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                tracing::debug!(%error, "TLS handshake failed or timed out");
                return;
            }
            let peer = PeerCert {
                fingerprint: stream.ssl().peer_certificate().and_then(|c| fingerprint(&c).ok()),
            };
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(peer.clone());
                let with_body = !hyper::body::Body::is_end_stream(req.body());
                let answer = router.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let mut response = answer.await?;
                    if with_body && refused_early(response.status()) {
                        response.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(server.header_timeout());
            let stream = Lingering {
                inner: stream,
                drain: None,
                done: false,
            };
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

/// The relay's HTTPS client to partner transports (hyper over OpenSSL, so that the handshake
/// applies the same [`PeerPolicy`] and security level as our listeners; connections are kept
/// alive and TLS sessions resumed).
pub type RelayClient = hyper_util::client::legacy::Client<
    hyper_openssl::client::legacy::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    RelayBody,
>;

/// A request body to a partner: an envelope whole, or an attachment streamed from its file.
pub type RelayBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>;

/// The relay's client: our node certificate as identity, only the configured CA trusted, the
/// partner's chain checked by `policy`, and the server at each partner's transport URL must
/// present exactly that partner's directory certificate (`partners`: transport URL and
/// certificate fingerprint). The request timeout is the caller's (a whole exchange).
pub fn relay_client(
    id: Tls<'_>,
    ca: &Path,
    policy: PeerPolicy,
    partners: &[(String, Vec<[u8; 32]>)],
    connect_timeout: Duration,
) -> Result<RelayClient, SetupError> {
    // By host and port, as the connector sees each connection's URI.
    let mut pinned = std::collections::HashMap::new();
    for (url, fp) in partners {
        // A partner reached only through the broker has no URL to pin.
        let Ok(uri) = url.parse::<hyper::Uri>() else { continue };
        let port = uri.port_u16().unwrap_or(443);
        pinned.insert((uri.host().unwrap_or_default().to_ascii_lowercase(), port), fp.clone());
    }
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    profile(&mut b, &id, ca)?;
    b.set_verify(SslVerifyMode::PEER);
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let mut https = hyper_openssl::client::legacy::HttpsConnector::with_connector(http, b)?;
    https.set_callback(move |conn, uri| {
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        // An address that is no partner's in the directory: no certificate is expected.
        let expected = pinned
            .get(&(host, uri.port_u16().unwrap_or(443)))
            .cloned()
            .unwrap_or_default();
        let policy = policy.clone();
        conn.set_verify_callback(SslVerifyMode::PEER, move |ok, ctx| {
            verify_peer(&policy, Some(&expected), ok, ctx)
        });
        Ok(())
    });
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(8)
            .build(https),
    )
}

/// An HTTPS client builder (native-tls) that trusts exactly the CA certificates in the PEM
/// file `ca`, not the system's roots.
pub fn trusting(ca: &Path) -> Result<reqwest::ClientBuilder, SetupError> {
    let pem = std::fs::read(ca)?;
    let mut b = reqwest::Client::builder()
        .use_native_tls()
        .tls_built_in_root_certs(false);
    for c in reqwest::Certificate::from_pem_bundle(&pem)? {
        b = b.add_root_certificate(c);
    }
    Ok(b)
}
