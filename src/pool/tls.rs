//! TLS to the backend (`backend.tls`), with libpq's sslmode semantics:
//! `prefer` and `require` encrypt without authenticating the server,
//! `verify-ca` checks the chain against `backend.tls_ca`, `verify-full`
//! the chain and the host name.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Endpoint;
use crate::config::BackendTls;
use crate::error::ClientError;
use crate::tls::MaybeTls;

/// How backend connections are encrypted; built once from the config.
#[derive(Clone)]
pub struct BackendTlsPolicy {
    pub mode: BackendTls,
    config: Arc<rustls::ClientConfig>,
    connector: Option<TlsConnector>,
}

impl std::fmt::Debug for BackendTlsPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendTlsPolicy({:?})", self.mode)
    }
}

impl BackendTlsPolicy {
    pub fn new(mode: BackendTls, ca: Option<&Path>) -> Result<BackendTlsPolicy, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = match ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("cannot read backend.tls_ca {}: {e}", path.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| format!("backend.tls_ca: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("backend.tls_ca: {e}"))?;
                }
                let v =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| format!("backend.tls_ca: {e}"))?;
                Some(v)
            }
            None => None,
        };
        let verifier = Verifier {
            inner: matches!(mode, BackendTls::VerifyCa | BackendTls::VerifyFull)
                .then_some(inner)
                .flatten(),
            check_name: mode == BackendTls::VerifyFull,
            algs: provider.signature_verification_algorithms,
        };
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        let config = Arc::new(cfg);
        Ok(BackendTlsPolicy {
            mode,
            connector: (mode != BackendTls::Disable).then(|| TlsConnector::from(config.clone())),
            config,
        })
    }

    /// The control plane's TLS (tokio-postgres's, for its channel binding),
    /// with the same verifier; None with `disable`.
    pub fn control_tls(&self) -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
        (self.mode != BackendTls::Disable)
            .then(|| tokio_postgres_rustls::MakeRustlsConnect::new((*self.config).clone()))
    }

    pub fn connector(&self) -> Option<&TlsConnector> {
        self.connector.as_ref()
    }
}

#[derive(Debug)]
struct Verifier {
    /// None: encrypt only (`prefer`, `require`), as libpq does.
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A backend connection, plain or TLS.
pub type BackendStream = MaybeTls<TlsStream<TcpStream>>;

impl BackendStream {
    pub(super) fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(s) => s.get_ref().0,
        }
    }

    /// True when the peer closed the socket or sent something unprompted.
    /// Peeks, so no byte (of a TLS record) is consumed.
    pub fn is_broken(&self) -> bool {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        !matches!(self.tcp().poll_peek(&mut cx, &mut buf), Poll::Pending)
    }
}

/// SSLRequest, then the TLS handshake if the server agrees (or must).
pub async fn negotiate(ep: &Endpoint, mut tcp: TcpStream) -> Result<BackendStream, ClientError> {
    let Some(connector) = ep.tls.connector() else {
        return Ok(BackendStream::Plain(tcp));
    };
    let fail = |e: std::io::Error| ClientError::BackendConnect(format!("TLS: {e}"));
    let mut req = BytesMut::with_capacity(8);
    frontend::ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(fail)?;
    match tcp.read_u8().await.map_err(fail)? {
        b'S' => {
            let name = ServerName::try_from(ep.host.clone())
                .map_err(|e| ClientError::BackendConnect(format!("TLS: host name: {e}")))?;
            let tls = connector.connect(name, tcp).await.map_err(fail)?;
            Ok(BackendStream::Tls(Box::new(tls)))
        }
        b'N' if ep.tls.mode == BackendTls::Prefer => Ok(BackendStream::Plain(tcp)),
        b'N' => Err(ClientError::BackendConnect(format!(
            "the server does not support TLS (backend.tls = {:?})",
            ep.tls.mode
        ))),
        other => Err(ClientError::BackendConnect(format!(
            "unexpected reply {other:#x} to SSLRequest"
        ))),
    }
}
