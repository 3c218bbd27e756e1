//! TLS for a client: which roots it trusts ([`Roots`]) and the rustls configuration
//! ([`tls_connector`]) that `wss://` relay connections and the relay's Web Push sender share.

use std::sync::Arc;

use futures_rustls::TlsConnector;
use rustls_pki_types::CertificateDer;

use crate::error::ClientError;

/// Which certificates a `wss://` client trusts.
#[derive(Clone, Debug, Default)]
pub enum Roots {
    /// The operating system's certificate store.
    #[default]
    System,
    /// Only these (a self-hosted relay's own certificate, tests).
    Custom(Vec<CertificateDer<'static>>),
}

/// A TLS connector trusting `roots`, with ring as the provider and ALPN `http/1.1`.
pub fn tls_connector(roots: &Roots) -> Result<TlsConnector, ClientError> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(ClientError::Tls("no system root certificates found".into()));
            }
        }
        Roots::Custom(certs) => {
            for cert in certs {
                store
                    .add(cert.clone())
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
