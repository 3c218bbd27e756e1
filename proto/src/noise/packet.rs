//! The bytes of the E2E channel as they travel inside relay `send`/`recv` (and pairing) payloads.
//!
//! ```text
//! offset  size  field
//! 0       1     kind: 1 pairing-init, 2 pairing-response, 3 pairing-confirm,
//!                     4 session-init, 5 session-response, 6 transport
//! 1       8     connection id, chosen at random by the device for each handshake
//! 9       …     handshake kinds (1, 2, 4, 5): one Noise handshake message, to the end
//!               sealed kinds (3, 6): 8-byte big-endian counter, then one Noise transport
//!               message (ciphertext ‖ 16-byte tag), to the end
//! ```
//!
//! The relay message delimits the packet, so no length field is needed. [`decode`] checks the
//! kind, then the length against the kind's bounds (each kind's smallest valid Noise message and
//! [`MAX_HANDSHAKE_MESSAGE_LEN`] or [`MAX_NOISE_MESSAGE_LEN`]), and only borrows: it never
//! allocates, never panics, and reports an unknown kind as [`PacketError::UnknownKind`].
//! Nothing in a packet is trusted until Noise has authenticated it; the header is a routing
//! label (see [`ConnectionId`]).

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::limits::{
    AEAD_TAG_LEN, CHANNEL_COUNTER_LEN, CONNECTION_ID_LEN, MAX_HANDSHAKE_MESSAGE_LEN,
    MAX_NOISE_MESSAGE_LEN, MAX_PACKET_LEN, PACKET_HEADER_LEN,
};

/// X25519 public key bytes in a handshake message.
const DH_LEN: usize = 32;

/// The id of one handshake and the channel it makes.
///
/// The device picks it at random when it starts a handshake; the machine echoes it, every packet
/// of that connection carries it, and both sides hash it into the handshake (Noise prologue), so
/// a machine cannot be made to answer one connection's handshake as if it were another's. Its
/// job is routing: after a reconnect, a packet that was still in flight on the old connection
/// arrives with the old id and is set aside as [stale](crate::noise::ChannelError::Stale) instead
/// of being decrypted with the new keys, failing, and killing the new channel.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ConnectionId(pub [u8; CONNECTION_ID_LEN]);

impl ConnectionId {
    /// A fresh random id.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; CONNECTION_ID_LEN];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

/// What a packet carries. The byte values are the wire format: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Device → machine: the first `Noise_IKpsk2` message of pairing.
    PairingInit = 1,
    /// Machine → device: the second pairing message, carrying the machine's proof.
    PairingResponse = 2,
    /// Device → machine: the first transport message after pairing, carrying the device's
    /// proof (counter 0).
    PairingConfirm = 3,
    /// Device → machine: the first `Noise_KK` message of a session.
    SessionInit = 4,
    /// Machine → device: the second `Noise_KK` message.
    SessionResponse = 5,
    /// Either way: an app message on an established channel.
    Transport = 6,
}

