//! TLS for both listeners (`--tls-cert`, `--tls-key`), with rustls. The handshake runs in each
//! connection's own task under the handshake time limit, never on the accept loop, so a slow or
//! silent client cannot hold up anyone else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_rustls::TlsAcceptor;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use smol::net::TcpStream;

/// A client connection, plain or TLS.
pub type Stream = agent::runtime::MaybeTls<futures_rustls::server::TlsStream<TcpStream>>;

/// Loads the certificate chain and key into an acceptor.
/// `alpn` lists the protocols offered in the handshake (`h2` only on the `--http` listener).
pub fn acceptor(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not fit together")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Wraps an accepted connection in TLS when an acceptor is configured.
pub async fn accept(
    tcp: TcpStream,
    acceptor: Option<&TlsAcceptor>,
    timeout: Duration,
) -> std::io::Result<Stream> {
    let Some(acceptor) = acceptor else {
        return Ok(Stream::Plain(tcp));
    };
    let handshake = async { acceptor.accept(tcp).await.map(|tls| Stream::Tls(Box::new(tls))) };
    agent::runtime::within(timeout, handshake).await.unwrap_or_else(|| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))
    })
}
