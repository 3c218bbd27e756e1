//! The errors the log returns, written for the person who reads them: which file, which offset,
//! what is wrong, and what the log did (or did not do) about it.

use core::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::record::RecordError;

/// Everything that can go wrong in the log.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file system call failed.
    Io {
        /// What the log was doing, e.g. "write to log segment".
        action: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Bytes on disk are damaged somewhere other than a torn tail (those are truncated and
    /// reported by [`crate::Log::open`] instead). Nothing was changed on disk.
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong there.
        problem: Corruption,
        /// What comes after the damage, i.e. why it is not treated as a torn tail.
        followed_by: FollowedBy,
    },
    /// An append was refused: the encoded value is larger than a record may be.
    RecordTooLarge {
        /// The encoded payload's length.
        len: usize,
        /// The largest payload allowed ([`crate::MAX_PAYLOAD_LEN`]).
        max: usize,
    },
    /// postcard could not encode a value given to append or rewrite.
    Encode(postcard::Error),
    /// A record is intact (its checksum matches) but its payload does not decode as the log's
    /// type: the type changed incompatibly since the record was written.
    Decode {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the record in that file.
        offset: u64,
        /// The record's sequence number.
        seq: u64,
        /// postcard's complaint.
        source: postcard::Error,
    },
    /// A read was asked to start at a sequence number the log does not hold: compacted away
    /// (below `first`) or not written yet (above `next`).
    SeqNotAvailable {
        /// The seq asked for.
        requested: u64,
        /// The first seq the log holds.
        first: u64,
        /// The seq the next append will get.
        next: u64,
    },
    /// An earlier write, sync or rotation of this log failed, so what is on disk is unknown (a
    /// failed fsync may have dropped buffered data). Reopen the log: opening finds the real end.
    Poisoned {
        /// The log directory.
        dir: PathBuf,
    },
}

/// What is wrong at a damaged place.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The bytes there are not a valid record.
    Record(RecordError),
    /// A valid record carries the wrong sequence number.
    UnexpectedSeq {
        /// The seq that should come next.
        expected: u64,
        /// The seq the record carries.
        found: u64,
    },
    /// The file is shorter than a segment header.
    HeaderTruncated {
        /// The file's length.
        len: u64,
    },
    /// The file does not start with the segment magic bytes.
    HeaderMagic,
    /// The segment header names a format version this build does not read.
    HeaderVersion {
        /// The version byte.
        version: u8,
    },
    /// The segment header has flags this build does not know.
    HeaderFlags {
        /// The flags byte.
        flags: u8,
    },
    /// The segment header's checksum does not match.
    HeaderChecksum,
    /// The segment header's first seq disagrees with the file name.
    HeaderBaseSeq {
        /// The first seq in the header.
        header: u64,
        /// The first seq in the file name.
        name: u64,
    },
    /// A segment does not start where the previous one ended: records are missing.
    SegmentGap {
        /// The seq the segment should start at.
        expected: u64,
        /// The seq it starts at.
        found: u64,
    },
}

/// What follows a damaged place, i.e. why it was not truncated as a torn tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowedBy {
    /// A valid record with a later sequence number starts at this byte offset of the same file.
    ValidRecord {
        /// Byte offset of that record.
        offset: u64,
    },
    /// The damage is in a segment that later segments follow (a finished segment is synced before
    /// the next one is created, so it cannot have a torn tail).
    LaterSegments,
    /// Damage of a kind a crash cannot cause (a segment header is written whole before the file
    /// gets its name), so it is never truncated.
    NotATornWrite,
    /// Found by a reader in a record that was valid when the log was opened or written: the file
    /// changed underneath the log.
    ChangedSinceOpen,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Record(error) => error.fmt(f),
            Corruption::UnexpectedSeq { expected, found } => write!(
                f,
                "record has sequence number {found}, expected {expected} (stale or misplaced data)"
            ),
            Corruption::HeaderTruncated { len } => write!(
                f,
                "file is {len} bytes, shorter than the {}-byte segment header",
                crate::segment::HEADER_LEN
            ),
            Corruption::HeaderMagic => {
                f.write_str("file does not start with the segment magic bytes (not a log segment)")
            }
            Corruption::HeaderVersion { version } => write!(
                f,
                "segment format version {version} is not supported (this build reads version {})",
                crate::segment::VERSION
            ),
            Corruption::HeaderFlags { flags } => {
                write!(f, "segment header has unknown flags {flags:#04x}")
            }
            Corruption::HeaderChecksum => f.write_str("segment header checksum mismatch"),
            Corruption::HeaderBaseSeq { header, name } => write!(
                f,
                "segment header says the first seq is {header} but the file name says {name}"
            ),
            Corruption::SegmentGap { expected, found } => write!(
                f,
                "segment starts at seq {found} but the previous segment ends before seq {expected}: records are missing"
            ),
        }
    }
}

impl fmt::Display for FollowedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FollowedBy::ValidRecord { offset } => write!(
                f,
                "a valid later record follows at offset {offset}, so this is not a torn tail"
            ),
            FollowedBy::LaterSegments => f.write_str(
                "later segments follow, and a segment is synced before the next one is created, so this is not a torn tail",
            ),
            FollowedBy::NotATornWrite => f.write_str("a crash cannot cause this"),
            FollowedBy::ChangedSinceOpen => {
                f.write_str("the record was valid when the log was opened or written, so the file changed underneath it")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Error::Corrupt {
                segment,
                offset,
                problem,
                followed_by,
            } => write!(
                f,
                "log segment {} is corrupt at byte offset {offset}: {problem}; {followed_by}. \
                 Nothing was truncated; move the damaged file aside or restore it to go on",
                segment.display()
            ),
            Error::RecordTooLarge { len, max } => write!(
                f,
                "refused to append a record of {len} bytes: the limit is {max} bytes"
            ),
            Error::Encode(error) => write!(f, "cannot encode a log record: {error}"),
            Error::Decode {
                segment,
                offset,
                seq,
                source,
            } => write!(
                f,
                "record seq {seq} at byte offset {offset} of {} is intact but does not decode \
                 as this log's type ({source}); was it written by an incompatible version?",
                segment.display()
            ),
            Error::SeqNotAvailable {
                requested,
                first,
                next,
            } => {
                if requested < first {
                    write!(
                        f,
                        "seq {requested} was compacted away: the log holds seqs {first}..{next}"
                    )
                } else {
                    write!(
                        f,
                        "seq {requested} is not written yet: the log holds seqs {first}..{next}"
                    )
                }
            }
            Error::Poisoned { dir } => write!(
                f,
                "the log in {} failed an earlier write or sync, so its on-disk state is unknown; \
                 reopen it to recover",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Encode(source) | Error::Decode { source, .. } => Some(source),
            Error::Corrupt {
                problem: Corruption::Record(source),
                ..
            } => Some(source),
            _ => None,
        }
    }
}

/// Adds the action and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
