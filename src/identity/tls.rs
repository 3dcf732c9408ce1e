//! rustls configuration and the TLS edges of both listeners and of outgoing
//! connections.
//!
//! We build the rustls configs ourselves instead of using tonic's `tls`
//! feature: TLS 1.3 only, a client certificate always required, one crypto
//! provider (aws-lc-rs, which has a FIPS path), and room for CRLs.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::handshakes::{Eviction, Handshakes, QuietLog, Slot};
use super::pem::{TlsError, load_certs, load_private_key};
use super::{Identity, NodeIdentity};

const H2: &[u8] = b"h2";

/// Installs aws-lc-rs as the process-wide rustls provider. Only one provider
/// is compiled in; calling this twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(ca)? {
        store.add(cert).map_err(|e| TlsError::File {
            path: ca.to_owned(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// This process's own certificate, key and the identity the certificate names.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
    pub identity: Identity,
}

impl TlsIdentity {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let identity = Identity::from_certificate(&chain[0]).map_err(|e| TlsError::File {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
        let key_der = load_private_key(key)?;
        // A certificate and a key that do not belong together would only
        // fail later, deep in rustls, naming neither file.
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Err(e) =
            rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider)
        {
            let reason = match e {
                rustls::Error::InconsistentKeys(_) => format!(
                    "does not belong to the private key {} (the certificate's public key is \
                     another key's)",
                    key.display()
                ),
                other => format!(
                    "cannot be used with the private key {}: {other}",
                    key.display()
                ),
            };
            return Err(TlsError::File {
                path: cert.to_owned(),
                reason,
            });
        }
        Ok(Self {
            chain,
            key: key_der,
            identity,
        })
    }

    fn clone_key(&self) -> rustls::pki_types::PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Server side of one listener: TLS 1.3 only, client certificate required and
/// verified against `client_ca` (the federation CA on the peer listener, the
/// agency's local client CA on the client listener) and its `crls`. Validity
/// dates and the clientAuth extended key usage are checked by webpki.
pub fn server_tls_config(
    own: &TlsIdentity,
    client_ca: &Path,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<ServerConfig, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider())
            .with_crls(crls.iter().cloned())
            // Our CAs issue leaves directly; a CRL covers the leaves it signed.
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(own.chain.clone(), own.clone_key())?;
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// Server side of the public intake (docs/intake.md): no client
/// certificate, the operator's certificate (from a public CA), TLS 1.2 as
/// well as 1.3 so that old phones reach it, HTTP/1.1 and HTTP/2.
pub fn public_server_tls_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let chain = load_certs(cert)?;
    let key = super::pem::load_private_key(key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Client side of outgoing connections (to peers, or from a CLI to its node),
/// refusing servers whose certificate is in `crls`.
pub fn client_tls_config(
    own: &TlsIdentity,
    server_ca: &Path,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<ClientConfig, TlsError> {
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(server_ca)?), provider())
            .with_crls(crls.iter().cloned())
            .only_check_end_entity_revocation()
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(own.chain.clone(), own.clone_key())?;
    cfg.alpn_protocols = vec![H2.to_vec()];
    Ok(cfg)
}

/// What tonic hands each request of an authenticated connection, in its extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub identity: Identity,
    pub remote: SocketAddr,
    /// When the certificate the caller presented stops being valid.
    pub not_after: Option<std::time::SystemTime>,
    /// SHA-256 of the presented certificate's public key (its
    /// SubjectPublicKeyInfo), for the federation directory's pins.
    pub key_sha256: Option<[u8; 32]>,
}

/// SHA-256 of a DER certificate's SubjectPublicKeyInfo: what a federation
/// directory pins for a member (`key_sha256`), and survives renewals
/// that keep the key.
pub fn key_sha256(cert_der: &[u8]) -> Option<[u8; 32]> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let spki = parsed.tbs_certificate.subject_pki.raw;
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki)
        .as_ref()
        .try_into()
        .ok()
}

