//! Loading the relay's certificate chain and key (PEM) into a rustls server configuration
//! (ring provider, TLS 1.2 and 1.3, HTTP/1.1 only).

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;
use crate::error::RelayError;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> RelayError {
    RelayError::Tls {
        path: Some(path.to_path_buf()),
        reason: reason.to_string(),
    }
}

/// Build the TLS acceptor from the PEM files.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<futures_rustls::TlsAcceptor, RelayError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error(&files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(&files.cert, "no CERTIFICATE block in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RelayError::Tls {
            path: None,
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(&files.key, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(futures_rustls::TlsAcceptor::from(Arc::new(config)))
}
