//! A relay client: connect over `ws://` or `wss://`, log in with an [`Identity`], then send and
//! receive [`Frame`]s. Used by the tests and the load bench, and meant for the daemon and
//! `muxagent ctl`.
//!
//! Every step has a timeout from [`ClientConfig`], and every failure is a [`ClientError`] that
//! says what went wrong. The relay's WebSocket pings are answered while [`Client::recv`] is
//! being awaited, so a client that wants to stay connected keeps a `recv` pending.
//!
//! ```no_run
//! # async fn demo(identity: &muxagent_proto::identity::Identity) -> Result<(), muxagent_relay::client::ClientError> {
//! use muxagent_relay::client::{Client, ClientConfig};
//! use muxagent_proto::frame::Role;
//! let mut client =
//!     Client::connect("https://relay.example.com", identity, Role::Device, None, &ClientConfig::default())
//!         .await?;
//! let frame = client.recv().await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Bytes, Message};
use futures_rustls::TlsConnector;
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{ErrorCode, Frame, Hostname, Login, Role, ServerHello};
use muxagent_proto::identity::{Fingerprint, Identity};
use muxagent_proto::limits::{MAX_FRAME_LEN, RELAY_WS_PATH};
use rustls_pki_types::{CertificateDer, ServerName};
use smol::Async;
use smol::io::{AsyncRead, AsyncWrite};
use smol::stream::StreamExt as _;

use crate::time::until;

/// Which certificates a `wss://` client trusts.
#[derive(Clone, Debug, Default)]
pub enum Roots {
    /// The operating system's certificate store.
    #[default]
    System,
    /// Only these (a self-hosted relay's own certificate, tests).
    Custom(Vec<CertificateDer<'static>>),
}

/// How a client connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Certificates trusted for `wss://`.
    pub roots: Roots,
    /// Time for DNS, TCP, TLS, the WebSocket upgrade and the login together.
    pub connect_timeout: Duration,
    /// Time one frame may take to be written.
    pub write_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            roots: Roots::System,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

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

/// A parsed relay URL: `ws`, `wss`, `http` or `https`, a host, an optional port and path. The
/// WebSocket path defaults to [`RELAY_WS_PATH`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayUrl {
    /// `wss`/`https`.
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path of the WebSocket endpoint.
    pub path: String,
}

