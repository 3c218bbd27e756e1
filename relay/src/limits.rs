//! Every capacity, rate, depth and timeout of the relay server, with the reason for its value
//! and the memory arithmetic of a relay at its caps ([`RELAY_WORST_CASE_MEMORY`]).
//!
//! What the relay's clients must agree with it on (frame sizes, the login deadline, the pairing
//! lifetime, the queue depth a machine paces its replays to, the connections a device may hold,
//! account sizes) is in [`muxagent_proto::limits`], re-exported here so that one `use` of this
//! module serves a relay module. Everything defined here is the relay's own choice: an operator
//! may lower many of them ([`Limits`](crate::Limits)), and no client needs to change with them.

pub use muxagent_proto::limits::*;

// ---- Relay ----
//
// The relay (`muxagent-relay`) holds tens of thousands of mostly idle WebSocket connections, so
// what an idle connection costs is the number that matters. Per idle logged-in connection:
//
// | what                                                        | bytes         |
// | ----------------------------------------------------------- | ------------- |
// | WebSocket read buffer ([`RELAY_READ_BUFFER_LEN`]), resident | 4 096         |
// |   (over TLS [`RELAY_TLS_READ_BUFFER_LEN`] instead)          | (512)         |
// | the connection's one task: its future (≤ 1 280, a test      | ~1 200        |
// |   checks) incl. the WebSocket state, two re-armed timers    |               |
// | socket registration in the reactor, timer entries           | ~300          |
// | outbound queue (empty: storage allocated on first use)      | ~100          |
// | router entry (key, queue handle, hostname) and caps entry   | ~250          |
// | TLS (`wss`) only: rustls's read buffer (4 096, kept and      | ~7 500        |
// |   zero-filled while idle, not configurable), its session and |               |
// |   AES-GCM keys (~3 500)                                      |               |
//
// Measured with `relay/bench/idle-rss.sh` (10 000 idle logged-in connections on loopback,
// release build, one thread): **7.0 KiB per connection plain, 14.5 KiB with TLS** (70 MiB and
// 145 MiB in total; 6.8 and 14.3 KiB before the byte meter and queue budgets), in line with
// DERP's 14.5 KB per idle TLS connection. With the smaller read buffer over TLS
// ([`RELAY_TLS_READ_BUFFER_LEN`]) `muxagent-relay-bench storm --wss` measured 11.2 KiB
// (14.7 KiB before, same run conditions; see BENCHMARKS.md). Kernel socket
// buffers come on top and are not in the process's RSS. A connection that has carried a
// full-size frame keeps up to one frame of buffer per direction (≤ 2 × [`MAX_FRAME_LEN`])
// until it closes: tungstenite does not shrink its buffers. A busy connection holds at most
// [`RELAY_QUEUE_DEPTH`] frames and [`RELAY_QUEUE_BYTES_PER_CONNECTION`] (1 MiB) in its queue,
// all queues together at most [`RELAY_QUEUE_BYTES_TOTAL`] plus one frame each
// ([`RELAY_QUEUE_RESERVE_BYTES`]), and a reader that keeps its queue full is cut after
// [`RELAY_SLOW_READER_CUT_MS`]. The worst case at the connection cap is
// [`RELAY_WORST_CASE_MEMORY`].

/// How long a sender's connection holds a routed frame whose receiver's queue is full (at its
/// own bound: [`RELAY_QUEUE_DEPTH`] frames or [`RELAY_QUEUE_BYTES_PER_CONNECTION`]) before it
/// drops it after all (`queue_full`, `Error{Dropped}`). Meanwhile it reads on only while it holds
/// few frames ([`RELAY_HOLD_AHEAD_FRAMES`], [`RELAY_HOLD_AHEAD_BYTES`]), routing frames for other
/// receivers at once and holding those for the full one behind the first; then it reads nothing
/// more from its socket, so TCP pushes back on the sender, and it goes on writing its own queue
/// and answering pings. A receiver that keeps up on average only fills its queue in a stall — a busy
/// executor, a phone's radio waking — of tens of milliseconds (the load bench saw up to ~100
/// ms on a loaded 2-core box): half a second rides those out, while a sender that also talks
/// to other receivers waits at most this long behind a stuck one (whose queue then counts as
/// stalled and refuses at once until it drains; the stuck receiver itself is cut by
/// [`RELAY_WRITE_TIMEOUT_MS`] or [`RELAY_SLOW_READER_CUT_MS`]). Costs the frames held (see
/// [`RELAY_CONNECTION_MAX_BYTES`]).
pub const RELAY_PUSHBACK_MS: u64 = 500;

