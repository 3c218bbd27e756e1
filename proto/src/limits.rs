//! Every size, depth and timeout that both ends of the wire must agree on, with the reason for
//! its value: frame and message sizes both sides check, the pairing and login deadlines, the
//! push fields, and the relay bounds its clients pace themselves to.
//!
//! A value only one program chooses lives in that program's crate: the relay's in
//! `muxagent_relay::limits`, the daemon's and the command line's in the `muxagent` crate's
//! `limits`, a relay client's in `muxagent_relay_client::limits`, a device's in
//! `muxagent_client::limits`, the append-only log's in `muxagent_store::limits`. Nothing in muxagent grows without a bound from one of them. When a
//! bound is hit the behaviour is defined where the bound is used: a decode error, a drop with a
//! counter, backpressure, or a disconnect — never an allocation that follows a number an
//! attacker chose.
//!
//! # Memory arithmetic
//!
//! A relay frame is at most [`MAX_FRAME_LEN`] (64 KiB + 1 KiB of header room). A decoder never
//! allocates more than the frame it was handed: postcard reads lengths from the input and serde
//! caps pre-allocation, and every length is checked against the bytes actually present. Nested
//! types are not recursive, so decoding depth is fixed by the type definitions (at most
//! [`MAX_NESTING_DEPTH`]) and cannot be driven by input.

/// Protocol version spoken by this build, negotiated in the relay hello. Bumped on any change to a
/// frame or message body that an older peer would misread.
pub const PROTOCOL_VERSION: u16 = 1;

/// Oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// Largest Noise message (the Noise specification's limit): 65 535 bytes including the 16-byte
/// Poly1305 tag.
pub const MAX_NOISE_MESSAGE_LEN: usize = 65_535;

/// Bytes the E2E channel adds before each Noise transport message: an explicit 8-byte counter.
pub const CHANNEL_COUNTER_LEN: usize = 8;

/// Authentication tag added by ChaCha20-Poly1305.
pub const AEAD_TAG_LEN: usize = 16;

/// Largest ciphertext on the E2E channel: counter + Noise message.
pub const MAX_CHANNEL_CIPHERTEXT_LEN: usize = CHANNEL_COUNTER_LEN + MAX_NOISE_MESSAGE_LEN;

/// Largest plaintext app message: what one Noise transport message can carry. Larger agent output
/// is split into several events by the daemon.
pub const MAX_APP_MESSAGE_LEN: usize = MAX_NOISE_MESSAGE_LEN - AEAD_TAG_LEN;

/// Largest opaque payload a relay frame carries (`send`/`recv`/pairing rendezvous): one E2E
/// packet ([`MAX_PACKET_LEN`]), so a maximum-size app message crosses the relay whole.
pub const MAX_PAYLOAD_LEN: usize = MAX_PACKET_LEN;

/// Largest relay frame: a payload plus room for the kind byte, addresses and length prefixes.
/// Tailscale DERP and iroh-relay both settle on 64 KiB packets; one channel message fits whole.
pub const MAX_FRAME_LEN: usize = MAX_PAYLOAD_LEN + 1024;

/// Longest hostname a machine announces (DNS allows 253; people name boxes much shorter, and
/// this fits a phone screen).
pub const MAX_HOSTNAME_LEN: usize = 64;

/// Longest relay URL in a pairing ticket. Keeps the QR code scannable (version ≤ 15 or so).
pub const MAX_RELAY_URL_LEN: usize = 200;

/// Longest encoded registry entry (two identities, a hostname, ids and a consent signature take
/// about 300 bytes).
pub const MAX_REGISTRY_ENTRY_LEN: usize = 512;

/// Longest runtime name (`command`, `claude`, `codex`, `acp`, `gemini` …).
pub const MAX_RUNTIME_NAME_LEN: usize = 32;

/// Longest permission mode name (`default`, `plan`, `acceptEdits`, `bypassPermissions` …).
pub const MAX_MODE_LEN: usize = 32;