impl Kind {
    /// The kind for a kind byte, if this build knows it.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Kind::PairingInit,
            2 => Kind::PairingResponse,
            3 => Kind::PairingConfirm,
            4 => Kind::SessionInit,
            5 => Kind::SessionResponse,
            6 => Kind::Transport,
            _ => return None,
        })
    }

    /// The kind byte.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// Whether the body is counter ‖ transport message rather than a handshake message.
    pub fn is_sealed(self) -> bool {
        matches!(self, Kind::PairingConfirm | Kind::Transport)
    }

    /// Smallest and largest valid packet of this kind, header included.
    pub fn len_bounds(self) -> (usize, usize) {
        let (min_message, max_message) = match self {
            // e, s (encrypted: 32 + tag), payload tag.
            Kind::PairingInit => (
                DH_LEN + DH_LEN + 2 * AEAD_TAG_LEN,
                MAX_HANDSHAKE_MESSAGE_LEN,
            ),
            // e, payload tag.
            Kind::PairingResponse | Kind::SessionInit | Kind::SessionResponse => {
                (DH_LEN + AEAD_TAG_LEN, MAX_HANDSHAKE_MESSAGE_LEN)
            }
            Kind::PairingConfirm => (
                CHANNEL_COUNTER_LEN + AEAD_TAG_LEN,
                CHANNEL_COUNTER_LEN + MAX_HANDSHAKE_MESSAGE_LEN,
            ),
            Kind::Transport => (
                CHANNEL_COUNTER_LEN + AEAD_TAG_LEN,
                CHANNEL_COUNTER_LEN + MAX_NOISE_MESSAGE_LEN,
            ),
        };
        (
            PACKET_HEADER_LEN + min_message,
            PACKET_HEADER_LEN + max_message,
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::PairingInit => "pairing-init",
            Kind::PairingResponse => "pairing-response",
            Kind::PairingConfirm => "pairing-confirm",
            Kind::SessionInit => "session-init",
            Kind::SessionResponse => "session-response",
            Kind::Transport => "transport",
        })
    }
}

/// A Noise transport message with its explicit counter (the Noise nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sealed<'a> {
    /// The sender's message number on this channel, from 0.
    pub counter: u64,
    /// Ciphertext ‖ 16-byte tag.
    pub message: &'a [u8],
}

/// The body of a packet, by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// A [`Kind::PairingInit`] handshake message.
    PairingInit(&'a [u8]),
    /// A [`Kind::PairingResponse`] handshake message.
    PairingResponse(&'a [u8]),
    /// A [`Kind::PairingConfirm`] transport message.
    PairingConfirm(Sealed<'a>),
    /// A [`Kind::SessionInit`] handshake message.
    SessionInit(&'a [u8]),
    /// A [`Kind::SessionResponse`] handshake message.
    SessionResponse(&'a [u8]),
    /// A [`Kind::Transport`] transport message.
    Transport(Sealed<'a>),
}

impl Body<'_> {
    /// The kind of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::PairingInit(_) => Kind::PairingInit,
            Body::PairingResponse(_) => Kind::PairingResponse,
            Body::PairingConfirm(_) => Kind::PairingConfirm,
            Body::SessionInit(_) => Kind::SessionInit,
            Body::SessionResponse(_) => Kind::SessionResponse,
            Body::Transport(_) => Kind::Transport,
        }
    }
}

/// One packet, borrowing the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The connection the packet belongs to.
    pub connection: ConnectionId,
    /// What it carries.
    pub body: Body<'a>,
}

impl Packet<'_> {
    /// The kind of this packet.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Encode the packet. Fails, without panicking, if the body is outside its kind's bounds, so
    /// that every encoded packet decodes back to the same value.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let kind = self.kind();
        let (min, max) = kind.len_bounds();
        let (counter, message) = match self.body {
            Body::PairingInit(message)
            | Body::PairingResponse(message)
            | Body::SessionInit(message)
            | Body::SessionResponse(message) => (None, message),
            Body::PairingConfirm(sealed) | Body::Transport(sealed) => {
                (Some(sealed.counter), sealed.message)
            }
        };
        let len = PACKET_HEADER_LEN
            .saturating_add(if counter.is_some() {
                CHANNEL_COUNTER_LEN
            } else {
                0
            })
            .saturating_add(message.len());
        if len < min {
            return Err(PacketError::TooShort { kind, len, min });
        }
        if len > max {
            return Err(PacketError::TooLarge { len, max });
        }
        let mut out = Vec::with_capacity(len);
        out.push(kind.byte());
        out.extend_from_slice(&self.connection.0);
        if let Some(counter) = counter {
            out.extend_from_slice(&counter.to_be_bytes());
        }
        out.extend_from_slice(message);
        Ok(out)
    }
}

