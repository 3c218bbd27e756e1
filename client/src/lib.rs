//! The device side of muxagent above the wire, sans-IO: what `muxagent ctl` and the phone's web
//! app (compiled to wasm32) both run, so the two controllers cannot disagree.
//!
//! Nothing here touches a socket, a file, a clock or a thread: time comes in as Unix
//! milliseconds (or seconds, where the wire counts seconds), randomness as a
//! `rand_core::CryptoRng`, and effects go out as values the caller carries out.
//!
//! - [`history`]: the fold of one session's events (status, approvals, plans).
//! - [`book`]: the machines this device paired with, and finding one by name.
//! - [`devices`]: the devices of this device's account, and revoking them or making owners.
//! - [`decide`]: a signed decision for an approval, bound to the input as it was shown.
//! - [`inbox`]: the approvals waiting for a person across machines, newest first.
//! - [`controller`]: the state machine of one relay connection to many machines.
//! - [`model`]: the device's picture of its machines, sessions and events, folded from the
//!   controller's notes (what the web app renders and caches).
//! - [`whole`]: joining an approval's whole input from the machine's pages.
//! - [`backoff`]: jittered exponential reconnect delays.
//! - [`words`]: the words people read for states and decisions.
//! - [`limits`]: every capacity and timeout of this crate, with its reason.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod book;
pub mod controller;
pub mod decide;
pub mod devices;
pub mod history;
pub mod inbox;
pub mod limits;
pub mod model;
pub mod whole;
pub mod words;