impl RelayUrl {
    /// Parse a relay URL (`https://relay.example.com`, `ws://127.0.0.1:8080`, …).
    pub fn parse(url: &str) -> Result<RelayUrl, ClientError> {
        let bad = |reason: &str| ClientError::Url(format!("{url}: {reason}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(bad("the scheme must be ws, wss, http or https")),
        };
        let rest = rest.split(['#', '?']).next().unwrap_or("");
        let (authority, path) = match rest.find('/') {
            Some(index) => rest.split_at(index),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after the IPv6 address")),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => {
                    (host.to_string(), port.parse().map_err(|_| bad("bad port"))?)
                }
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let path = if path.is_empty() || path == "/" {
            RELAY_WS_PATH.to_string()
        } else if path.ends_with(RELAY_WS_PATH) {
            path.to_string()
        } else {
            format!("{}{RELAY_WS_PATH}", path.trim_end_matches('/'))
        };
        Ok(RelayUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// What a person should know before using this URL: `Some` when it is plain `ws`/`http`
    /// to a host other than this one (`localhost`, 127.0.0.0/8, `::1`). The relay then sees,
    /// and anyone on the network path can read, the machines' hostnames, which keys talk to
    /// which and when, and push subscriptions, and can drop or delay frames. What devices and
    /// machines say stays end-to-end encrypted and signed either way.
    pub fn cleartext_risk(&self) -> Option<String> {
        if self.tls || is_loopback(&self.host) {
            return None;
        }
        Some(format!(
            "the relay URL {} is not encrypted (ws/http, not wss/https): anyone on the network path can see this machine's hostname, which devices talk to which machines and when, and can drop or delay messages (what they say stays end-to-end encrypted); use https:// unless every hop is a network you trust",
            self.websocket_url()
        ))
    }

    fn websocket_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Whether `host` names this host only: `localhost` (and `*.localhost`), 127.0.0.0/8, `::1`.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

enum ClientStream {
    Plain(Async<TcpStream>),
    Tls(Box<futures_rustls::client::TlsStream<Async<TcpStream>>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_close(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A connection to the relay.
pub struct Client {
    ws: WebSocketStream<ClientStream>,
    write_timeout: Duration,
    fingerprint: Option<Fingerprint>,
    account: Option<Fingerprint>,
    protocol: u16,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("fingerprint", &self.fingerprint)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(2 * MAX_FRAME_LEN + 64)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
}

pub(crate) fn tls_connector(roots: &Roots) -> Result<TlsConnector, ClientError> {
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

async fn tcp_connect(url: &RelayUrl) -> Result<Async<TcpStream>, ClientError> {
    let addrs: Vec<SocketAddr> = smol::net::resolve((url.host.as_str(), url.port))
        .await
        .map_err(ClientError::Connect)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    for addr in addrs {
        match Async::<TcpStream>::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(ClientError::Connect(last))
}

impl Client {
    /// Connect to the relay at `url` and log in as `role` (machines name their `hostname`).
    pub async fn connect(
        url: &str,
        identity: &Identity,
        role: Role,
        hostname: Option<Hostname>,
        config: &ClientConfig,
    ) -> Result<Client, ClientError> {
        let deadline = Instant::now() + config.connect_timeout;
        let url = RelayUrl::parse(url)?;
        let tcp = until(deadline, tcp_connect(&url))
            .await
            .ok_or(ClientError::Timeout("connecting"))??;
        Self::connect_over(tcp, &url, identity, role, hostname, config, deadline).await
    }

    /// Like [`Client::connect`] over a TCP stream the caller connected (and tuned) itself.
    pub async fn connect_over(
        tcp: Async<TcpStream>,
        url: &RelayUrl,
        identity: &Identity,
        role: Role,
        hostname: Option<Hostname>,
        config: &ClientConfig,
        deadline: Instant,
    ) -> Result<Client, ClientError> {
        let (mut client, hello) = Self::open_over(tcp, url, config, deadline).await?;
        until(deadline, client.login(identity, &hello, role, hostname))
            .await
            .ok_or(ClientError::Timeout("logging in"))??;
        Ok(client)
    }

    /// Connect without logging in: the relay's hello is returned so the caller can log in
    /// with [`Client::login`] (or, in tests, not).
    pub async fn open(
        url: &str,
        config: &ClientConfig,
    ) -> Result<(Client, ServerHello), ClientError> {
        let deadline = Instant::now() + config.connect_timeout;
        let url = RelayUrl::parse(url)?;
        let tcp = until(deadline, tcp_connect(&url))
            .await
            .ok_or(ClientError::Timeout("connecting"))??;
        Self::open_over(tcp, &url, config, deadline).await
    }

    async fn open_over(
        tcp: Async<TcpStream>,
        url: &RelayUrl,
        config: &ClientConfig,
        deadline: Instant,
    ) -> Result<(Client, ServerHello), ClientError> {
        let _ = tcp.get_ref().set_nodelay(true);
        let stream = if url.tls {
            let connector = tls_connector(&config.roots)?;
            let name = ServerName::try_from(url.host.clone())
                .map_err(|e| ClientError::Url(format!("{}: {e}", url.host)))?;
            let tls = until(deadline, connector.connect(name, tcp))
                .await
                .ok_or(ClientError::Timeout("in the TLS handshake"))?
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            ClientStream::Tls(Box::new(tls))
        } else {
            ClientStream::Plain(tcp)
        };
        let request = url.websocket_url();
        let (ws, _response) = until(
            deadline,
            async_tungstenite::client_async_with_config(request, stream, Some(client_ws_config())),
        )
        .await
        .ok_or(ClientError::Timeout("upgrading to WebSocket"))?
        .map_err(|e| ClientError::WebSocket(e.to_string()))?;
        let mut client = Client {
            ws,
            write_timeout: config.write_timeout,
            fingerprint: None,
            account: None,
            protocol: 0,
        };
        let hello = match until(deadline, client.recv()).await {
            None => return Err(ClientError::Timeout("waiting for the relay's hello")),
            Some(Err(e)) => return Err(e),
            Some(Ok(Frame::ServerHello(hello))) => hello,
            Some(Ok(other)) => {
                return Err(ClientError::Protocol(format!(
                    "expected a hello, got kind {}",
                    other.kind()
                )));
            }
        };
        Ok((client, hello))
    }

    /// Answer the relay's challenge. On success the account (if any) is in [`Client::account`].
    pub async fn login(
        &mut self,
        identity: &Identity,
        hello: &ServerHello,
        role: Role,
        hostname: Option<Hostname>,
    ) -> Result<(), ClientError> {
        let ours = muxagent_proto::limits::PROTOCOL_VERSION;
        if !(hello.min_protocol..=hello.max_protocol).contains(&ours) {
            return Err(ClientError::Refused {
                code: ErrorCode::UnsupportedVersion,
                reason: format!(
                    "the relay speaks versions {}..={}, this build {ours}",
                    hello.min_protocol, hello.max_protocol
                ),
            });
        }
        let login = Login::sign(identity, &hello.challenge, role, hostname);
        self.send(&Frame::Login(login)).await?;
        match self.recv().await? {
            Frame::LoginOk(ok) => {
                self.fingerprint = Some(identity.public().fingerprint());
                self.account = ok.account;
                self.protocol = ok.protocol;
                Ok(())
            }
            Frame::Error(error) => Err(ClientError::Refused {
                code: error.code,
                reason: error.reason.to_string(),
            }),
            other => Err(ClientError::Protocol(format!(
                "expected LoginOk, got kind {}",
                other.kind()
            ))),
        }
    }

    /// The account the relay reported at login.
    pub fn account(&self) -> Option<Fingerprint> {
        self.account
    }

    /// This client's fingerprint, once logged in.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// The protocol version in use.
    pub fn protocol(&self) -> u16 {
        self.protocol
    }

    /// Send one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), ClientError> {
        self.send_bytes(frame.encode()).await
    }

    /// Send one binary WebSocket message as it is (for tests of malformed input).
    pub async fn send_bytes(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send_message(Message::Binary(Bytes::from(bytes))).await
    }

    /// Send one WebSocket message as it is.
    pub async fn send_message(&mut self, message: Message) -> Result<(), ClientError> {
        match until(Instant::now() + self.write_timeout, self.ws.send(message)).await {
            None => Err(ClientError::Timeout("sending a frame")),
            Some(Ok(())) => Ok(()),
            Some(Err(async_tungstenite::tungstenite::Error::ConnectionClosed))
            | Some(Err(async_tungstenite::tungstenite::Error::AlreadyClosed)) => {
                Err(ClientError::Closed)
            }
            Some(Err(e)) => Err(ClientError::WebSocket(e.to_string())),
        }
    }

    /// Receive the next frame, skipping kinds this build does not know. Answers pings while
    /// waiting. [`ClientError::Closed`] once the relay has closed the connection.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        loop {
            let message = match self.ws.next().await {
                None => return Err(ClientError::Closed),
                Some(Err(async_tungstenite::tungstenite::Error::ConnectionClosed))
                | Some(Err(async_tungstenite::tungstenite::Error::AlreadyClosed)) => {
                    return Err(ClientError::Closed);
                }
                Some(Err(e)) => return Err(ClientError::WebSocket(e.to_string())),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Binary(data) => match Frame::decode(&data) {
                    Ok(Decoded::Known(frame)) => return Ok(frame),
                    Ok(Decoded::Unknown { .. }) => continue,
                    Err(e) => return Err(ClientError::Protocol(e.to_string())),
                },
                // Read on: that sends tungstenite's close reply, then ends the stream.
                Message::Close(_) => continue,
                Message::Text(_) => return Err(ClientError::Protocol("a text message".into())),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Close the connection politely (bounded by the write timeout).
    pub async fn close(mut self) {
        let _ = until(Instant::now() + self.write_timeout, self.ws.close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = RelayUrl::parse("https://relay.example.com").ok();
        assert_eq!(
            url,
            Some(RelayUrl {
                tls: true,
                host: "relay.example.com".into(),
                port: 443,
                path: "/relay".into()
            })
        );
        let url = RelayUrl::parse("ws://127.0.0.1:8080/").ok();
        assert_eq!(url.map(|u| (u.port, u.path)), Some((8080, "/relay".into())));
        let url = RelayUrl::parse("http://[::1]:9/base/").ok();
        assert_eq!(
            url.map(|u| (u.host, u.path)),
            Some(("::1".into(), "/base/relay".into()))
        );
        assert!(RelayUrl::parse("ftp://x").is_err());
        assert!(RelayUrl::parse("ws://:80").is_err());
        let risk = |url: &str| {
            RelayUrl::parse(url)
                .ok()
                .and_then(|url| url.cleartext_risk())
        };
        for url in [
            "ws://relay.example.net",
            "http://192.168.1.5:8080",
            "ws://0.0.0.0:9",
            "http://[fe80::1]:80",
        ] {
            let warning = risk(url).unwrap_or_default();
            assert!(warning.contains("not encrypted"), "{url}: {warning}");
        }
        for url in [
            "wss://relay.example.net",
            "https://192.168.1.5",
            "ws://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:9",
            "ws://localhost:80",
            "http://app.localhost",
        ] {
            assert_eq!(risk(url), None, "{url}");
        }
        assert!(RelayUrl::parse("ws://x:y").is_err());
    }
}
