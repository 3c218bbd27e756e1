//! Every size, depth and timeout of the protocol, in one place, with the reason for its value.
//!
//! Nothing in muxagent grows without a bound from this module. When a bound is hit the behaviour
//! is defined where the bound is used: a decode error, a drop with a counter, backpressure, or a
//! disconnect — never an allocation that follows a number an attacker chose.
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

/// Largest opaque payload a relay frame carries (`send`/`recv`/pairing rendezvous): one channel
/// ciphertext.
pub const MAX_PAYLOAD_LEN: usize = MAX_CHANNEL_CIPHERTEXT_LEN;

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
/// one relay `send`/`recv` payload. Note for the relay framing: this is [`PACKET_HEADER_LEN`]
/// bytes more than [`MAX_PAYLOAD_LEN`] today, so a maximum-size app message needs
/// `MAX_PAYLOAD_LEN >= MAX_PACKET_LEN` (it still fits [`MAX_FRAME_LEN`]'s 1 KiB of header room).
pub const MAX_PACKET_LEN: usize = PACKET_HEADER_LEN + MAX_CHANNEL_CIPHERTEXT_LEN;
