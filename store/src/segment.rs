//! One segment file: its name, its header, and reading and verifying its records.
//!
//! # Segment files
//!
//! A log is a directory of segment files named after the seq of their first record, zero-padded
//! so that names sort like numbers: `00000000000000000042.seg`. Each file is a 20-byte header
//! followed by records (see [`crate::record`]) with consecutive seqs, starting at that seq:
//!
//! ```text
//! offset  size  field
//! 0       6     magic     b"MUXLOG"
//! 6       1     version   1
//! 7       1     flags     bit 0 = SNAPSHOT: this segment was written by a rewrite and starts the
//!                         log; every segment before it is superseded. Other bits must be 0.
//! 8       8     base_seq  u64 little-endian: seq of the segment's first record (= the name)
//! 16      4     crc       u32 little-endian: CRC-32 of bytes 0..16
//! 20      …     records
//! ```
//!
//! A segment file only ever appears under its final name with its whole header synced (it is
//! written as `<name>.tmp`, synced, renamed, and the directory synced), so a bad header is never a
//! torn write.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::limits::{LOG_INDEX_INTERVAL, MAX_LOG_RECORD_LEN};

use crate::dir;
use crate::error::{Corruption, Error, IoContext};
use crate::record::{RECORD_HEADER_LEN, SEQ_LEN, decode_record};

/// Magic bytes at the start of every segment.
pub const MAGIC: [u8; 6] = *b"MUXLOG";
/// Segment format version written and read by this build.
pub const VERSION: u8 = 1;
/// Header flag: the segment starts the log (written by a rewrite).
pub const FLAG_SNAPSHOT: u8 = 0b1;
/// Bytes of the segment header.
pub const HEADER_LEN: usize = 20;

const SUFFIX: &str = ".seg";
const TEMP_SUFFIX: &str = ".seg.tmp";
/// Digits of a segment name: enough for any u64.
const NAME_DIGITS: usize = 20;

/// Bytes read from a segment file at a time while scanning.
const READ_CHUNK: usize = 1024 * 1024;

/// File name of the segment starting at `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}{SUFFIX}")
}

/// File name of the temporary file a segment starting at `base` is written as.
pub(crate) fn temp_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}{TEMP_SUFFIX}")
}

/// What a directory entry is to the log.
pub(crate) enum Name {
    Segment(u64),
    Temp,
    Other,
}

/// Classifies a directory entry's name.
pub(crate) fn parse_name(name: &str) -> Name {
    let digits = |s: &str| {
        (s.len() == NAME_DIGITS && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    if let Some(base) = name.strip_suffix(SUFFIX).and_then(digits) {
        Name::Segment(base)
    } else if name.strip_suffix(TEMP_SUFFIX).and_then(digits).is_some() {
        Name::Temp
    } else {
        Name::Other
    }
}

/// Encodes a segment header.
pub(crate) fn encode_header(base: u64, snapshot: bool) -> [u8; HEADER_LEN] {
    let mut header = [0; HEADER_LEN];
    header[..6].copy_from_slice(&MAGIC);
    header[6] = VERSION;
    header[7] = if snapshot { FLAG_SNAPSHOT } else { 0 };
    header[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&header[..16]);
    header[16..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub base: u64,
    pub snapshot: bool,
}

/// Decodes and checks a segment header (pure).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<Header, Corruption> {
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(Corruption::HeaderTruncated {
            len: bytes.len() as u64,
        });
    };
    if header[..6] != MAGIC {
        return Err(Corruption::HeaderMagic);
    }
    let stored = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
    if crc32fast::hash(&header[..16]) != stored {
        return Err(Corruption::HeaderChecksum);
    }
    if header[6] != VERSION {
        return Err(Corruption::HeaderVersion { version: header[6] });
    }
    if header[7] & !FLAG_SNAPSHOT != 0 {
        return Err(Corruption::HeaderFlags { flags: header[7] });
    }
    let mut base = [0; 8];
    base.copy_from_slice(&header[8..16]);
    Ok(Header {
        base: u64::from_le_bytes(base),
        snapshot: header[7] & FLAG_SNAPSHOT != 0,
    })
}

/// Creates the segment starting at `base` with `records` (already encoded, seqs `base..`) after
/// its header, atomically: it appears under its name complete and synced, or not at all.
pub(crate) fn create(
    dir_path: &Path,
    base: u64,
    snapshot: bool,
    records: &[u8],
) -> Result<PathBuf, Error> {
    let path = dir_path.join(file_name(base));
    let temp = dir_path.join(temp_name(base));
    let mut bytes = Vec::with_capacity(HEADER_LEN + records.len());
    bytes.extend_from_slice(&encode_header(base, snapshot));
    bytes.extend_from_slice(records);
    dir::write_atomic(dir_path, &temp, &path, &bytes)?;
    Ok(path)
}

/// What the log knows about one segment.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub path: PathBuf,
    /// Seq of the first record (the name).
    pub base: u64,
    /// Bytes of the file that hold the header and valid records (buffered appends included for
    /// the active segment).
    pub len: u64,
    /// Number of records.
    pub records: u64,
    /// Sparse seek index: `(seq, offset)` of a record every [`LOG_INDEX_INTERVAL`] bytes; the
    /// first entry is always `(base, HEADER_LEN)`.
    pub index: Vec<(u64, u64)>,
}