/// A connection holding frames for full queues reads on while it holds fewer than this many.
/// A machine's one connection carries frames for every device of its account: were it to stop
/// reading for one phone that stopped reading, every other device would wait the whole
/// [`RELAY_PUSHBACK_MS`] too (measured: a healthy device's p99 from 13–46 ms to 505–898 ms,
/// `tests/faults.rs`). 32 frames cover a burst of small ones (a stream's deltas) while the
/// other devices are served. Once it holds this many and also sends to others, it gives up at
/// once on the receivers of its oldest held frame (they lose that frame, and their queues refuse
/// at once until they read again) rather than stop the others: a phone that froze or cannot keep
/// up resyncs instead of stalling its machine's other devices. A sender talking to one receiver
/// only stops reading instead, for up to [`RELAY_PUSHBACK_MS`].
pub const RELAY_HOLD_AHEAD_FRAMES: usize = 32;

/// ... and while the frames it holds take fewer bytes than this: the memory a connection may
/// hold beyond the one frame being read (see [`RELAY_CONNECTION_MAX_BYTES`]).
pub const RELAY_HOLD_AHEAD_BYTES: usize = 16 * 1024;

/// What one held frame costs besides its bytes (its receivers' list, deadline, counters), as an
/// upper bound for [`RELAY_CONNECTION_MAX_BYTES`].
pub const RELAY_HELD_FRAME_OVERHEAD: usize = 256;

/// Bytes the relay gathers into one socket write: frames waiting in a receiver's queue are
/// written together with one flush (one `send` system call) while they fit, instead of one
/// each. 16 KiB holds ~60 frames of a 256-byte packet; being under [`MAX_FRAME_LEN`], the
/// write buffer still never holds more than one frame's worth (a frame larger than this goes
/// alone), so [`RELAY_CONNECTION_MAX_BYTES`] is unchanged.
pub const RELAY_WRITE_BATCH_BYTES: usize = 16 * 1024;

/// Frames a connection's task reads or writes before it yields to the executor. Without it a
/// connection whose socket always has data never returns to the executor (smol does not
/// preempt), and a few busy senders hold every executor thread while other connections wait.
/// 64 frames is a few hundred microseconds of work: the yield costs nothing measurable.
pub const RELAY_FRAMES_PER_TURN: usize = 64;

/// Time one frame may take to be written to a receiver's socket. A receiver that does not read
/// stalls the write once its kernel buffer ([`RELAY_SEND_BUFFER_LEN`]) is full; after this it is
/// disconnected (DERP's 2 s), so its queue is freed and its senders get `PeerOffline` instead of
/// drops.
pub const RELAY_WRITE_TIMEOUT_MS: u64 = 2_000;

/// Kernel send buffer of each relay connection (`SO_SNDBUF`; Linux doubles it for bookkeeping).
/// Without it Linux grows the buffer up to `tcp_wmem`'s maximum (4 MiB by default), which
/// swallows two whole queues for a receiver that has stopped reading: its writes never stall,
/// so the write timeout never starts. 256 KiB still carries 2.5 MiB/s (above
/// [`RELAY_INBOUND_BYTES_PER_SEC`]) at 100 ms round trip.
pub const RELAY_SEND_BUFFER_LEN: usize = 256 * 1024;

/// WebSocket read buffer per connection. tungstenite's default of 128 KiB would cost 1.2 GiB at
/// 10 000 idle connections; 4 KiB is what it advises for many connections, and a 64 KiB frame
/// still arrives in 16 reads.
pub const RELAY_READ_BUFFER_LEN: usize = 4 * 1024;

/// WebSocket read buffer per `wss` connection. Over TLS the WebSocket reads what rustls has
/// already decrypted (a copy, no system call: rustls reads the socket 4 KiB at a time into a
/// buffer of its own, which it keeps), so a small buffer costs only more turns of a loop for
/// a large frame (a 64 KiB frame in 128 copies) and saves 3.5 KiB of every idle `wss`
/// connection (tungstenite zero-fills its whole read buffer, so all of it is resident):
/// 35 MiB at 10 000 connections.
pub const RELAY_TLS_READ_BUFFER_LEN: usize = 512;

/// Bytes a connection may send per second, sustained (a token bucket refilled at this rate). The
/// relay stops reading a connection whose bucket is empty until it refills, so TCP pushes back
/// on the sender (DERP's design) instead of the relay buffering. 2 MiB/s is far above an agent's
/// output and a paged resync, and caps what one key can push through a small VPS.
pub const RELAY_INBOUND_BYTES_PER_SEC: u32 = 2 * 1024 * 1024;

/// Burst size of the inbound token bucket: a resync page train or a screenful of history goes
/// through at full speed. Must be at least [`MAX_FRAME_LEN`].
pub const RELAY_INBOUND_BURST_BYTES: u32 = 8 * 1024 * 1024;

/// Connections the relay holds at most (including ones still logging in). A new one past the
/// cap is closed at accept, before any TLS work. 50 000 × ~20 KiB ≈ 1 GiB of RAM, and needs
/// `ulimit -n` above that.
pub const RELAY_MAX_CONNECTIONS: usize = 50_000;

