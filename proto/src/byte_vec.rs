//! Serde for `Vec<u8>` fields that carry opaque bytes (channel packets, push bodies): as serde
//! *bytes* rather than a sequence of `u8`. On postcard's wire the two are the same (a varint
//! length, then the bytes), but a sequence is encoded and decoded one byte and one call at a
//! time, and that was a quarter of the relay's CPU routing 256-byte packets; bytes are one copy.
//! Formats that have no bytes type (JSON) still decode the sequence form.

use alloc::vec::Vec;
use core::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// Serialize `bytes` as serde bytes.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

/// Deserialize serde bytes (or a sequence of `u8`) into a `Vec<u8>`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct ByteVec;
    impl<'de> Visitor<'de> for ByteVec {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
            Ok(bytes.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(bytes)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Preallocate no more than a frame's worth, whatever the length claims.
            let hint = seq
                .size_hint()
                .unwrap_or(0)
                .min(crate::limits::MAX_FRAME_LEN);
            let mut out = Vec::with_capacity(hint);
            while let Some(byte) = seq.next_element()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(ByteVec)
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsBytes(#[serde(with = "super")] Vec<u8>);

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsSeq(Vec<u8>);

    #[test]
    fn the_wire_is_the_same_as_a_sequence_of_u8() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let fast = postcard::to_allocvec(&AsBytes(bytes.clone())).expect("encode");
            let slow = postcard::to_allocvec(&AsSeq(bytes.clone())).expect("encode");
            assert_eq!(fast, slow, "{len} bytes");
            let back: AsBytes = postcard::from_bytes(&slow).expect("decode");
            assert_eq!(back.0, bytes);
        }
        // A length longer than what follows is an error, not an allocation.
        let short = vec![0xFF, 0xFF, 0x03, 1, 2, 3];
        assert!(postcard::from_bytes::<AsBytes>(&short).is_err());
    }
}
