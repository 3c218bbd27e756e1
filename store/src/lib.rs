//! muxagent's append-only log, shared by the daemon (one log per agent session) and the relay
//! (its registry of accounts, machines and revocations).
//!
//! A [`Log<T>`] is a directory of segment files holding postcard-encoded `T` values, each in a
//! record with a length prefix, a CRC-32 and a sequence number one higher than the previous
//! record's, so a reader can resume "from seq N" ([`Log::iter_from`]).
//!
//! # Files
//!
//! - [`record`]: the record format, byte by byte, and the pure [`decode_record`] /
//!   [`encode_record`] (what the fuzz target drives).
//! - `segment`: segment file names and header, scanning and verifying a segment.
//! - [`recovery`]: what opening repairs after a crash, and the [`RecoveryReport`] it returns.
//! - `log`: [`Log`]: append, sync, rotation, retention, rewrite, readers.
//! - `dir`: private files, directory fsync, atomic rename.
//! - [`error`]: [`Error`] and what its variants tell the reader.
//!
//! # On disk
//!
//! ```text
//! <dir>/00000000000000000000.seg    header (20 bytes) + records with seqs 0, 1, 2, …
//! <dir>/00000000000000004711.seg    header + records 4711, 4712, …   (the one being written)
//! ```
//!
//! A segment is named after the seq of its first record. The header is
//! `b"MUXLOG" | version u8 = 1 | flags u8 (bit 0 SNAPSHOT) | base seq u64 LE | crc32 u32 LE of
//! the preceding 16 bytes`; a record is
//! `len u32 LE | crc32 u32 LE over (len bytes ‖ body) | body = seq u64 LE ‖ postcard(value)`
//! (see [`record`] for the bounds). Limits are in [`limits`]:
//! [`MAX_LOG_RECORD_LEN`](limits::MAX_LOG_RECORD_LEN), `LOG_SEGMENT_LEN`, `LOG_RETENTION_LEN`,
//! `LOG_WRITE_BUFFER_LEN`, `LOG_INDEX_INTERVAL`.
//!
//! # Durability (fsync policy)
//!
//! - [`Log::append`] buffers (up to `LOG_WRITE_BUFFER_LEN`, then writes to the OS) and returns
//!   the record's seq. It is **not** durable yet.
//! - [`Log::sync`] writes the buffer and calls `fdatasync` on the segment once, making every
//!   record appended so far durable (group commit: batch appends, then sync once). A record is
//!   *acknowledged as durable* only when a sync (or [`Log::close`], or a rotation or rewrite
//!   inside a call) that covered it returned `Ok`; [`Log::durable_seq`] says how far that is.
//! - A new segment file is written as `<name>.tmp`, fsynced, renamed, and the directory is
//!   fsynced; a rotation first fdatasyncs the segment it finishes, so only the last segment can
//!   ever have a torn tail. Deleting segments (retention, rewrite) fsyncs the directory.
//! - If a write or an fsync fails the log is *poisoned*: every later call returns
//!   [`Error::Poisoned`] until it is reopened, because after a failed fsync the kernel may
//!   have dropped the dirty data and a retried fsync could report success for data that is
//!   gone. Reopening finds what actually reached the disk.
//! - [`Log::open`] fdatasyncs the last segment and the directory, so what it found (possibly
//!   left in the page cache by a writer that was killed) is durable before it is reported so.
//! - The log takes no lock: one `Log` per directory at a time is the caller's job.
//!
//! # Crashes and corruption
//!
//! [`Log::open`] reads and checks every record. It repairs what a crash can leave and reports
//! it in a [`RecoveryReport`]: a torn or corrupt **tail** of the last segment (a bad record with
//! no valid later record after it) is truncated; `.tmp` files are deleted; segments superseded
//! by a committed [`Log::rewrite`] are deleted. Damage in the **middle** — a bad record followed
//! by a valid later record, damage in a segment that later segments follow, a bad segment
//! header, a gap in the seqs — is returned as [`Error::Corrupt`] naming the file and offset, and
//! nothing is truncated: the caller decides.
//!
//! # Bounded disk
//!
//! Segments rotate at [`Options::segment_len`]. Two compactions keep a log bounded:
//! retention ([`Options::retention`], [`Log::retain`]) deletes whole old segments beyond a byte
//! budget and reports the first seq still available; [`Log::rewrite`] atomically replaces the
//! whole log with a caller-supplied set of values (the relay folds its registry into a
//! snapshot). Seqs continue across both.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod dir;
pub mod error;
pub mod limits;
mod log;
pub mod record;
pub mod recovery;
mod segment;

pub use error::{Corruption, Error, FollowedBy};
pub use log::{Iter, Log, Options};
pub use record::{
    MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, Record, RecordError, decode_record, encode_record,
    record_len,
};
pub use recovery::{RecoveryReport, TailTruncation};

/// Bytes of a segment file's header, before its first record.
pub const SEGMENT_HEADER_LEN: usize = segment::HEADER_LEN;