/// Connections from one source prefix ([`RELAY_IPV4_PREFIX_LEN`], [`RELAY_IPV6_PREFIX_LEN`]) at
/// most. A household or office behind one NAT runs a few phones and daemons; 64 leaves room for
/// them and stops one network from taking the relay's descriptors. (Tests and the load bench
/// raise it for loopback.)
pub const RELAY_MAX_CONNECTIONS_PER_PREFIX: usize = 64;

/// The per-source caps ([`RELAY_MAX_CONNECTIONS_PER_PREFIX`], [`RELAY_PAIRINGS_PER_PREFIX`])
/// count IPv4 addresses by their first 24 bits: a host that can bind many addresses has them
/// in one block, and a /24 is the smallest block routed on the Internet. An IPv4-mapped IPv6
/// address (`::ffff:a.b.c.d`, what a dual-stack socket reports) counts as its IPv4 address.
pub const RELAY_IPV4_PREFIX_LEN: u8 = 24;

/// The per-source caps count IPv6 addresses by their first 64 bits: one /64 is one LAN (or one
/// VPS), and its owner picks any of its 2^64 addresses at will.
pub const RELAY_IPV6_PREFIX_LEN: u8 = 64;

/// Connections that have not logged in yet (TLS, HTTP and the login included), across the
/// relay. A login takes one round trip, so honest clients hold these for milliseconds; a flood of
/// connections that never log in is held to this many, each costing at most its read buffer, a
/// login-sized message ([`RELAY_MAX_LOGIN_MESSAGE_LEN`]) and a TLS handshake (~30 KiB): ~150 MiB
/// at worst, and for at most [`LOGIN_DEADLINE_SECS`] each. Past it a new TCP connection is
/// closed at accept. A relay restart's reconnect wave is smeared over seconds by
/// [`RELAY_RESTART_RECONNECT_IN_MS`] and [`RELAY_RESTART_SPREAD_MS`]; over wss on 2 cores
/// ~20 000 machines returning still meet it (their first tries are closed at accept and retried).
pub const RELAY_MAX_UNAUTHENTICATED_CONNECTIONS: usize = 4_096;

/// Frames one WebSocket message may arrive in. Our clients and browsers send a message as one
/// frame; a proxy may split it. Every frame is charged to the inbound budget with its header, so
/// this only stops a message of endless empty continuations from being work without end.
pub const RELAY_MAX_FRAGMENTS_PER_MESSAGE: usize = 16;

/// Control frames (ping, pong, close) a connection may send in one second; one more closes it.
/// The relay pings every [`RELAY_PING_INTERVAL_SECS`] and a client may ping as often as it
/// likes to keep a NAT open, but never this often; a flood of them is work (and pongs back)
/// for nothing.
pub const RELAY_MAX_CONTROL_FRAMES_PER_SEC: u32 = 16;

/// What one Ed25519 signature verification costs a connection's inbound budget, in bytes: a
/// verification takes ~50 µs of a core, about what the relay spends routing 64 KiB. So a key
/// verifies at most [`RELAY_INBOUND_BYTES_PER_SEC`] / 64 KiB = 32 signatures a second once its
/// burst is spent (a registry request costs one or two).
pub const RELAY_SIGNATURE_COST_BYTES: u32 = 64 * 1024;

/// Registry requests (register, revoke, unpair, grant owner) one connection may make per
/// minute; past it they are refused with `RateLimited` before any signature is checked. People
/// pair and revoke a few machines and devices a day.
pub const RELAY_REGISTRY_REQUESTS_PER_MIN: usize = 20;

/// Registry requests all connections of one source prefix (see [`RELAY_IPV4_PREFIX_LEN`]) may
/// make per minute, counted whether their connections stay or go: without it a client would
/// reconnect after every [`RELAY_REGISTRY_REQUESTS_PER_MIN`] requests (with a fresh key and so
/// a fresh inbound budget) and have its signatures verified without end. A household or
/// office pairs a few machines at a time; past it requests are refused with `RateLimited`
/// before any signature is checked. So one prefix costs at most 2 verifications a second.
pub const RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN: usize = 60;

/// Source prefixes whose registry requests are counted at once
/// ([`RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN`]), each ~64 bytes: 65 536 is 4 MiB. Past it,
/// prefixes whose minute has passed are forgotten, and the rest of the new ones share one
/// count (so 65 536 prefixes busy pairing at once slow pairing down for others, no more).
pub const RELAY_REGISTRY_RATE_PREFIXES: usize = 65_536;

/// Bytes queued for one receiver at most (besides [`RELAY_QUEUE_DEPTH`] frames): 16 full-size
/// frames, 0.5 s at the inbound rate. Past it the sender holds the frame
/// ([`RELAY_PUSHBACK_MS`]), then the newest frame is dropped (`queue_full`).
pub const RELAY_QUEUE_BYTES_PER_CONNECTION: usize = 1024 * 1024;

