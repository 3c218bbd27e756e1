//! Every capacity and timeout of a relay client's connection, with the reason for its value.
//! The frame sizes both ends check and the reconnect pacing every client follows are in
//! [`muxagent_proto::limits`]; the pauses a daemon takes after the relay refuses it are the
//! daemon's own.
//!
//! # Memory arithmetic
//!
//! One connection holds its WebSocket read buffer ([`READ_BUFFER_LEN`], 16 KiB), at most
//! [`MAX_WRITE_BUFFER_LEN`] of frames being written (two full frames, ~130 KiB), one message
//! being read (≤ [`MAX_FRAME_LEN`]) and, over `wss`, rustls's buffers (~8 KiB): ~220 KiB at
//! worst, ~25 KiB idle. A daemon holds one; `ctl` one per command.

use muxagent_proto::limits::MAX_FRAME_LEN;

/// Time for DNS, TCP, TLS, the WebSocket upgrade and the login together, before the attempt
/// counts as failed and the caller backs off. A relay answers in a round trip or three; ten
/// seconds covers a phone-tethered laptop or a Pi on a slow link, and is what the web app
/// allows too.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Time one frame may take to be written to the relay. A relay that stops reading (or a link
/// that died without a reset) stalls the write once the kernel's buffer is full; after this
/// the connection counts as lost and the caller reconnects instead of waiting for ever.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;

/// WebSocket read buffer of a client connection. A client reads far more than it writes
/// (replays, event streams), so it reads 16 KiB at a time: a full frame in four reads, not
/// the sixteen of the relay's 4 KiB buffer. One connection per program makes the cost nothing.
pub const READ_BUFFER_LEN: usize = 16 * 1024;

/// Bytes of frames a client's WebSocket may hold unwritten: two full frames and their
/// headers. Past it a send fails instead of buffering, so a relay that stops reading cannot
/// make a client hold more than this.
pub const MAX_WRITE_BUFFER_LEN: usize = 2 * MAX_FRAME_LEN + 64;
