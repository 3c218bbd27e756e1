//! The muxagent wire protocol, sans-IO.
//!
//! Everything that crosses a socket or a QR code is defined here, parsed fully and validated
//! before anyone acts on it. The crate never touches sockets, files, threads, clocks or ambient
//! randomness: time is passed in as Unix seconds and randomness as a `rand_core::CryptoRng`, so
//! the same code runs in the daemon, the relay, `muxagent ctl` and (as wasm32) the web app.
//!
//! - [`identity`]: a node's keys, fingerprints and domain-separated signatures.
//! - [`envelope`]: the `kind ‖ postcard body` framing shared by relay frames and app messages.
//! - [`frame`]: client ↔ relay frames.
//! - [`ticket`]: the pairing ticket carried in the `/pair#…` link and QR code.
//! - [`noise`]: the end-to-end channel between a device and a machine (Noise, via `snow`).
//! - [`app`]: messages inside that channel: sessions, events, approvals, resync.
//! - [`device`], [`machine`]: each side's protocol steps over the above, sans-IO, so
//!   `muxagent ctl`, the web app and the daemon share one implementation.
//! - [`limits`]: every size, depth and timeout both ends must agree on, with the reasoning
//!   behind it.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod app;
pub mod device;
pub mod envelope;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod machine;
pub mod noise;
pub mod peer;
pub mod push;
pub mod text;
pub mod ticket;

mod byte_vec;
mod fixed_bytes;

pub use fixed_bytes::Bytes64;