/// Bytes queued for all the connections of one account at most (its devices' and machines'
/// queues together), so one account cannot take the relay-wide pool. Frames a machine sends to
/// several connections of a device share their bytes but are counted in each queue.
pub const RELAY_QUEUE_BYTES_PER_ACCOUNT: usize = 16 * 1024 * 1024;

/// Bytes queued for all receivers of the relay at most: what slow readers can make the relay
/// hold, whatever their number. Past it frames are dropped (`total_queue_full`), except those
/// a nearly empty queue takes ([`RELAY_QUEUE_RESERVE_BYTES`]).
pub const RELAY_QUEUE_BYTES_TOTAL: usize = 256 * 1024 * 1024;

/// Bytes every queue may hold whatever its account's and the relay's pools hold: a frame that
/// leaves its queue within this is queued even when a pool is spent (and counted in it). A
/// shared pool alone would let slow readers that stay just under their own cut (656 queues of
/// 400 KiB, from 11 source prefixes) take it all for as long as they like, and then every
/// frame to every receiver would be dropped; with this a receiver that keeps up, and so has
/// an empty queue, still gets its frames. One full-size frame: the pools can be exceeded by at
/// most this much per connection (50 000 × 65 KiB = 3.1 GiB at the connection cap).
pub const RELAY_QUEUE_RESERVE_BYTES: usize = MAX_FRAME_LEN;

/// A receiver whose queue stays full this long is cut (`slow_reader`): "full" from a frame it
/// could not take (its queue at its depth or over half of its bytes) until the queue is back
/// under a quarter of its bytes. A reader that takes each frame within the write timeout but
/// drains slower than it is sent to would otherwise keep its queue resident for ever. A
/// receiver that keeps up with 64 KiB/s never stays full this long.
pub const RELAY_SLOW_READER_CUT_MS: u64 = 4_000;

/// What one connection can make the relay hold at most, its outbound queue aside: its idle cost
/// (14.5 KiB with TLS, measured), and three buffers of one frame each that tungstenite fills on
/// a client's say-so and does not shrink — the read buffer reserved for a frame whose header
/// has arrived, a message arriving in fragments (or, once it has arrived, the frame routed from
/// it that the connection holds for a full receiver queue, [`RELAY_PUSHBACK_MS`]), and the write
/// buffer holding a frame the client is slow to take (or a batch of smaller ones,
/// [`RELAY_WRITE_BATCH_BYTES`]) — and the frames it held before reading that one: under
/// [`RELAY_HOLD_AHEAD_BYTES`], at most [`RELAY_HOLD_AHEAD_FRAMES`] of them.
pub const RELAY_CONNECTION_MAX_BYTES: usize = 15 * 1024
    + 3 * (MAX_FRAME_LEN + 16)
    + RELAY_HOLD_AHEAD_BYTES
    + RELAY_HOLD_AHEAD_FRAMES * RELAY_HELD_FRAME_OVERHEAD;

/// The most memory `connections` connections can make the relay hold: each its
/// [`RELAY_CONNECTION_MAX_BYTES`], and their queues together their per-connection bytes or the
/// relay-wide pool plus each queue's reserve ([`RELAY_QUEUE_RESERVE_BYTES`]), whichever is
/// less. `relay/tests/budgets.rs` drives slow readers to their worst and checks the relay stays
/// within this for its connection cap.
///
/// In `u64`: the figures pass 4 GiB, and this crate also builds for 32-bit targets (the wasm
/// core, armv7 boards).
pub const fn relay_memory_bound(connections: usize) -> u64 {
    let connections = connections as u64;
    let own = connections.saturating_mul(RELAY_QUEUE_BYTES_PER_CONNECTION as u64);
    let pooled = connections
        .saturating_mul(RELAY_QUEUE_RESERVE_BYTES as u64)
        .saturating_add(RELAY_QUEUE_BYTES_TOTAL as u64);
    let queues = if own < pooled { own } else { pooled };
    connections
        .saturating_mul(RELAY_CONNECTION_MAX_BYTES as u64)
        .saturating_add(queues)
}