/// Most resync cursors in one hello: one per session a device follows on a machine. At 24 bytes
/// each, 2 048 cursors fill 48 KiB, within one channel message.
pub const MAX_CURSORS: usize = 2048;

/// Channels a machine keeps per device: one per live relay connection of the device
/// ([`RELAY_MAX_CONNECTIONS_PER_DEVICE`]: tabs of the web app, `ctl watch` beside `ctl approve`)
/// and one more for a handshake that has not carried a message yet, so a new connection (or a
/// replayed handshake) never has to push out a working channel while the device is within its
/// cap. Past it the oldest channel that never carried a message goes first, then the one the
/// device spoke on least recently. A channel is ~300 bytes: 5 per device, 32 devices, 48 KiB.
pub const MAX_CHANNELS_PER_DEVICE: usize = RELAY_MAX_CONNECTIONS_PER_DEVICE + 1;

/// Longest human-readable reason in an error frame or message.
pub const MAX_REASON_LEN: usize = 200;

/// Longest pairing ticket in its base64url text form. A ticket is ~230 bytes with a 200-byte URL;
/// anything longer is rejected before decoding.
pub const MAX_TICKET_TEXT_LEN: usize = 512;

/// How long a pairing ticket (and its pairing id on the relay) stays valid.
pub const PAIRING_TTL_SECS: u64 = 5 * 60;

/// Time a client has after connecting to log in before the relay closes the connection (DERP's
/// figure).
pub const LOGIN_DEADLINE_SECS: u64 = 10;

/// Deepest nesting of any wire type (a message inside an enum inside a struct …). Types are not
/// recursive, so this is a property of the definitions, checked by review, not a runtime count.
pub const MAX_NESTING_DEPTH: usize = 4;

// ---- E2E channel ----
//
// Appended by the Noise channel (`noise`); see `noise::packet` for the byte layout these bound.

/// Bytes of the connection id the device picks for each handshake. It is a routing label, not a
/// secret: it lets a receiver tell a late packet from an earlier connection (ignored) from a
/// packet of the current one (checked, and fatal when wrong). 64 random bits make a collision
/// between the few connections a pair ever has negligible.
pub const CONNECTION_ID_LEN: usize = 8;

/// Bytes in front of every E2E packet: one kind byte and the connection id.
pub const PACKET_HEADER_LEN: usize = 1 + CONNECTION_ID_LEN;

/// Largest Noise handshake message accepted, and largest pairing confirmation. The biggest one
/// muxagent sends is the pairing response (32-byte ephemeral + 96-byte proof + 16-byte tag =
/// 144 bytes); 1 KiB leaves room for a later version's payload while keeping every
/// unauthenticated message a peer can make us process small.
pub const MAX_HANDSHAKE_MESSAGE_LEN: usize = 1024;

/// Largest E2E packet: header + [`MAX_CHANNEL_CIPHERTEXT_LEN`] (65 552 bytes), carried whole in
/// one relay `send`/`recv` payload ([`MAX_PAYLOAD_LEN`] is this).
pub const MAX_PACKET_LEN: usize = PACKET_HEADER_LEN + MAX_CHANNEL_CIPHERTEXT_LEN;

// ---- Relay: what its clients rely on ----
//
// The relay's own capacities, rates and timeouts are in `muxagent-relay`'s `limits` module,
// with the memory arithmetic of a relay at its caps. Here are only those a client or the wire
// format depends on: the push fields a machine fills in, the WebSocket path, the largest
// login, the queue depth a machine paces its replays to, the connections a device may hold
// (and so the channels a machine keeps for it), and the account sizes that bound a device
// list.

/// Longest Web Push endpoint URL accepted. Endpoints of the push services browsers use today
/// are under 300 bytes (FCM ~190, Mozilla ~230, Apple ~200); 1 KiB leaves room without letting a
/// device park much in the relay's table.
pub const MAX_PUSH_ENDPOINT_LEN: usize = 1024;