impl Segment {
    /// A segment with no records.
    pub(crate) fn empty(path: PathBuf, base: u64) -> Self {
        Segment {
            path,
            base,
            len: HEADER_LEN as u64,
            records: 0,
            index: vec![(base, HEADER_LEN as u64)],
        }
    }

    /// Seq after the last record.
    pub(crate) fn end_seq(&self) -> u64 {
        self.base + self.records
    }

    /// Notes a record of `len` bytes appended with seq `self.end_seq()`.
    #[inline]
    pub(crate) fn push(&mut self, len: u64) {
        let last_indexed = self.index.last().map_or(0, |&(_, offset)| offset);
        if self.len - last_indexed >= LOG_INDEX_INTERVAL {
            self.index.push((self.end_seq(), self.len));
        }
        self.len += len;
        self.records += 1;
    }

    /// Offset of the indexed record at or before `seq`, and that record's seq.
    pub(crate) fn seek_point(&self, seq: u64) -> (u64, u64) {
        let i = self.index.partition_point(|&(s, _)| s <= seq);
        self.index
            .get(i.saturating_sub(1))
            .copied()
            .unwrap_or((self.base, HEADER_LEN as u64))
    }
}

/// Bytes of a file from some offset on, read through a window so that scanning a file reads each
/// byte once and memory stays at one chunk plus one record.
pub(crate) struct Window {
    file: File,
    file_len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    start: u64,
}