/// The worst-case memory of a relay at its connection cap with default limits:
/// [`relay_memory_bound`]`(`[`RELAY_MAX_CONNECTIONS`]`)` = 50 000 × 234 KiB + (256 MiB +
/// 50 000 × 65 KiB) ≈ 11.2 GiB + 3.35 GiB = 14.5 GiB, plus the registry at its cap (~200 MB,
/// [`RELAY_MAX_REGISTRY_KEYS`]; ~64 MB of pairs, [`RELAY_MAX_REGISTRY_PAIRS`]), the pairing
/// table (~2 MB, [`RELAY_MAX_PAIRINGS`]), Web Push (127 MiB:
/// [`RELAY_MAX_PUSH_SUBSCRIPTIONS`] and [`RELAY_PUSH_QUEUE_LEN`]) and the registry's admission
/// and account counts (5 MiB, [`RELAY_ADMISSION_PREFIXES`], [`RELAY_REGISTRY_RATE_ACCOUNTS`]):
/// about 14.8 GiB. A compaction of a full registry holds a copy of its accounts for the rewrite
/// (~100 MB at 1 000 000 keys) for the second or so it takes. Idle, the
/// same connections take ~0.7 GiB; the rest is what 50 000 hostile clients
/// (from at least 782 source prefixes) can push it to. Size `--max-connections` to the
/// machine: ~300 KiB per connection plus 256 MiB.
pub const RELAY_WORST_CASE_MEMORY: u64 = relay_memory_bound(RELAY_MAX_CONNECTIONS)
    + RELAY_MAX_REGISTRY_KEYS as u64 * 200
    + RELAY_MAX_REGISTRY_PAIRS as u64 * 64
    + RELAY_MAX_PAIRINGS as u64 * 200
    + RELAY_MAX_PUSH_SUBSCRIPTIONS as u64 * RELAY_PUSH_SUBSCRIPTION_MAX_BYTES as u64
    + RELAY_PUSH_QUEUE_LEN as u64 * RELAY_PUSH_JOB_MAX_BYTES as u64
    + (RELAY_ADMISSION_PREFIXES + RELAY_REGISTRY_RATE_ACCOUNTS) as u64 * 64;

// The figures above, kept true (in MiB): 14.5 GiB for the connections, 14.8 GiB in all.
const _: () = {
    let connections = relay_memory_bound(RELAY_MAX_CONNECTIONS) >> 20;
    let all = RELAY_WORST_CASE_MEMORY >> 20;
    assert!(connections >= 14_840 && connections < 14_900);
    assert!(all >= 15_149 && all < 15_252);
};

/// The relay pings each logged-in connection this often (plus jitter up to
/// [`RELAY_PING_JITTER_SECS`] so pings of connections made together spread out). 15 s as
/// iroh; also keeps NAT and proxy mappings warm.
pub const RELAY_PING_INTERVAL_SECS: u64 = 15;

/// Upper bound of the random delay added to each ping interval.
pub const RELAY_PING_JITTER_SECS: u64 = 5;

/// A connection that sends nothing (not even a pong) for this long after a ping is closed.
/// 10 s tolerates a phone's radio waking up; a dead peer is noticed within ~30 s.
pub const RELAY_PONG_TIMEOUT_SECS: u64 = 10;

/// Largest HTTP request head (request line + headers) the relay reads before answering or
/// upgrading. Browsers send ~1 KiB; anything over is refused with 431.
pub const RELAY_HTTP_HEAD_MAX_LEN: usize = 8 * 1024;

/// Headers one HTTP request may have, within [`RELAY_HTTP_HEAD_MAX_LEN`]: browsers send about
/// a dozen on a WebSocket upgrade, proxies add a few. The parser keeps them in a fixed array of
/// this many (32 × 32 bytes on the stack); a request with more is refused with 431.
pub const RELAY_HTTP_MAX_HEADERS: usize = 32;

/// Pause after `accept` fails (out of file descriptors, usually) before the relay accepts
/// again, on the clients' listener and the `/metrics` one. Without it the accept loop spins a
/// core while the condition lasts; 100 ms lets connections closing give descriptors back, and
/// delays a new connection by at most that.
pub const RELAY_ACCEPT_BACKOFF_MS: u64 = 100;

/// Pairing ids one connection may have open at once (a daemon shows one QR code at a time;
/// a few allow a retry while an old one is still live).
pub const RELAY_PAIRINGS_PER_CONNECTION: usize = 4;

/// Pairing ids open at once from one source prefix (see [`RELAY_IPV4_PREFIX_LEN`]): a few
/// daemons of one network pairing at the same time. Without it 40 addresses of one host filled
/// the relay-wide table ([`RELAY_MAX_PAIRINGS`]) in seconds; now that takes 625 prefixes.
pub const RELAY_PAIRINGS_PER_PREFIX: usize = 16;

/// Pairing ids open on the relay at once, across all connections (each ~200 bytes; 10 000
/// ids is 2 MiB). Past it `OpenPairing` is refused with `RateLimited`.
pub const RELAY_MAX_PAIRINGS: usize = 10_000;

/// Which machines each device paired with (one pair per `RegisterMachine`), relay-wide: each is
/// a machine's fingerprint in its device's record, ≤ 64 bytes with the vector's slack, so
/// 1 000 000 pairs ≈ 64 MB. One account holds at most its devices × its machines (8 192 at
/// the defaults); past the relay-wide cap registrations that add a pair are refused, as past
/// [`RELAY_MAX_REGISTRY_KEYS`]. Owners reach every machine without pairs.
pub const RELAY_MAX_REGISTRY_PAIRS: usize = 1_000_000;

