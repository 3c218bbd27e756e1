//! The framing shared by relay frames and app messages: one kind byte, then the postcard body of
//! that kind. The outer transport (a WebSocket message, a Noise message) delimits the whole, so
//! no length is needed.
//!
//! Decoding checks the total size first, then the kind: an unknown kind is reported as
//! [`Decoded::Unknown`] so a newer peer's additions are skipped, not fatal. A known kind must
//! decode completely: trailing bytes are an error, as is any field that breaks its bounds.

use core::fmt;

use alloc::vec::Vec;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The result of decoding an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A kind this build knows, fully decoded and validated.
    Known(T),
    /// A kind this build does not know: skip it.
    Unknown {
        /// The kind byte that was not recognized.
        kind: u8,
    },
}

/// Why bytes could not be decoded as an envelope of a known kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Zero bytes: there is not even a kind.
    Empty,
    /// More bytes than the limit for this envelope.
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body of a known kind is truncated or malformed.
    Malformed {
        /// The kind being decoded.
        kind: u8,
        /// What postcard found wrong.
        reason: postcard::Error,
    },
    /// The body decoded but bytes were left over.
    TrailingBytes {
        /// The kind being decoded.
        kind: u8,
        /// How many bytes were left.
        extra: usize,
    },
    /// The body decoded but a field breaks a rule of the protocol.
    Invalid {
        /// The kind being decoded.
        kind: u8,
        /// The rule that was broken.
        reason: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::TooLarge { len, max } => {
                write!(f, "message of {len} bytes is over the limit of {max}")
            }
            DecodeError::Malformed { kind, reason } => {
                write!(f, "message of kind {kind} is malformed: {reason}")
            }
            DecodeError::TrailingBytes { kind, extra } => {
                write!(
                    f,
                    "message of kind {kind} has {extra} unexpected trailing bytes"
                )
            }
            DecodeError::Invalid { kind, reason } => {
                write!(f, "message of kind {kind} is invalid: {reason}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

/// A body type: postcard-encoded, with protocol rules checked after decoding.
pub trait Body: Serialize + DeserializeOwned {
    /// Check the rules postcard cannot express. The default accepts everything that decoded.
    fn validate(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// About how many bytes the body encodes to, so encoding allocates once: bodies that carry
    /// a payload say how long it is. The default suits the small ones.
    fn size_hint(&self) -> usize {
        0
    }
}

/// Encode `kind ‖ postcard(body)`.
pub fn encode<T: Serialize>(kind: u8, body: &T) -> Vec<u8> {
    encode_sized(kind, body, 0)
}

/// [`encode`] into a buffer made for about `hint` body bytes (grown as needed): a frame that
/// carries a payload is copied once, not reallocated as it grows.
pub fn encode_sized<T: Serialize>(kind: u8, body: &T, hint: usize) -> Vec<u8> {
    // Room for the small bodies (and a payload's header: keys, lengths) from the start.
    let mut out = Vec::with_capacity(hint.saturating_add(96));
    out.push(kind);
    match postcard::to_extend(body, out) {
        Ok(bytes) => bytes,
        // Postcard writing into a Vec fails only for types serde cannot give a length for
        // (unsized iterators); no wire type has one, and the snapshot tests encode every kind.
        // Should one appear, the peer sees an empty message and reports it.
        Err(_) => {
            debug_assert!(false, "postcard cannot encode a kind {kind} body");
            Vec::new()
        }
    }
}

/// Decode a body of `kind` from `bytes`: all of it, then validate it.
pub fn decode_body<T: Body>(kind: u8, bytes: &[u8]) -> Result<T, DecodeError> {
    let (body, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|reason| DecodeError::Malformed { kind, reason })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            kind,
            extra: rest.len(),
        });
    }
    body.validate()
        .map_err(|reason| DecodeError::Invalid { kind, reason })?;
    Ok(body)
}

/// Split `bytes` into kind and body after checking the size limit.
pub fn split(bytes: &[u8], max_len: usize) -> Result<(u8, &[u8]), DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    match bytes.split_first() {
        Some((kind, body)) => Ok((*kind, body)),
        None => Err(DecodeError::Empty),
    }
}

/// Define a wire enum: each variant wraps one [`Body`] type and has a fixed kind byte. Generates
/// `kind()`, `encode()` and `decode()`. Kind numbers are the wire format: never reuse one.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident (max_len = $max:expr) {
            $( $(#[$vmeta:meta])* $kind:literal => $variant:ident($body:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant($body), )*
        }

        impl $name {
            /// Every kind byte this build knows, in order.
            pub const KINDS: &'static [u8] = &[$($kind),*];

            /// The kind byte of this variant on the wire.
            pub fn kind(&self) -> u8 {
                match self {
                    $( $name::$variant(_) => $kind, )*
                }
            }

            /// Encode as `kind ‖ postcard body`.
            pub fn encode(&self) -> alloc::vec::Vec<u8> {
                match self {
                    $( $name::$variant(body) => $crate::envelope::encode_sized(
                        $kind,
                        body,
                        $crate::envelope::Body::size_hint(body),
                    ), )*
                }
            }

            /// Decode one whole message; unknown kinds come back as
            /// [`Decoded::Unknown`](crate::envelope::Decoded::Unknown).
            pub fn decode(
                bytes: &[u8],
            ) -> Result<$crate::envelope::Decoded<Self>, $crate::envelope::DecodeError> {
                let (kind, body) = $crate::envelope::split(bytes, $max)?;
                Ok($crate::envelope::Decoded::Known(match kind {
                    $( $kind => $name::$variant($crate::envelope::decode_body(kind, body)?), )*
                    _ => return Ok($crate::envelope::Decoded::Unknown { kind }),
                }))
            }
        }

        $(
            impl From<$body> for $name {
                fn from(body: $body) -> Self {
                    $name::$variant(body)
                }
            }
        )*
    };
}

pub(crate) use wire_enum;
