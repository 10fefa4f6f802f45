//! TLS shared by the agent and the collector: [`MaybeTls`], the plain-or-TLS byte stream both
//! sides' connections are (a client stream in the agent, a server stream in the collector), and
//! [`tls_connector`], the rustls client the agent's `wss://` and the collector's `https://`
//! webhooks verify their peers with.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures_lite::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;

/// A TCP stream, plain or wrapped in TLS. `T` is the TLS stream type: a client stream here, a
/// server stream in the collector.
pub enum MaybeTls<T> {
    /// No TLS (`ws://`, `http://`).
    Plain(TcpStream),
    /// TLS (`wss://`, `https://`).
    Tls(Box<T>),
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Builds the TLS connector for `wss://`: the system's trusted roots, or only the certificates
/// in `ca_file` when given (CAs, or the collector's own self-signed certificate).
pub fn tls_connector(ca_file: Option<&Path>) -> anyhow::Result<futures_rustls::TlsConnector> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    let mut listed = Vec::new();
    match ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read CA certificates from {}", path.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad PEM in {}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "no certificates in {}", path.display());
            for cert in &certs {
                roots
                    .add(cert.clone())
                    .with_context(|| format!("bad CA certificate in {}", path.display()))?;
            }
            listed = certs;
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                log::warn!("system CA certificates: {err}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            anyhow::ensure!(added > 0, "no usable system CA certificates; give --ca-file");
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .context("cannot build the certificate verifier")?;
    let verifier = Arc::new(TrustedCertificates { listed, webpki });
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(futures_rustls::TlsConnector::from(Arc::new(config)))
}

/// Certificate verification as rustls does it (webpki: chain to a trusted root, validity,
/// name), plus one case curl, Python and Node accept and webpki refuses: a self-signed
/// certificate made with `openssl req -x509`, which marks itself `CA:TRUE`, presented by the
/// collector and listed itself in `--ca-file`. webpki refuses any CA certificate as a server's
/// (`CaUsedAsEndEntity`); this one the operator chose to trust byte for byte, so it is accepted
/// when webpki's only objection is that, and its name still has to match the URL's host.
/// webpki checks validity dates before that objection, so an expired one is still refused.
#[derive(Debug)]
struct TrustedCertificates {
    /// The certificates of `--ca-file`, exactly as listed (empty with the system's roots).
    listed: Vec<rustls_pki_types::CertificateDer<'static>>,
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for TrustedCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verdict = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(err)
                if is_ca_used_as_end_entity(&err)
                    && self.listed.iter().any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&cert, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Whether webpki refused a certificate only because it is a CA's (`CaUsedAsEndEntity`).
fn is_ca_used_as_end_entity(err: &rustls::Error) -> bool {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            matches!(
                other.0.downcast_ref::<webpki::Error>(),
                Some(webpki::Error::CaUsedAsEndEntity)
            )
        }
        _ => false,
    }
}