/// Keys the registry knows at most (machines + devices with an account + revoked keys), so
/// its in-memory fold stays bounded: ~200 bytes each, 1 000 000 keys ≈ 200 MiB. Past it
/// registrations are refused (`EntryRefused`, "the relay's registry is full") until an
/// operator moves accounts elsewhere (see the scale-out plan).
pub const RELAY_MAX_REGISTRY_KEYS: usize = 1_000_000;

// ---- Registry admission and compaction ----
//
// Keys are cheap to make, so what bounds the registry is how fast it lets keys in. Revoked
// keys count against the account that revoked them ([`RELAY_MAX_REVOKED_PER_ACCOUNT`]) and are
// forgotten with it, so revoking never grows the relay beyond its accounts; an account holds at
// most 256 + 32 live keys and 288 + 288 revoked ones (a revocation is never refused: it only
// turns a live key into a revoked one). New accounts, and keys joining old ones, come through
// one relay-wide bucket of new keys ([`RELAY_NEW_KEYS_PER_HOUR`]) of which one source network
// takes a share ([`RELAY_NEW_KEY_REGISTRATIONS_PER_PREFIX_PER_HOUR`]). At the attacker's best
// rate — every token of the bucket, from as many networks as it takes — filling
// [`RELAY_MAX_REGISTRY_KEYS`] takes (1 000 000 − 600) / 600 per hour ≈ 1 666 hours ≈ 69 days,
// long enough for an operator to see `registry_keys` climb in `/metrics` and act. Meanwhile
// honest newcomers are slowed, not shut out for good: existing accounts are untouched, and
// keys given back (an unpair, an account removed) return to the bucket.

/// Keys an account may keep barred (its revoked machines and devices), as many as it may hold
/// live (256 machines + 32 devices). At it the account adds no key until it is removed; a
/// person replacing a laptop a month takes 24 years to get there. 288 × 32 bytes = 9 KiB in its
/// log record.
pub const RELAY_MAX_REVOKED_PER_ACCOUNT: usize =
    RELAY_MAX_MACHINES_PER_ACCOUNT + RELAY_MAX_DEVICES_PER_ACCOUNT;

/// Keys the whole relay adds per hour at most, net: a registration takes one per key it adds
/// (a new account: a device and a machine, two), and keys leaving (an unpaired machine, a
/// removed account) give theirs back, up to the burst. 600 an hour is 300 new people an hour,
/// 7 200 a day; the cap fills in no less than ~69 days (see above). Past it registrations that
/// add keys are refused with `RateLimited` ("the relay is taking new devices and machines
/// slowly right now …"); nothing else is.
pub const RELAY_NEW_KEYS_PER_HOUR: u32 = 600;

/// The bucket of [`RELAY_NEW_KEYS_PER_HOUR`] holds at most this many keys: one hour's worth.
pub const RELAY_NEW_KEYS_BURST: u32 = 600;

/// Registrations that add keys (≤ 2 keys each) per source network per hour. A network is an
/// IPv4 /24 ([`RELAY_IPV4_PREFIX_LEN`]) or an IPv6 /48 ([`RELAY_ADMISSION_IPV6_PREFIX_LEN`]), so
/// one network takes at most 40 of the 600 keys an hour: it takes 15 networks, not one, to
/// hold back newcomers elsewhere. A household pairs a few machines; a team onboarding 20
/// machines from one office finishes in the next hour.
pub const RELAY_NEW_KEY_REGISTRATIONS_PER_PREFIX_PER_HOUR: usize = 20;

/// IPv6 addresses share one admission count per /48, not per /64
/// ([`RELAY_IPV6_PREFIX_LEN`]): a /64 is what any VPS or phone gets, and a single customer
/// often holds a /56 or /48 (65 536 or 256 /64s), so counting /64s would hand one attacker
/// thousands of shares.
pub const RELAY_ADMISSION_IPV6_PREFIX_LEN: u8 = 48;

/// Networks whose new-key registrations are counted at once, ~64 bytes each: 16 384 is 1 MiB.
/// Past it networks whose hour has passed are forgotten and the rest share one count.
pub const RELAY_ADMISSION_PREFIXES: usize = 16_384;

/// Registry requests one account's keys may make per hour together (on top of each
/// connection's [`RELAY_REGISTRY_REQUESTS_PER_MIN`] and each network's
/// [`RELAY_REGISTRY_REQUESTS_PER_PREFIX_PER_MIN`]), counted once the rules accept them (so a
/// member cannot spend its account's hour on refused entries) and never for revocations (each
/// follows a counted registration, and nothing may keep an owner from revoking). A key in no
/// account counts as its own account, so this is the per-key limit too. A register → unpair loop of one account
/// appends at most 120 entries (~40 KiB) an hour, however many networks it comes from: before
/// compaction, 2 × 20 a minute from two keys wrote ~5 GB of log a day. People pair and revoke
/// a handful a day.
pub const RELAY_REGISTRY_REQUESTS_PER_ACCOUNT_PER_HOUR: usize = 120;

