//! The web core's own waits. The protocol's timeouts (connect, login, handshake, a request)
//! are the client crate's ([`muxagent_client::limits`]); these bound what a notification's
//! action adds on top, and how long store writes wait to be written together.

/// After the machine accepted a decision made from a notification, how long the service worker
/// waits to see it applied (the agent has the answer) before it reports "sent" instead. The
/// daemon answers the agent at once, so this is seconds of slack on a slow link; the whole
/// action is bounded by the service worker's own timeout as well.
pub const APPLIED_WAIT_MS: u64 = 5_000;

/// How long the page's store writes wait to be written together: the changes of this long go
/// to IndexedDB in one transaction. A transaction costs the main thread about the same whatever
/// it holds (opening it, its events, the commit), and a streaming session changes the store with
/// every event (tens to hundreds a second), so one per event took a third of the main thread
/// while streaming; one per 50 ms is at most 20 a second. 50 ms is below what a person notices
/// and what a reload takes, and nothing is lost to it: a change of the paired machines is
/// written at once, and the page writes what waits when it is hidden or goes away (`flush`).
/// What the queue holds meanwhile is 50 ms of events (a few hundred at most, ~200 bytes each).
pub const STORE_FLUSH_MS: i32 = 50;
