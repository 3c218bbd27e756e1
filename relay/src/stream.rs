//! The server's byte stream: plain TCP, or rustls's server side over it. The type is the one
//! the client uses too (`muxagent_relay_client::MaybeTls`), generic over the TLS side.

use std::net::TcpStream;

use smol::Async;

/// A server-side connection, plain or TLS.
pub(crate) type Stream =
    muxagent_relay_client::MaybeTls<futures_rustls::server::TlsStream<Async<TcpStream>>>;
