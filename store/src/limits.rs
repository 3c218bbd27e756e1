//! Every size of the append-only log, with the reason for its value: the largest record, how
//! segments rotate and how much history one log keeps, and the memory an open log holds. The
//! daemon's session logs and the relay's registry and push logs are all this crate's logs; each
//! opener picks its segment size and retention through [`Options`](crate::Options), from the
//! defaults here.
//!
//! # Memory and disk arithmetic
//!
//! Disk per log ≤ retention budget + one segment; memory per open log ≤ one write buffer + one
//! record being read + one index entry per [`LOG_INDEX_INTERVAL`] bytes on disk
//! (32 MiB / 64 KiB = 512 entries × 16 bytes = 8 KiB at the defaults).

use muxagent_proto::limits::MAX_APP_MESSAGE_LEN;

/// Largest value of a log record's length field: the 8-byte sequence number plus the payload
/// (one postcard-encoded value). The largest thing the daemon appends is one app message
/// ([`MAX_APP_MESSAGE_LEN`], < 64 KiB) with a little metadata around it, and relay registry
/// entries are far smaller; 256 KiB leaves 4× room. An append over it is refused; a length field
/// over it on disk is corruption, so a damaged length can never make a reader allocate more.
pub const MAX_LOG_RECORD_LEN: usize = 256 * 1024;

/// Default size at which the log starts a new segment file. Retention drops whole segments, so
/// this is also the granularity of what retention gives back: 4 MiB is 1/8 of
/// [`LOG_RETENTION_LEN`], 16 full-size records, and about 20 000 typical (~200-byte) events.
pub const LOG_SEGMENT_LEN: u64 = 4 * 1024 * 1024;

/// Default byte budget of one log (one session's history on the daemon). When a new segment is
/// started, the oldest segments are deleted until the log fits this budget, so one log uses at
/// most this plus one segment ([`LOG_SEGMENT_LEN`]) of disk: 36 MiB. 32 MiB holds roughly
/// 150 000 typical events — hours of a busy agent — and 100 sessions stay under 4 GiB on a Pi.
pub const LOG_RETENTION_LEN: u64 = 32 * 1024 * 1024;

/// Bytes the log buffers in memory before it writes them to its file (one `write` call). A sync
/// writes whatever is buffered first, so this bounds memory, not durability.
pub const LOG_WRITE_BUFFER_LEN: usize = 64 * 1024;

/// Bytes of log between two entries of a segment's in-memory seek index. A read from a given seq
/// scans at most this much (plus one record) before its first record; the index costs 16 bytes per
/// entry, 256 KiB for a 1 GiB log.
pub const LOG_INDEX_INTERVAL: u64 = 64 * 1024;

// A record holds the largest event the daemon appends (one app message and its metadata).
const _: () = assert!(MAX_APP_MESSAGE_LEN + 1024 <= MAX_LOG_RECORD_LEN);