/// Accounts whose registry requests are counted at once, ~64 bytes each: 65 536 is 4 MiB.
pub const RELAY_REGISTRY_RATE_ACCOUNTS: usize = 65_536;

/// Entries appended to the registry log since its last compaction before it is compacted again,
/// at the least (a few hundred KiB: not worth a rewrite below it).
pub const RELAY_REGISTRY_COMPACT_FLOOR: usize = 2_048;

/// The log is compacted (rewritten as one record per account, `Log::rewrite`) once the entries
/// appended since the last compaction exceed [`RELAY_REGISTRY_COMPACT_FLOOR`] and 1 / this of
/// the keys the registry holds (and at a clean shutdown once they exceed the floor). Measured,
/// the compacted form takes 48 bytes a key (48 MB for 1 000 000 keys) and folds in 0.8 s;
/// re-verifying an entry takes ~90 µs a signature. So at 1 000 000 keys the log holds at most
/// 48 MB + 62 500 entries × ~330 bytes = 69 MB, a start-up after a crash re-verifies at most
/// those 62 500 entries (~11 s), and a compaction (48 bytes × keys) comes once per keys / 16
/// appends: ~770 bytes written per appended entry, amortized.
pub const RELAY_REGISTRY_COMPACT_RATIO: usize = 16;

/// On shutdown, clients are told to reconnect after about this long (they add their own
/// jitter and a share of [`RELAY_RESTART_SPREAD_MS`]), so a restart does not meet all of them in
/// the same millisecond. One second covers a relay restarted in place; one that takes longer
/// refuses the first attempts and the clients back off from [`RECONNECT_MIN_MS`]. Measured
/// (BENCHMARKS.md, 10 000 machines over ws): all back 5.6 s after a graceful restart with 2 s
/// here, within 1–4 s of the relay being up now.
pub const RELAY_RESTART_RECONNECT_IN_MS: u32 = 1_000;

/// Each connection's `Restarting` hint adds its own share of this (uniform), so the wave of
/// logins after a restart is spread over seconds by the relay itself, whatever the clients'
/// jitter. Measured (BENCHMARKS.md, 2 cores, wss, each beside a control run): with the daemon's
/// ±125 ms alone, 10 000 machines arrived within 250 ms and their TLS handshakes overran
/// [`RELAY_MAX_UNAUTHENTICATED_CONNECTIONS`] (221 closed at accept; 15 241 at 19 000); spread
/// over 3 s more, 0 and 5 877, for +0.1–0.5 s until all were back.
pub const RELAY_RESTART_SPREAD_MS: u32 = 3_000;

/// On shutdown, clients are told to keep trying for at least this long before treating the
/// relay as gone.
pub const RELAY_RESTART_TRY_FOR_MS: u32 = 60_000;

/// How long a shutting-down relay waits for its connections to take the `Restarting` frame and
/// close before it drops the rest.
pub const RELAY_SHUTDOWN_GRACE_MS: u64 = 3_000;

// ---- Relay: Web Push ----
//
// The relay keeps one Web Push subscription endpoint per device and POSTs what a machine
// encrypted for it (RFC 8030, with its VAPID authorization, RFC 8292). What push costs it:
//
// | what                                                         | bytes                     |
// | ------------------------------------------------------------ | ------------------------- |
// | a subscription: table entry (key 32, endpoint pointer 16,    | ~100 + the endpoint       |
// |   rate state 24, hash table slack) and the endpoint itself   |   (~300 for FCM's)        |
// | all subscriptions ([`RELAY_MAX_PUSH_SUBSCRIPTIONS`] at most) | ≤ 100 000 × 1 280 = 122 MiB |
// | queued pushes ([`RELAY_PUSH_QUEUE_LEN`] at most, each a body, | ≤ 1 024 × 5 376 = 5.3 MiB |
// |   an endpoint and ~250 bytes of job)                         |                           |
// | pushes in flight ([`RELAY_PUSH_WORKERS`]: a TLS client       | ≤ 8 × ~50 KiB = 0.4 MiB   |
// |   session and its record buffers each)                       |                           |
//
// On disk the subscriptions are a `muxagent-store` log of (device, endpoint) records (~50
// bytes + the endpoint each), compacted when it holds more than twice the live table.

/// Subscriptions the relay holds at most (one per device key; only a device with an account,
/// so the registry bounds them too). Each costs at most [`RELAY_PUSH_SUBSCRIPTION_MAX_BYTES`]:
/// 122 MiB at the cap; measured, one with FCM's 190-byte endpoint takes 305–315 bytes, so
/// 100 000 typical ones take ~30 MiB (`memory_per_subscription` in the relay's `push::store`). Past it a new subscription is refused
/// (`NotAllowed`, "the relay holds its maximum of push subscriptions"); replacing one is not.
pub const RELAY_MAX_PUSH_SUBSCRIPTIONS: usize = 100_000;