/// A server-side TLS connection whose client certificate has been verified and
/// read. It ends at its age limit, so the client must handshake again (and
/// meet the current CRLs) to go on.
pub struct AuthenticatedConn {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: ConnInfo,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl AuthenticatedConn {
    fn aged(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline
            .as_mut()
            .poll(cx)
            .is_ready()
            .then(|| io::Error::new(io::ErrorKind::TimedOut, "maximum connection age reached"))
    }
}

impl tonic::transport::server::Connected for AuthenticatedConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for AuthenticatedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.aged(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.aged(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.aged(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Told of every connection refused before it could make a call: the
/// remote address and why (counted, and kept in the audit log).
pub type OnRefused = Arc<dyn Fn(SocketAddr, String) + Send + Sync>;

/// Accepts TCP connections and completes TLS handshakes concurrently (a slow
/// or hostile client cannot hold up others; idle ones give way to new
/// connections, see [`super::handshakes`]), yielding only connections whose
/// certificate verified and names a well-formed identity. Each handshake uses
/// the config current at that moment (CRLs reload without a restart); each
/// connection lives at most `max_age` (less a random tenth, so clients do not
/// all reconnect at once).
pub fn serve_tls(
    listener: TcpListener,
    config: tokio::sync::watch::Receiver<Arc<ServerConfig>>,
    handshake_timeout: Duration,
    max_age: Duration,
    refused: OnRefused,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<AuthenticatedConn, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let slots = Handshakes::new();
    let log = Arc::new(QuietLog::default());
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        if let Some(left_out) = log.allow() {
                            tracing::warn!(error = %e, left_out, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // Every connection gets a slot; an older pending handshake
            // (the same source's, else the listener's) gives way.
            let (slot, eviction) = slots.admit(remote.ip());
            if let Some(why) = eviction {
                let reason = match why {
                    Eviction::SourceFull => {
                        "a newer connection from the same source took its place"
                    }
                    Eviction::ListenerFull => "a newer connection took its place (listener full)",
                };
                if let Some(left_out) = log.allow() {
                    tracing::warn!(%remote, left_out, reason, "pending TLS handshake given up");
                }
            }
            let _ = tcp.set_nodelay(true);
            let handshake = Handshake {
                acceptor: TlsAcceptor::from(config.borrow().clone()),
                timeout: slots.timeout(handshake_timeout),
                age: max_age.mul_f64(1.0 - rand::random::<f64>() / 10.0),
                refused: refused.clone(),
                log: log.clone(),
                tx: tx.clone(),
            };
            tokio::spawn(handshake.run(tcp, remote, slot));
        }
    });
    ReceiverStream::new(rx)
}

/// One connection's handshake, from accept to the authenticated stream.
struct Handshake {
    acceptor: TlsAcceptor,
    timeout: Duration,
    age: Duration,
    refused: OnRefused,
    log: Arc<QuietLog>,
    tx: mpsc::Sender<Result<AuthenticatedConn, io::Error>>,
}

impl Handshake {
    /// Completes the handshake within the timeout (or until a newer
    /// connection takes the slot), reads the identity the certificate
    /// names and hands the connection on.
    async fn run(self, tcp: TcpStream, remote: SocketAddr, slot: Slot) {
        let refuse = |reason: String| {
            if let Some(left_out) = self.log.allow() {
                tracing::info!(%remote, left_out, reason, "TLS connection refused");
            }
            (self.refused)(remote, reason);
        };
        let accepting = tokio::time::timeout(self.timeout, self.acceptor.accept(tcp));
        let tls = tokio::select! {
            _ = slot.cancelled.cancelled() => {
                refuse("handshake given up for a newer connection".into());
                return;
            }
            result = accepting => match result {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return refuse(e.to_string()),
                Err(_) => return refuse("handshake timed out".into()),
            },
        };
        drop(slot);
        let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
        let not_after = presented.and_then(|c| super::not_after(c));
        let key = presented.and_then(|c| key_sha256(c));
        let identity = presented
            .ok_or(super::IdentityError::NoSpiffeId)
            .and_then(|c| Identity::from_certificate(c));
        match identity {
            Ok(identity) => {
                let conn = AuthenticatedConn {
                    inner: tls,
                    info: ConnInfo {
                        identity,
                        remote,
                        not_after,
                        key_sha256: key,
                    },
                    deadline: Box::pin(tokio::time::sleep(self.age)),
                };
                let _ = self.tx.send(Ok(conn)).await;
            }
            Err(e) => refuse(format!("certificate has no usable identity: {e}")),
        }
    }
}

/// Opens a gRPC channel over our own TLS to `address` and checks, once the
/// handshake is done, that the server's certificate names `expected`. Host
/// name verification still applies (the host must be in the certificate).
pub async fn connect_channel(
    address: &str,
    (expected, pin): (NodeIdentity, Option<[u8; 32]>),
    config: Arc<ClientConfig>,
    connect_timeout: Duration,
) -> Result<Channel, TlsError> {
    let fail = |reason: String| TlsError::Connect {
        address: address.to_owned(),
        reason,
    };
    let (host, port) = crate::config::check_host_port(address).map_err(fail)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|e| fail(e.to_string()))?
        .to_owned();
    let connector = TlsConnector::from(config);
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let expected = Identity::Node(expected);
    let service = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let host = host.clone();
        let expected = expected.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            let presented = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            let found = presented
                .ok_or(super::IdentityError::NoSpiffeId)
                .and_then(|c| Identity::from_certificate(c))
                .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
            if pin.is_some() && presented.and_then(|c| key_sha256(c)) != pin {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{found} presents a certificate key other than the one the federation directory pins"
                    ),
                ));
            }
            if found != expected {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("server certificate names {found}, expected {expected}"),
                ));
            }
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    endpoint
        .connect_with_connector(service)
        .await
        .map_err(|e| fail(error_chain(&e)))
}

