//! One record: its byte format, and pure (IO-free) encoding and decoding.
//!
//! This file is the only place that knows the record layout. It is sans-IO so that the fuzz
//! target (`fuzz/fuzz_targets/log_record.rs`) and the property tests can drive it with arbitrary
//! bytes.
//!
//! # Format
//!
//! A record is a 8-byte header followed by `len` body bytes:
//!
//! ```text
//! offset  size  field
//! 0       4     len      u32 little-endian: body length in bytes, 8 ..= MAX_LOG_RECORD_LEN
//! 4       4     crc      u32 little-endian: CRC-32 (IEEE 802.3, as crc32fast computes it)
//!                        over bytes 0..4 (the len field) followed by the body
//! 8       8     seq      u64 little-endian: the record's sequence number (body starts here)
//! 16      len-8 payload  the caller's value, postcard-encoded
//! ```
//!
//! The checksum covers the length field, so a damaged length is caught even when it happens to
//! point at bytes that would otherwise pass. A length below 8 (a body without room for its seq)
//! or above [`MAX_LOG_RECORD_LEN`] is corruption; in particular a zero-filled region (`len` 0) is
//! never a record.
//!
//! Records are only ever decoded here in full: [`decode_record`] checks the header, the length
//! bound, the presence of every body byte and the checksum before it returns anything.

use core::fmt;

use crate::limits::MAX_LOG_RECORD_LEN;

/// Bytes before the body: `len` and `crc`.
pub const RECORD_HEADER_LEN: usize = 8;

/// Bytes of the sequence number at the start of the body.
pub const SEQ_LEN: usize = 8;

/// Largest payload one record carries: [`MAX_LOG_RECORD_LEN`] minus the sequence number.
pub const MAX_PAYLOAD_LEN: usize = MAX_LOG_RECORD_LEN - SEQ_LEN;

/// A decoded record, borrowing its payload from the input bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// The payload bytes (a postcard-encoded value for a typed [`crate::Log`]).
    pub payload: &'a [u8],
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// The bytes end before the record does: a torn write, or a cut file. `needed` is the total
    /// record size as far as the bytes present tell (8 while even the header is incomplete).
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes that are there.
        have: usize,
    },
    /// The length field is below the 8 bytes of a sequence number.
    LengthTooSmall {
        /// The length field as stored.
        len: u32,
    },
    /// The length field is above [`MAX_LOG_RECORD_LEN`].
    LengthTooLarge {
        /// The length field as stored.
        len: u32,
    },
    /// The stored CRC does not match the bytes.
    Checksum {
        /// The CRC in the record header.
        stored: u32,
        /// The CRC of the bytes present.
        computed: u32,
    },
    /// A payload given to [`encode_record`] is larger than [`MAX_PAYLOAD_LEN`].
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RecordError::Truncated { needed, have } => write!(
                f,
                "incomplete record: {have} of its {needed} bytes are there (torn or cut write)"
            ),
            RecordError::LengthTooSmall { len } => write!(
                f,
                "record length field is {len}, below the {SEQ_LEN} bytes of a sequence number"
            ),
            RecordError::LengthTooLarge { len } => write!(
                f,
                "record length field is {len}, above the limit of {MAX_LOG_RECORD_LEN} bytes"
            ),
            RecordError::Checksum { stored, computed } => write!(
                f,
                "record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            RecordError::PayloadTooLarge { len } => write!(
                f,
                "record payload is {len} bytes, above the limit of {MAX_PAYLOAD_LEN} bytes"
            ),
        }
    }
}

impl std::error::Error for RecordError {}

/// Total bytes a record with a payload of `payload_len` bytes takes on disk.
pub const fn record_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + SEQ_LEN + payload_len
}

#[inline]
fn checksum(len_field: [u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_field);
    hasher.update(body);
    hasher.finalize()
}

/// Appends the record `(seq, payload)` to `out` in the format above.
///
/// Refuses a payload over [`MAX_PAYLOAD_LEN`] and leaves `out` unchanged then.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    seal_record(out, start)
}

