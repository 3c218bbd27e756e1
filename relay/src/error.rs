//! The relay's error types, one small enum per layer, with messages written for people.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why the relay could not start or stopped with an error.
#[derive(Debug)]
pub enum RelayError {
    /// The listening address could not be bound.
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// A TLS certificate or key file could not be read or used.
    Tls {
        /// The file, when one is at fault.
        path: Option<PathBuf>,
        /// What was wrong.
        reason: String,
    },
    /// The registry's log could not be opened, read or written.
    Store {
        /// What failed.
        reason: String,
    },
    /// The configuration is inconsistent.
    Config(String),
    /// Listening for the shutdown signals failed.
    Signals(io::Error),
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            RelayError::Tls {
                path: Some(path),
                reason,
            } => {
                write!(f, "TLS setup failed for {}: {reason}", path.display())
            }
            RelayError::Tls { path: None, reason } => write!(f, "TLS setup failed: {reason}"),
            RelayError::Store { reason } => write!(f, "the registry log failed: {reason}"),
            RelayError::Config(reason) => write!(f, "invalid configuration: {reason}"),
            RelayError::Signals(source) => {
                write!(f, "cannot listen for SIGTERM/SIGINT: {source}")
            }
        }
    }
}

impl std::error::Error for RelayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RelayError::Bind { source, .. } | RelayError::Signals(source) => Some(source),
            _ => None,
        }
    }
}
