//! The client side of the relay's WebSocket: connect over `ws://` or `wss://`, log in with an
//! [`Identity`](muxagent_proto::identity::Identity), then send and receive
//! [`Frame`](muxagent_proto::frame::Frame)s. The daemon, `muxagent ctl`, the load bench and the
//! relay's tests use it; the web app speaks the same frames through the browser's WebSocket.
//!
//! This crate knows nothing of the server, so a program that only dials a relay (the daemon,
//! a board build of `muxagent` without `up`) links none of it. The server (`muxagent-relay`)
//! uses the pieces both sides need from here: the TLS-or-plain byte stream ([`MaybeTls`]), the
//! deadline around a future ([`until`]), the TLS client setup its Web Push sender shares
//! ([`tls_connector`]), and `--version` ([`version`]).
//!
//! # Modules
//!
//! - `client`: [`Client`], one logged-in connection, and [`ClientConfig`].
//! - `url`: [`RelayUrl`], the relay URLs people type and what a cleartext one risks.
//! - `tls`: [`Roots`] and the rustls client configuration.
//! - `stream`: [`MaybeTls`], one byte stream type for plain TCP or TLS over it, either side.
//! - `deadline`: [`until`], a future with a deadline.
//! - `error`: [`ClientError`].
//! - [`limits`]: every capacity and timeout of a client connection, with its reason.
//! - [`version`]: the `--version` line of both programs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod deadline;
mod error;
pub mod limits;
mod stream;
mod tls;
mod url;
pub mod version;

pub use client::{Client, ClientConfig};
pub use deadline::{Until, until};
pub use error::ClientError;
pub use stream::MaybeTls;
pub use tls::{Roots, tls_connector};
pub use url::RelayUrl;