/// Fills in the header of a record whose body (`seq ‖ payload`) was written to `out` after
/// 8 placeholder bytes at `start`. On error `out` is truncated back to `start`.
pub(crate) fn seal_record(out: &mut Vec<u8>, start: usize) -> Result<(), RecordError> {
    let body_start = start + RECORD_HEADER_LEN;
    let body_len = out.len().saturating_sub(body_start);
    let len = match u32::try_from(body_len) {
        Ok(len) if (SEQ_LEN..=MAX_LOG_RECORD_LEN).contains(&body_len) => len,
        _ => {
            out.truncate(start);
            return Err(RecordError::PayloadTooLarge {
                len: body_len.saturating_sub(SEQ_LEN),
            });
        }
    };
    let len_field = len.to_le_bytes();
    let crc = checksum(len_field, &out[body_start..]);
    out[start..start + 4].copy_from_slice(&len_field);
    out[start + 4..body_start].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Reads the length field of a record header and checks it against the bounds, without needing
/// the body. Returns the total record size (header + body).
#[inline]
pub fn decode_record_len(header: &[u8]) -> Result<usize, RecordError> {
    let Some(len_field) = header.first_chunk::<4>() else {
        return Err(RecordError::Truncated {
            needed: RECORD_HEADER_LEN,
            have: header.len(),
        });
    };
    let len = u32::from_le_bytes(*len_field);
    if (len as usize) < SEQ_LEN {
        return Err(RecordError::LengthTooSmall { len });
    }
    if len as usize > MAX_LOG_RECORD_LEN {
        return Err(RecordError::LengthTooLarge { len });
    }
    Ok(RECORD_HEADER_LEN + len as usize)
}

/// Decodes the record at the start of `bytes`.
///
/// Returns the record and the number of bytes it takes (header + body); the bytes after that are
/// not looked at. Pure and total: any input gives `Ok` or an `Err`, never a panic, and nothing is
/// allocated.
#[inline]
pub fn decode_record(bytes: &[u8]) -> Result<(Record<'_>, usize), RecordError> {
    let total = decode_record_len(bytes)?;
    let Some((header, rest)) = bytes.split_first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(RecordError::Truncated {
            needed: total,
            have: bytes.len(),
        });
    };
    let Some(body) = rest.get(..total - RECORD_HEADER_LEN) else {
        return Err(RecordError::Truncated {
            needed: total,
            have: bytes.len(),
        });
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let stored = u32::from_le_bytes([c0, c1, c2, c3]);
    let computed = checksum([l0, l1, l2, l3], body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let Some((seq, payload)) = body.split_first_chunk::<SEQ_LEN>() else {
        // Unreachable: decode_record_len guarantees body.len() >= SEQ_LEN.
        return Err(RecordError::LengthTooSmall {
            len: body.len() as u32,
        });
    };
    Ok((
        Record {
            seq: u64::from_le_bytes(*seq),
            payload,
        },
        total,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_byte_exact() {
        let mut out = Vec::new();
        encode_record(0x0102_0304_0506_0708, b"hi", &mut out).unwrap();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[10, 0, 0, 0]);
        crc.update(&[8, 7, 6, 5, 4, 3, 2, 1, b'h', b'i']);
        let crc = crc.finalize().to_le_bytes();
        let mut expected = vec![10, 0, 0, 0];
        expected.extend_from_slice(&crc);
        expected.extend_from_slice(&[8, 7, 6, 5, 4, 3, 2, 1, b'h', b'i']);
        assert_eq!(out, expected);
        assert_eq!(out.len(), record_len(2));
        let (record, used) = decode_record(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(record.seq, 0x0102_0304_0506_0708);
        assert_eq!(record.payload, b"hi");
    }

    #[test]
    fn bounds() {
        let mut out = vec![1, 2, 3];
        let too_big = vec![0; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            encode_record(1, &too_big, &mut out),
            Err(RecordError::PayloadTooLarge {
                len: MAX_PAYLOAD_LEN + 1
            })
        );
        assert_eq!(out, [1, 2, 3]);
        out.clear();
        encode_record(1, &too_big[1..], &mut out).unwrap();
        assert_eq!(decode_record(&out).unwrap().1, out.len());

        assert_eq!(
            decode_record(&[0; 16]),
            Err(RecordError::LengthTooSmall { len: 0 })
        );
        let over = (MAX_LOG_RECORD_LEN as u32 + 1).to_le_bytes();
        assert_eq!(
            decode_record(&over),
            Err(RecordError::LengthTooLarge {
                len: MAX_LOG_RECORD_LEN as u32 + 1
            })
        );
        assert_eq!(
            decode_record(&[9, 0]),
            Err(RecordError::Truncated { needed: 8, have: 2 })
        );
        assert_eq!(
            decode_record(&[9, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(RecordError::Truncated {
                needed: 17,
                have: 9
            })
        );
    }
}
