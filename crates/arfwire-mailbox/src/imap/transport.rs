//! The byte stream under the IMAP client: plain TCP or TLS over TCP (rustls with ring).

use std::fmt;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::ImapError;

/// A connection to the server, encrypted or not.
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(_) => f.write_str("Transport::Plain"),
            Transport::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a TLS handshake needs: the client configuration and the name to verify.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS trusting the certificates in `ca_file`, or the system's trust store when there is
    /// none, for a server that must present a certificate for `server_name`.
    pub(crate) fn new(server_name: &str, ca_file: Option<&Path>) -> Result<Self, ImapError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|cause| ImapError::Tls(cause.to_string()))?;
        let config = match ca_file {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let certificates = CertificateDer::pem_file_iter(path).map_err(|cause| {
                    ImapError::Tls(format!("cannot read {}: {cause}", path.display()))
                })?;
                for certificate in certificates {
                    let certificate = certificate.map_err(|cause| {
                        ImapError::Tls(format!("cannot read {}: {cause}", path.display()))
                    })?;
                    roots.add(certificate).map_err(|cause| {
                        ImapError::Tls(format!("a certificate in {}: {cause}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(ImapError::Tls(format!(
                        "{} holds no certificates",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .with_platform_verifier()
                .map_err(|cause| ImapError::Tls(cause.to_string()))?
                .with_no_client_auth(),
        };
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|cause| {
            ImapError::Tls(format!(
                "{server_name:?} is not a valid server name: {cause}"
            ))
        })?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// Run the handshake over `stream`.
    pub(crate) async fn wrap(&self, stream: TcpStream) -> io::Result<Transport> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await?;
        Ok(Transport::Tls(Box::new(stream)))
    }
}