/// Why a node refused our certificate at the handshake, as its TLS alert
/// says. In TLS 1.3 the client finishes its side of the handshake before the
/// server has judged its certificate, so the refusal reaches a gRPC call
/// only as "transport error" or "operation was canceled"; the alert itself
/// names the reason, and [`certificate_refusal`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CertificateRefusal {
    #[error("its issuer is not a CA the node trusts for this listener (unknown issuer)")]
    UnknownIssuer,
    #[error("it is revoked (listed in the node's CRL)")]
    Revoked,
    #[error("it is expired or not yet valid")]
    Expired,
    #[error(
        "it is not made for client authentication (wrong purpose: no clientAuth extended key usage)"
    )]
    WrongPurpose,
    #[error("the node sent TLS alert {0:?}")]
    Other(rustls::AlertDescription),
}

impl CertificateRefusal {
    fn of_alert(alert: rustls::AlertDescription) -> Self {
        use rustls::AlertDescription as A;
        match alert {
            A::UnknownCA => Self::UnknownIssuer,
            A::CertificateRevoked => Self::Revoked,
            A::CertificateExpired => Self::Expired,
            A::UnsupportedCertificate => Self::WrongPurpose,
            other => Self::Other(other),
        }
    }
}

/// Dials `address` with `config` and reports whether the server refused
/// our certificate, and why: `None` when the connection was accepted (the
/// server started HTTP/2), could not be made, or said nothing in `wait`.
/// A diagnosis for the command line after a call failed, not a gate.
pub async fn certificate_refusal(
    address: &str,
    config: Arc<ClientConfig>,
    wait: Duration,
) -> Option<CertificateRefusal> {
    use tokio::io::AsyncReadExt;
    let refusal = |e: &io::Error| match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(CertificateRefusal::of_alert(*alert)),
        _ => None,
    };
    let attempt = async {
        let (host, _) = crate::config::check_host_port(address).ok()?;
        let server_name = ServerName::try_from(host).ok()?.to_owned();
        let tcp = TcpStream::connect(address).await.ok()?;
        let mut tls = match TlsConnector::from(config).connect(server_name, tcp).await {
            Ok(tls) => tls,
            Err(e) => return refusal(&e),
        };
        // An accepting node sends its HTTP/2 settings; a refusing one its alert.
        let mut byte = [0u8; 1];
        match tls.read(&mut byte).await {
            Ok(_) => None,
            Err(e) => refusal(&e),
        }
    };
    tokio::time::timeout(wait, attempt).await.ok().flatten()
}

/// Renders an error with its sources: tonic's transport errors hide the cause.
/// A cause already said by the error above it (io errors wrapped by
/// tonic and hyper repeat their text) is said once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod chain_tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Wrap(std::io::Error, bool);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            if self.1 {
                write!(f, "transport error: {}", self.0)
            } else {
                f.write_str("transport error")
            }
        }
    }
    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let once = error_chain(&Wrap(refused(), true));
        assert_eq!(once.matches("refused").count(), 1, "{once}");
        let chained = error_chain(&Wrap(refused(), false));
        assert!(
            chained.starts_with("transport error: ") && chained.contains("refused"),
            "{chained}"
        );
    }
}
