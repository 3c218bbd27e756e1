//! The web core's own waits. The protocol's timeouts (connect, login, handshake, a request)
//! are the client crate's ([`muxagent_client::limits`]); these bound only what a notification's
//! action adds on top.

/// After the machine accepted a decision made from a notification, how long the service worker
/// waits to see it applied (the agent has the answer) before it reports "sent" instead. The
/// daemon answers the agent at once, so this is seconds of slack on a slow link; the whole
/// action is bounded by the service worker's own timeout as well.
pub const APPLIED_WAIT_MS: u64 = 5_000;