/// Why bytes are not a packet this build can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Zero bytes.
    Empty,
    /// A kind byte this build does not know (from a newer peer, or garbage).
    UnknownKind(u8),
    /// Fewer bytes than the smallest valid packet of this kind.
    TooShort {
        /// The kind byte's meaning.
        kind: Kind,
        /// Bytes received.
        len: usize,
        /// The smallest valid packet of this kind.
        min: usize,
    },
    /// More bytes than the largest valid packet (of this kind, or of any kind).
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Empty => f.write_str("empty channel packet"),
            PacketError::UnknownKind(kind) => {
                write!(
                    f,
                    "channel packet of unknown kind {kind} (a newer peer, or corruption)"
                )
            }
            PacketError::TooShort { kind, len, min } => {
                write!(
                    f,
                    "{kind} packet of {len} bytes is shorter than the minimum of {min}"
                )
            }
            PacketError::TooLarge { len, max } => {
                write!(
                    f,
                    "channel packet of {len} bytes is over the limit of {max}"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PacketError {}

/// Decode one packet: the whole of `bytes`. See the [module docs](self) for the layout.
pub fn decode<'a>(bytes: &'a [u8]) -> Result<Packet<'a>, PacketError> {
    if bytes.len() > MAX_PACKET_LEN {
        return Err(PacketError::TooLarge {
            len: bytes.len(),
            max: MAX_PACKET_LEN,
        });
    }
    let (&kind_byte, rest) = bytes.split_first().ok_or(PacketError::Empty)?;
    let kind = Kind::from_byte(kind_byte).ok_or(PacketError::UnknownKind(kind_byte))?;
    let (min, max) = kind.len_bounds();
    if bytes.len() < min {
        return Err(PacketError::TooShort {
            kind,
            len: bytes.len(),
            min,
        });
    }
    if bytes.len() > max {
        return Err(PacketError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let too_short = PacketError::TooShort {
        kind,
        len: bytes.len(),
        min,
    };
    let (connection, message) = rest
        .split_first_chunk::<CONNECTION_ID_LEN>()
        .ok_or(too_short)?;
    let connection = ConnectionId(*connection);
    let sealed = |message: &'a [u8]| -> Result<Sealed<'a>, PacketError> {
        let (counter, message) = message
            .split_first_chunk::<CHANNEL_COUNTER_LEN>()
            .ok_or(too_short)?;
        Ok(Sealed {
            counter: u64::from_be_bytes(*counter),
            message,
        })
    };
    let body = match kind {
        Kind::PairingInit => Body::PairingInit(message),
        Kind::PairingResponse => Body::PairingResponse(message),
        Kind::SessionInit => Body::SessionInit(message),
        Kind::SessionResponse => Body::SessionResponse(message),
        Kind::PairingConfirm => Body::PairingConfirm(sealed(message)?),
        Kind::Transport => Body::Transport(sealed(message)?),
    };
    Ok(Packet { connection, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    const ID: ConnectionId = ConnectionId([0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7]);

    #[test]
    fn transport_packet_bytes_are_exact() {
        let message = [0x55u8; 17];
        let packet = Packet {
            connection: ID,
            body: Body::Transport(Sealed {
                counter: 0x0102,
                message: &message,
            }),
        };
        let bytes = packet.encode().expect("encode");
        let mut expected = vec![6, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&message);
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes), Ok(packet));
    }

    #[test]
    fn handshake_packet_bytes_are_exact() {
        let message = [0x33u8; 48];
        let packet = Packet {
            connection: ID,
            body: Body::SessionInit(&message),
        };
        let bytes = packet.encode().expect("encode");
        assert_eq!(bytes[0], 4);
        assert_eq!(&bytes[1..9], &ID.0);
        assert_eq!(&bytes[9..], &message);
        assert_eq!(bytes.len(), 57);
        assert_eq!(decode(&bytes), Ok(packet));
    }

    #[test]
    fn bad_packets_are_reported_not_panicked_on() {
        assert_eq!(decode(&[]), Err(PacketError::Empty));
        assert_eq!(decode(&[0]), Err(PacketError::UnknownKind(0)));
        assert_eq!(decode(&[7; 100]), Err(PacketError::UnknownKind(7)));
        assert_eq!(
            decode(&[6, 1, 2]),
            Err(PacketError::TooShort {
                kind: Kind::Transport,
                len: 3,
                min: 33
            })
        );
        // A transport message shorter than its tag.
        let mut short = vec![6u8; 32];
        assert_eq!(
            decode(&short),
            Err(PacketError::TooShort {
                kind: Kind::Transport,
                len: 32,
                min: 33
            })
        );
        short.push(0);
        assert!(decode(&short).is_ok());
        assert_eq!(
            decode(&[1u8; 104]),
            Err(PacketError::TooShort {
                kind: Kind::PairingInit,
                len: 104,
                min: 105
            })
        );
        let huge = vec![6u8; MAX_PACKET_LEN + 1];
        assert_eq!(
            decode(&huge),
            Err(PacketError::TooLarge {
                len: MAX_PACKET_LEN + 1,
                max: MAX_PACKET_LEN
            })
        );
        assert!(decode(&huge[..MAX_PACKET_LEN]).is_ok());
        let big_handshake = vec![4u8; PACKET_HEADER_LEN + MAX_HANDSHAKE_MESSAGE_LEN + 1];
        assert_eq!(
            decode(&big_handshake),
            Err(PacketError::TooLarge {
                len: big_handshake.len(),
                max: PACKET_HEADER_LEN + MAX_HANDSHAKE_MESSAGE_LEN
            })
        );
    }

    #[test]
    fn encode_refuses_what_decode_would_refuse() {
        let packet = Packet {
            connection: ID,
            body: Body::SessionResponse(&[0u8; 47]),
        };
        assert_eq!(
            packet.encode(),
            Err(PacketError::TooShort {
                kind: Kind::SessionResponse,
                len: 56,
                min: 57
            })
        );
        let message = vec![0u8; MAX_NOISE_MESSAGE_LEN + 1];
        let packet = Packet {
            connection: ID,
            body: Body::Transport(Sealed {
                counter: 1,
                message: &message,
            }),
        };
        assert_eq!(
            packet.encode(),
            Err(PacketError::TooLarge {
                len: MAX_PACKET_LEN + 1,
                max: MAX_PACKET_LEN
            })
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(packet) = decode(&bytes) {
                prop_assert_eq!(packet.encode(), Ok(bytes.clone()));
            }
        }

        #[test]
        fn every_kind_round_trips(
            kind in 1u8..=6,
            id in any::<[u8; 8]>(),
            counter in any::<u64>(),
            message in proptest::collection::vec(any::<u8>(), 0..1100),
        ) {
            let connection = ConnectionId(id);
            let sealed = Sealed { counter, message: &message };
            let body = match Kind::from_byte(kind) {
                Some(Kind::PairingInit) => Body::PairingInit(&message),
                Some(Kind::PairingResponse) => Body::PairingResponse(&message),
                Some(Kind::PairingConfirm) => Body::PairingConfirm(sealed),
                Some(Kind::SessionInit) => Body::SessionInit(&message),
                Some(Kind::SessionResponse) => Body::SessionResponse(&message),
                _ => Body::Transport(sealed),
            };
            let packet = Packet { connection, body };
            let mut raw = vec![kind];
            raw.extend_from_slice(&id);
            if packet.kind().is_sealed() {
                raw.extend_from_slice(&counter.to_be_bytes());
            }
            raw.extend_from_slice(&message);
            match packet.encode() {
                Ok(bytes) => {
                    prop_assert_eq!(&bytes, &raw);
                    prop_assert_eq!(decode(&bytes), Ok(packet));
                }
                // What encode refuses, decode refuses the same way.
                Err(error) => prop_assert_eq!(decode(&raw), Err(error)),
            }
        }
    }
}
