//! Every capacity and timeout of the device side, with the reason for its value. The wire's own
//! limits (frame sizes, cursors per hello, reconnect delays) are in
//! [`muxagent_proto::limits`]; these bound what a device keeps about its machines.
//!
//! # Memory arithmetic
//!
//! Everything a machine or the relay can make a device remember is keyed by something the
//! network chose (a fingerprint, a session id, an approval number) and capped here. Per paired
//! machine the controller keeps its channel (~1 KiB while handshaking, ~300 bytes open), one
//! cursor pair per session (≤ [`MAX_SESSIONS_PER_MACHINE`] × 48 bytes = 96 KiB) and at most
//! [`MAX_QUEUED_REQUESTS`] requests waiting for the channel. Per session, a [`History`] keeps at
//! most [`MAX_APPROVALS_PER_SESSION`] approvals (each holds one request, ≤ one app message, but
//! typically ~300 bytes: ~300 KiB) and [`MAX_PLANS_PER_SESSION`] plans. The web app's cache holds
//! at most [`CACHED_EVENTS_PER_SESSION`] events per session (~200 bytes typical: 400 KiB).
//!
//! [`History`]: crate::history::History

/// Machines one device pairs with: the relay's own cap on an account
/// ([`RELAY_MAX_MACHINES_PER_ACCOUNT`](muxagent_proto::limits::RELAY_MAX_MACHINES_PER_ACCOUNT)),
/// so a device never holds more than its account can.
pub const MAX_MACHINES: usize = muxagent_proto::limits::RELAY_MAX_MACHINES_PER_ACCOUNT;

/// Sessions a device tracks per machine (cursors, metadata): as many as one hello can name
/// ([`MAX_CURSORS`](muxagent_proto::limits::MAX_CURSORS)). Events of further sessions are
/// dropped; a machine with more sessions than this is beyond what a phone can show anyway.
pub const MAX_SESSIONS_PER_MACHINE: usize = muxagent_proto::limits::MAX_CURSORS;

/// Approvals one session's [`History`](crate::history::History) remembers. The daemon keeps at
/// most 64 waiting at once; 1 024 covers a long session's whole record. Past it the
/// lowest-numbered (oldest) approval is forgotten.
pub const MAX_APPROVALS_PER_SESSION: usize = 1024;

/// Plans one session's history remembers (newest kept): a hand-off uses the newest approved one.
pub const MAX_PLANS_PER_SESSION: usize = 64;

/// Requests in flight to machines and the relay at once, across all machines. A person taps far
/// fewer; the cap only stops a runaway caller.
pub const MAX_PENDING_REQUESTS: usize = 256;

/// Whole approval inputs a device fetches at once ([`Controller::fetch_input`]), each at most
/// [`APPROVAL_INPUT_MAX_LEN`] (1 MiB) while it comes: 4 MiB at worst. A person looks at one
/// approval at a time; four covers a few cards open in tabs of one app.
///
/// [`Controller::fetch_input`]: crate::controller::Controller::fetch_input
/// [`APPROVAL_INPUT_MAX_LEN`]: muxagent_proto::limits::APPROVAL_INPUT_MAX_LEN
pub const MAX_INPUT_FETCHES: usize = 4;

/// Whole approval inputs the device's [model](crate::model) holds (fetched or being fetched),
/// each at most 1 MiB: 8 MiB at worst, for pending approvals only. More waiting at once are
/// fetched as earlier ones are decided.
pub const MAX_WHOLE_INPUTS: usize = 8;

/// Requests waiting for one machine's channel to open (asked while it handshakes or resyncs).
pub const MAX_QUEUED_REQUESTS: usize = 32;

/// How long a machine has to answer a request (`ctl`'s exchange timeout too): long enough for a
/// daemon on a Pi over a slow link, short enough that a person learns of a dead machine.
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;

/// How long a pairing may take from the link to the relay's acknowledgement. The machine's side
/// is quick; the time is for a slow relay round trip or two.
pub const PAIR_TIMEOUT_MS: u64 = 30_000;

/// How long opening the transport (DNS, TCP, TLS, WebSocket upgrade) and receiving the relay's
/// hello may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// How long the relay has to accept the login once the hello arrived (the relay itself closes a
/// connection after `LOGIN_DEADLINE_SECS`).
pub const LOGIN_TIMEOUT_MS: u64 = 10_000;

/// How long a machine has to answer a channel handshake before the device tries again.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Consecutive failed connection attempts after which the connection shows as offline rather
/// than reconnecting (it keeps retrying at [`RECONNECT_MAX_MS`](muxagent_proto::limits::RECONNECT_MAX_MS)).
pub const OFFLINE_AFTER_FAILURES: u32 = 5;

/// Events the web app keeps per session (the newest): enough to read back a long turn on a
/// phone without the network; older ones are fetched on demand. Also how far back a device
/// resyncs a session it knows nothing of, or fell this far behind on.
pub const CACHED_EVENTS_PER_SESSION: u64 = 2_000;

/// Events one "load older" asks a machine for.
pub const OLDER_EVENTS_PER_LOAD: u64 = 200;