/// What one subscription costs the relay's memory at most: its endpoint
/// ([`MAX_PUSH_ENDPOINT_LEN`] and the allocator's 16), the table entry (72 bytes: key, endpoint
/// pointer, rate state) twice over for the hash table's slack while it grows, and the control
/// bytes.
pub const RELAY_PUSH_SUBSCRIPTION_MAX_BYTES: usize = MAX_PUSH_ENDPOINT_LEN + 16 + 2 * 72 + 96;

/// Pushes the relay holds at once: queued, being sent, or waiting to be retried. Routing a
/// `Push` only enqueues (it never waits on a push service); past this the push is dropped,
/// counted (`queue_full`) and the machine told `Dropped`. 1 024 is minutes of a busy relay's
/// notifications at the pace push services take them, and at most 5.3 MiB
/// ([`RELAY_PUSH_JOB_MAX_BYTES`] each).
pub const RELAY_PUSH_QUEUE_LEN: usize = 1024;

/// What one queued push holds at most: its body, its endpoint, and the job around them.
pub const RELAY_PUSH_JOB_MAX_BYTES: usize = MAX_PUSH_BODY_LEN + MAX_PUSH_ENDPOINT_LEN + 256;

/// Pushes being sent at once (each one TCP connection and, for `https`, one TLS session). A
/// push service answers in ~100 ms, so 8 carry ~80 pushes a second; a service that hangs ties
/// each up for [`RELAY_PUSH_REQUEST_TIMEOUT_MS`] at most, and routing never waits on them.
pub const RELAY_PUSH_WORKERS: usize = 8;

/// Time to open the TCP connection to a push service.
pub const RELAY_PUSH_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Time one push may take in all: resolving, connecting, TLS, the request and the response's
/// head. Past it the push is counted as `timeout` and not retried (the service may have taken
/// it; RFC 8030 has no way to ask).
pub const RELAY_PUSH_REQUEST_TIMEOUT_MS: u64 = 15_000;

/// Times a push is tried at most: the first and three retries, after a `429`, a `5xx` or a
/// connection that failed.
pub const RELAY_PUSH_ATTEMPTS: u32 = 4;

/// The first retry waits this long, each later one twice as long as the one before (1, 2,
/// 4 s), or what the service's `Retry-After` asks when that is longer.
pub const RELAY_PUSH_RETRY_BASE_MS: u64 = 1_000;

/// The longest `Retry-After` the relay honours. A service asking for more gets the push
/// dropped (`failed`): it holds a queue slot meanwhile, and a notification that late has
/// lost its point.
pub const RELAY_PUSH_RETRY_AFTER_MAX_SECS: u64 = 60;

/// Pushes to one device in a burst. The machine limits what it sends; this is the relay's own
/// defence (an account's machines share it). Past it a push is refused with `RateLimited`
/// and counted (`rate_limited`).
pub const RELAY_PUSH_PER_DEVICE_BURST: u32 = 20;

/// Pushes to one device per minute, sustained (one every 2 s): a person reads a few a minute.
pub const RELAY_PUSH_PER_DEVICE_PER_MIN: u32 = 30;

/// What a `Push` costs the machine's inbound budget on top of its bytes, in bytes: the relay
/// signs a JWT (~40 µs of a core) and opens a TLS session (an ECDHE exchange and a certificate
/// chain checked, ~0.5 ms), about what routing 256 KiB costs. So a machine makes at most
/// [`RELAY_INBOUND_BYTES_PER_SEC`] / 256 KiB = 8 pushes a second once its burst is spent.
pub const RELAY_PUSH_COST_BYTES: u32 = 256 * 1024;

/// Largest response head from a push service the relay reads (status line and headers; the
/// body is not read).
pub const RELAY_PUSH_RESPONSE_HEAD_MAX_LEN: usize = 8 * 1024;

/// Lifetime of the VAPID JWT the relay signs for a push (`exp`). RFC 8292 §2 allows at most
/// 24 hours; 12 leaves room for a push service whose clock is hours ahead.
pub const RELAY_PUSH_JWT_LIFETIME_SECS: u64 = 12 * 60 * 60;

/// Warning lines about pushes the relay writes per minute at most: a failing push service
/// would otherwise cost a line per push. 10 lines of ~200 bytes a minute is ~3 MiB a day.
pub const RELAY_PUSH_WARNINGS_PER_MIN: u32 = 10;

/// Records in the subscriptions log below which it is never compacted (~50 bytes + an endpoint
/// each, so a few hundred KiB at most: not worth a rewrite). Above it the log is compacted
/// once it holds more than twice the live table.
pub const RELAY_PUSH_COMPACT_FLOOR: usize = 1024;
