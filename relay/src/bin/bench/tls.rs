//! wss for the load: a self-signed certificate for `localhost` (the relay under test and the
//! forwarder serve it, the load's clients trust only it), and the forwarder's acceptor, set up
//! as the relay's (`relay/src/tls.rs`: ring provider, TLS 1.2 and 1.3, HTTP/1.1 only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key as PEM files, and the certificate to trust.
#[derive(Clone)]
pub struct SelfSigned {
    pub files: (PathBuf, PathBuf),
    pub cert: CertificateDer<'static>,
}

/// Make a certificate for `localhost` in `dir`.
pub fn self_signed(dir: &Path) -> Result<SelfSigned, String> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .map_err(|e| format!("making a certificate: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    std::fs::write(&key, certified.signing_key.serialize_pem())
        .map_err(|e| format!("{}: {e}", key.display()))?;
    Ok(SelfSigned {
        files: (cert, key),
        cert: certified.cert.der().clone(),
    })
}

/// A server acceptor for the PEM files, configured as the relay's.
pub fn acceptor(cert: &Path, key: &Path) -> Result<futures_rustls::TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(futures_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A client connector trusting only `cert`.
pub fn connector(cert: &CertificateDer<'static>) -> Result<futures_rustls::TlsConnector, String> {
    Ok(futures_rustls::TlsConnector::from(client_config(cert)?))
}

/// A client configuration trusting only `cert`.
pub fn client_config(cert: &CertificateDer<'static>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
