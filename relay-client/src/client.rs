//! [`Client`]: one connection to the relay over `ws://` or `wss://`, logged in with an
//! [`Identity`], sending and receiving [`Frame`]s.
//!
//! Every step has a timeout from [`ClientConfig`], and every failure is a [`ClientError`] that
//! says what went wrong. The relay's WebSocket pings are answered while [`Client::recv`] is
//! being awaited, so a client that wants to stay connected keeps a `recv` pending.
//!
//! ```no_run
//! # async fn demo(identity: &muxagent_proto::identity::Identity) -> Result<(), muxagent_relay_client::ClientError> {
//! use muxagent_relay_client::{Client, ClientConfig};
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
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Bytes, Message};
use muxagent_proto::envelope::Decoded;
use muxagent_proto::frame::{ErrorCode, Frame, Hostname, Login, Role, ServerHello};
use muxagent_proto::identity::{Fingerprint, Identity};
use muxagent_proto::limits::MAX_FRAME_LEN;
use rustls_pki_types::ServerName;
use smol::Async;
use smol::stream::StreamExt as _;

use crate::deadline::until;
use crate::error::ClientError;
use crate::limits::{CONNECT_TIMEOUT_MS, MAX_WRITE_BUFFER_LEN, READ_BUFFER_LEN, WRITE_TIMEOUT_MS};
use crate::stream::MaybeTls;
use crate::tls::{Roots, tls_connector};
use crate::url::RelayUrl;

/// The client's byte stream: plain TCP, or rustls's client side over it.
type ClientStream = MaybeTls<futures_rustls::client::TlsStream<Async<TcpStream>>>;

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
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
            write_timeout: Duration::from_millis(WRITE_TIMEOUT_MS),
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
        .read_buffer_size(READ_BUFFER_LEN)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_LEN)
        .max_message_size(Some(MAX_FRAME_LEN))
        .max_frame_size(Some(MAX_FRAME_LEN))
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
            MaybeTls::Tls(Box::new(tls))
        } else {
            MaybeTls::Plain(tcp)
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