/// Longest push body (RFC 8291 `aes128gcm` record with its 86-byte header): RFC 8030 §7.2 has
/// push services accept at least 4096 bytes of payload, and some refuse more.
pub const MAX_PUSH_BODY_LEN: usize = 4096;

/// Length of an RFC 8030 `Topic` as the machine sends it; base64url of 16 bytes is 22
/// characters, under the 32 the RFC allows.
pub const PUSH_TOPIC_LEN: usize = 16;

/// An uncompressed P-256 point (`0x04 ‖ x ‖ y`): the relay's VAPID key and a subscription's
/// `p256dh` key.
pub const PUSH_VAPID_KEY_LEN: usize = 65;

/// A subscription's `auth` secret (RFC 8291 §3.2).
pub const PUSH_AUTH_LEN: usize = 16;

/// URL path of the relay's WebSocket endpoint. A pairing ticket holds only the relay's base URL;
/// clients append this.
pub const RELAY_WS_PATH: &str = "/relay";

/// Largest WebSocket message the relay reads before a connection has logged in, so every
/// client's `Login` must fit it: protocol, role, two public keys, a hostname of up to
/// [`MAX_HOSTNAME_LEN`] bytes and a signature take at most 210 bytes encoded. It must come as
/// one frame; anything else before the login (another kind, a control frame, a longer or
/// fragmented message) closes the connection.
pub const RELAY_MAX_LOGIN_MESSAGE_LEN: usize = 512;

/// Frames waiting for one receiver. When full, the sender's connection holds the frame and
/// stops reading until there is room (`RELAY_PUSHBACK_MS`), so a burst larger than the queue
/// slows its sender down instead of losing frames. Only past that does the relay drop the
/// **newest** frame (the one being routed), count it under `queue_full` and tell the sender
/// `Error{Dropped}`: the sender learns at once that its E2E channel has a gap (Noise counters
/// make any gap fatal to the channel anyway, so keeping older frames rather than newer ones buys
/// nothing, and dropping the newest never touches what a writer is already sending). DERP keeps
/// 32; iroh 512 for bursty QUIC. With push-back the depth is a buffer between two sockets, not a
/// burst allowance: 32 frames keep a receiver's writes batched while its senders wait;
/// `RELAY_QUEUE_BYTES_PER_CONNECTION` bounds their bytes.
pub const RELAY_QUEUE_DEPTH: usize = 32;

/// Live connections one device key may hold at once (the phone's web app open in several
/// tabs, `muxagent ctl watch` beside `ctl approve`). A login past it displaces the oldest of them
/// (`Error{Displaced}`); machines and pending machines keep one connection, newest wins.
///
/// What one device key can cost, at most: 4 connections × 7.0 KiB idle (14.5 KiB with TLS) ≈
/// 58 KiB; 4 outbound queues of [`RELAY_QUEUE_DEPTH`] frames, but a frame a machine sends to the
/// device is encoded once and shared by every queue it is pushed to, so the machine's traffic
/// costs its bytes once (≤ 2 MiB), not 4 times; the router keeps ≤
/// [`RELAY_TRACKED_CHANNELS_PER_CONNECTION`] × 40 bytes per connection to tell machines which
/// channels ended. All connections of a device key draw on **one** inbound byte budget
/// (`RELAY_INBOUND_BYTES_PER_SEC`, `RELAY_INBOUND_BURST_BYTES`), so more tabs never mean
/// more bytes into the relay; what the relay writes out to a device is at most this many times
/// what its machines send it, and their own budgets bound that. The per-prefix cap
/// (`RELAY_MAX_CONNECTIONS_PER_PREFIX`) and the total cap still count every connection.
pub const RELAY_MAX_CONNECTIONS_PER_DEVICE: usize = 4;

