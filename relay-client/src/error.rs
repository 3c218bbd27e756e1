//! [`ClientError`]: why connecting to, logging in at, or talking with the relay failed, in words
//! for the person who reads it.

use std::fmt;
use std::io;

use muxagent_proto::frame::ErrorCode;

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// The relay URL is not usable.
    Url(String),
    /// The TCP connection failed.
    Connect(io::Error),
    /// TLS setup or handshake failed.
    Tls(String),
    /// The WebSocket upgrade or a WebSocket operation failed.
    WebSocket(String),
    /// A step took longer than its timeout.
    Timeout(&'static str),
    /// The relay answered with an error (during login: the login was refused).
    Refused {
        /// The relay's code.
        code: ErrorCode,
        /// The relay's explanation.
        reason: String,
    },
    /// The relay sent something the protocol does not allow here.
    Protocol(String),
    /// The connection is closed.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(reason) => write!(f, "bad relay URL: {reason}"),
            ClientError::Connect(e) => write!(f, "cannot connect to the relay: {e}"),
            ClientError::Tls(reason) => write!(f, "TLS with the relay failed: {reason}"),
            ClientError::WebSocket(reason) => write!(f, "WebSocket to the relay failed: {reason}"),
            ClientError::Timeout(what) => write!(f, "timed out while {what}"),
            ClientError::Refused { code, reason } => {
                write!(f, "the relay refused ({code:?}): {reason}")
            }
            ClientError::Protocol(reason) => write!(f, "the relay broke the protocol: {reason}"),
            ClientError::Closed => f.write_str("the relay connection is closed"),
        }
    }
}

impl std::error::Error for ClientError {}