impl Window {
    pub(crate) fn new(file: File, file_len: u64) -> Self {
        Window {
            file,
            file_len,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The bytes from `pos` on: at least `want` of them, or all of them up to the end of the
    /// file if there are fewer.
    pub(crate) fn at(&mut self, pos: u64, want: usize) -> io::Result<&[u8]> {
        let end = self.file_len.min(pos.saturating_add(want as u64));
        let have_end = self.start + self.buf.len() as u64;
        if pos < self.start || pos > have_end {
            self.buf.clear();
            self.start = pos;
        } else if end > have_end {
            // Keep what is still ahead of `pos`, read the rest.
            self.buf.drain(..(pos - self.start) as usize);
            self.start = pos;
        }
        let have_end = self.start + self.buf.len() as u64;
        if end > have_end {
            let target = self
                .file_len
                .min(self.start + (want.max(READ_CHUNK)) as u64)
                .max(end);
            let old_len = self.buf.len();
            self.buf.resize((target - self.start) as usize, 0);
            self.file.seek(SeekFrom::Start(have_end))?;
            let mut filled = old_len;
            while filled < self.buf.len() {
                match self.file.read(&mut self.buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled < self.buf.len() {
                // The file shrank under us: show only what is there.
                self.buf.truncate(filled);
                self.file_len = self.start + filled as u64;
            }
        }
        let from = ((pos - self.start) as usize).min(self.buf.len());
        Ok(&self.buf[from..])
    }
}

/// Largest number of bytes one record takes on disk.
pub(crate) const MAX_RECORD_BYTES: usize = RECORD_HEADER_LEN + MAX_LOG_RECORD_LEN;

/// The result of reading a segment from its header to its end.
pub(crate) struct Scan {
    /// The valid prefix: header and consecutive records.
    pub segment: Segment,
    /// The first invalid place, if the valid prefix is not the whole file.
    pub damage: Option<Damage>,
}

/// An invalid place in a segment.
pub(crate) struct Damage {
    /// Where the valid prefix ends.
    pub offset: u64,
    /// The file's length.
    pub file_len: u64,
    pub problem: Corruption,
    /// A later valid record (seq at or after the expected one) found after `offset`.
    pub valid_after: Option<u64>,
}

/// Reads and checks the segment at `path` whose name says it starts at `base`: the header, every
/// record's length, checksum and seq. A bad header is returned as `Err`; damage after the header
/// is described in [`Scan::damage`], together with a search for valid data after it.
pub(crate) fn scan(path: &Path, base: u64) -> Result<Scan, Error> {
    let file = File::open(path).ctx("open log segment", path)?;
    let file_len = file.metadata().ctx("read metadata of", path)?.len();
    let mut window = Window::new(file, file_len);
    let bad_header = |problem| Error::Corrupt {
        segment: path.to_path_buf(),
        offset: 0,
        problem,
        followed_by: crate::error::FollowedBy::NotATornWrite,
    };
    let header = window
        .at(0, HEADER_LEN)
        .ctx("read log segment", path)
        .and_then(|bytes| decode_header(bytes).map_err(bad_header))?;
    if header.base != base {
        return Err(bad_header(Corruption::HeaderBaseSeq {
            header: header.base,
            name: base,
        }));
    }
    let mut segment = Segment::empty(path.to_path_buf(), base);
    let mut damage = None;
    while segment.len < file_len {
        let bytes = window
            .at(segment.len, MAX_RECORD_BYTES)
            .ctx("read log segment", path)?;
        let problem = match decode_record(bytes) {
            Ok((record, _)) if record.seq != segment.end_seq() => Corruption::UnexpectedSeq {
                expected: segment.end_seq(),
                found: record.seq,
            },
            Ok((_, used)) => {
                segment.push(used as u64);
                continue;
            }
            Err(error) => Corruption::Record(error),
        };
        let valid_after = find_valid_after(&mut window, segment.len + 1, segment.end_seq())
            .ctx("read log segment", path)?;
        damage = Some(Damage {
            offset: segment.len,
            file_len,
            problem,
            valid_after,
        });
        break;
    }
    Ok(Scan { segment, damage })
}

/// Looks at every byte offset from `from` on for a valid record with a seq of at least
/// `min_seq`: data the log wrote after the damaged place. Returns its offset.
///
/// Random bytes almost never pass (a length in bounds *and* a matching CRC-32), so this errs
/// only towards reporting damage: a payload that itself contains an encoded later record would
/// be taken for one.
fn find_valid_after(window: &mut Window, from: u64, min_seq: u64) -> io::Result<Option<u64>> {
    const MIN_RECORD: u64 = (RECORD_HEADER_LEN + SEQ_LEN) as u64;
    let mut pos = from;
    while pos + MIN_RECORD <= window.file_len {
        let bytes = window.at(pos, MAX_RECORD_BYTES)?;
        if let Ok((record, _)) = decode_record(bytes)
            && record.seq >= min_seq
        {
            return Ok(Some(pos));
        }
        pos += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(temp_name(u64::MAX), "18446744073709551615.seg.tmp");
        assert!(matches!(
            parse_name(&file_name(u64::MAX)),
            Name::Segment(u64::MAX)
        ));
        assert!(matches!(parse_name(&temp_name(7)), Name::Temp));
        for other in [
            "42.seg",
            "0000000000000000004x.seg",
            "LOCK",
            "99999999999999999999.seg",
        ] {
            assert!(matches!(parse_name(other), Name::Other), "{other}");
        }
    }

    #[test]
    fn window_shows_the_file_across_chunks() {
        let path =
            std::env::temp_dir().join(format!("muxagent-store-window-{}", std::process::id()));
        let len = 3 * READ_CHUNK + 12_345;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut window = Window::new(File::open(&path).unwrap(), len as u64);
        let mut check = |pos: usize, want: usize| {
            let got = window.at(pos as u64, want).unwrap();
            let end = len.min(pos + want);
            assert!(
                got.len() >= end - pos,
                "pos {pos} want {want}: {} bytes",
                got.len()
            );
            assert_eq!(got, &bytes[pos..pos + got.len()], "pos {pos} want {want}");
        };
        // Forwards in record-sized steps (the scan), byte by byte (the search), jumps, backwards.
        let mut pos = 0;
        while pos < len {
            check(pos, MAX_RECORD_BYTES);
            pos += 202;
        }
        for pos in READ_CHUNK - 300..READ_CHUNK + 300 {
            check(pos, MAX_RECORD_BYTES);
        }
        for pos in [
            len,
            len - 1,
            0,
            2 * READ_CHUNK + 1,
            5,
            len - MAX_RECORD_BYTES,
            17,
        ] {
            check(pos, MAX_RECORD_BYTES);
            check(pos, 20);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn header_round_trip_and_damage() {
        let header = encode_header(7, true);
        assert_eq!(&header[..8], b"MUXLOG\x01\x01");
        assert_eq!(
            decode_header(&header),
            Ok(Header {
                base: 7,
                snapshot: true
            })
        );
        assert_eq!(
            decode_header(&header[..19]),
            Err(Corruption::HeaderTruncated { len: 19 })
        );
        for byte in 0..HEADER_LEN {
            let mut bad = header;
            bad[byte] ^= 0x10;
            assert!(decode_header(&bad).is_err(), "byte {byte}");
        }
    }
}