/// End-to-end channels (machine, connection id) the relay remembers per device connection, from
/// the session handshakes the device sent through it. When that connection closes, each machine
/// is told which of its channels with the device ended with it
/// ([`DevicePresence`](crate::frame::DevicePresence)`::closed`), so it drops them at once
/// instead of keeping a dead tab's channel and subscription. A tab talks to a few machines and
/// opens one channel per machine per (re)connect; past 32 the oldest is forgotten (that channel
/// then lingers on its machine until it is pushed out or the device goes offline).
pub const RELAY_TRACKED_CHANNELS_PER_CONNECTION: usize = 32;

/// Machines in one account. Covers a person's or a small team's fleet. Also the most a
/// [`DeviceList`](crate::frame::DeviceList) carries, so a relay's cap may be lower, never
/// higher (checked when it starts).
pub const RELAY_MAX_MACHINES_PER_ACCOUNT: usize = 256;

/// Devices (controllers) in one account: phones, tablets, terminals. Also the most a
/// [`DeviceList`](crate::frame::DeviceList) or an
/// [`AllowedDevices`](crate::frame::AllowedDevices) carries (a relay's cap may be lower, never
/// higher).
pub const RELAY_MAX_DEVICES_PER_ACCOUNT: usize = 32;

/// The largest [`DeviceList`](crate::frame::DeviceList) a relay sends, encoded: every machine
/// of an account (fingerprint 32 + hostname 1 + 64 + online 1 bytes) and every device
/// (fingerprint 32, owner and online 2, and paired with every machine: a length of 2 bytes and
/// an index of at most 2 bytes each), with 16 bytes of kind, request and lengths: 25 088 +
/// 17 536 + 16 = 42 640 bytes, inside one frame.
pub const DEVICE_LIST_MAX_LEN: usize = RELAY_MAX_MACHINES_PER_ACCOUNT
    * (32 + 1 + MAX_HOSTNAME_LEN + 1)
    + RELAY_MAX_DEVICES_PER_ACCOUNT * (32 + 2 + 2 + 2 * RELAY_MAX_MACHINES_PER_ACCOUNT)
    + 16;
const _: () = assert!(DEVICE_LIST_MAX_LEN <= MAX_FRAME_LEN);

// ---- Between machines and devices ----
//
// What a machine and a device must agree on beyond the frame sizes above. Everything only the
// daemon decides (its queues, its agents, its notifications) is in the daemon's own `limits`
// module (`src/limits.rs`); what only a device keeps, in `muxagent-client`'s.

/// First reconnect delay after losing the relay; doubles per failure up to
/// [`RECONNECT_MAX_MS`], with ±50 % jitter so a fleet does not reconnect in step (iroh: 10 ms →
/// 16 s). Here rather than in a client's crate because the relay's sizing relies on it: its
/// cap on connections still logging in (`RELAY_MAX_UNAUTHENTICATED_CONNECTIONS`) and its
/// restart spread (`RELAY_RESTART_SPREAD_MS`) were measured against clients that wait this
/// long (daemons, `ctl`, the web app, and the relay's load bench).
pub const RECONNECT_MIN_MS: u64 = 250;

/// Longest reconnect delay.
pub const RECONNECT_MAX_MS: u64 = 15_000;

/// Longest approval input a device fetches, shows and may allow, and a machine keeps whole for
/// it (beyond what the approval's event carries: the daemon cuts an event's text fields to
/// 24 KiB). A big `Write` of a file is what reaches it; 1 MiB is ~20 000 lines, as much as a
/// person can be asked to read on a phone. A longer input can only be denied. The machine holds
/// it in memory while the approval is open, within a budget per session of its own.
pub const APPROVAL_INPUT_MAX_LEN: usize = 1024 * 1024;

/// Bytes of an approval's input in one [`InputChunk`](crate::app::InputChunk): 48 KiB leaves
/// ~16 KiB of the channel message ([`MAX_APP_MESSAGE_LEN`]) for the rest, and a 1 MiB input
/// comes in 22 pages (one in flight at a time, so the relay's queue never fills).
pub const INPUT_CHUNK_LEN: usize = 48 * 1024;
