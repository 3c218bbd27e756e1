//! The muxagent relay: authenticates keys and routes end-to-end-encrypted frames between a
//! device and the machines of its account. It never sees content: everything between a device
//! and a machine is a Noise ciphertext inside [`muxagent_proto::frame`] payloads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), muxagent_relay::RelayError> {
//! use muxagent_relay::{Relay, RelayConfig};
//! let relay = Relay::bind(RelayConfig::new("127.0.0.1:8080".parse().unwrap(), "/var/lib/muxagent-relay")).await?;
//! relay.run(muxagent_relay::shutdown::signals()?).await
//! # }
//! ```
//!
//! # Modules
//!
//! - [`config`] — what a relay is started with, and its limits.
//! - `server`: binding, accepting, caps, graceful shutdown ([`Relay`]).
//! - `http`: the HTTP side of the port (`/healthz`, `/metrics`, the web app, the upgrade).
//! - `assets`: the web app's files, embedded gzip-only at build time from `web/dist`.
//! - `conn`: one WebSocket connection: hello, login, the read/write/ping loop.
//! - `router`: who is online (several connections per device key, one per machine), routing,
//!   presence both ways, pairing rendezvous, registry checks.
//! - `registry`: the account model, folded from signed entries.
//! - `log`: the registry's durable log (`muxagent-store`).
//! - `push`: Web Push: the VAPID key, the devices' subscriptions (durable, capped), the
//!   endpoint allowlist, the push queue and the workers that POST to push services.
//! - `meter`: the byte stream under the WebSocket: every byte charged to the inbound budget as
//!   it is read, frame headers checked (login-sized before login, fragments, control frames).
//! - `outbox`: a connection's bounded queue (frames and bytes; per account and relay-wide byte
//!   pools), its drop policy, and the cut of a reader whose queue stays full.
//! - `bucket`: the inbound byte budget (one per key: a device's connections share it).
//! - `metrics`: counters, rendered in the Prometheus text format.
//! - `time`: deadlines around futures, the Unix clock.
//! - [`shutdown`] — SIGTERM/SIGINT.
//! - [`error`] — [`RelayError`].
//! - [`limits`] — every capacity, rate and timeout of the relay, with its reason and memory
//!   arithmetic (and the wire's, re-exported).
//! - `stream`: the server's byte stream, plain TCP or TLS (`muxagent_relay_client::MaybeTls`).
//!
//! The client is the crate `muxagent-relay-client`, which this one uses and never the reverse:
//! a program that only dials a relay links none of the server.
//!
//! # Frame flow
//!
//! ```text
//! client                                relay
//!   ── GET /relay (Upgrade) ─────────────►
//!   ◄──────────────── 101 + ServerHello{versions, challenge}
//!   ── Login{role, identity, hostname, sig} ►   (within the login deadline; one frame of ≤ 512
//!                                                bytes, and nothing more until LoginOk)
//!   ◄──────────────── LoginOk{account}
//!                     [+ device: Presence of the account's online machines]
//!                     [+ machine: DevicePresence of the account's online devices]
//! pending machine: OpenPairing{id} ──► ◄── PairingOpened
//! device: PairSend{id} ──► machine gets PairRecv{id, from};  machine: PairSend{id} ──► device
//! device: Registry{RegisterMachine} ──► (append + fsync) ◄── RegistryAck  | Error{EntryRefused}
//! device/machine: Send{to} ──► peer gets Recv{from}        | Error{NotAllowed|PeerOffline|Dropped}
//!                 (a device's every live connection gets it: up to 4 per device key)
//! devices ◄── Presence{machine, hostname, online}
//! machines ◄── DevicePresence{device, online, closed}   first up / a connection closed / last down
//! device: PushSubscribe{endpoint?} ──► (append + fsync) ◄── PushState{vapid key, endpoint}
//! device: PushQuery ──► ◄── PushState                     | Error{NotAllowed|RateLimited}
//! machine: Push{device, body} ──► queued; a worker POSTs it to the device's endpoint
//!                                                          | Error{NotAllowed|RateLimited|Dropped}
//! any ◄── Error{Displaced|Revoked|Malformed} then close;  Restarting{reconnect_in, try_for} on shutdown
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod limits;
pub mod shutdown;

mod admission;
mod assets;
mod bucket;
mod conn;
mod http;
mod log;
mod meter;
mod metrics;
mod outbox;
mod push;
mod pushback;
mod registry;
#[cfg(test)]
mod registry_sim;
mod router;
mod server;
mod stream;
mod time;
mod tls;

pub use config::{Limits, MetricsAccess, PushConfig, RelayConfig, TlsFiles};
pub use error::RelayError;
pub use limits::RELAY_WS_PATH;
pub use server::Relay;

/// Log a warning to stderr.
pub(crate) fn warn(message: std::fmt::Arguments<'_>) {
    eprintln!("muxagent-relay: warning: {message}");
}

/// Log an event to stderr.
pub(crate) fn info(message: std::fmt::Arguments<'_>) {
    eprintln!("muxagent-relay: {message}");
}
