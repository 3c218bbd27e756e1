//! An established end-to-end channel: explicit counters, strict order, poisoned on any fault.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use snow::StatelessTransportState;

use super::HANDSHAKE_HASH_LEN;
use super::packet::{self, Body, ConnectionId, Kind, Packet, PacketError};
use crate::identity::PublicIdentity;
use crate::limits::{AEAD_TAG_LEN, CHANNEL_COUNTER_LEN, MAX_APP_MESSAGE_LEN, PACKET_HEADER_LEN};

/// One end of an end-to-end channel between a device and a machine, made by
/// [`pairing`](super::pairing) or a [`session`](super::session) handshake.
///
/// [`encrypt`](Self::encrypt) gives a [`Kind::Transport`] packet for the relay;
/// [`decrypt`](Self::decrypt) takes one. Each direction numbers its messages 0, 1, 2 … in an
/// explicit 8-byte counter that is also the Noise nonce, and the receiver accepts only the next
/// number: the relay delivers in order, so anything else means a message was replayed, lost or
/// reordered, and the app protocol's resync cannot work across a hole. Every such fault, and any
/// packet of this connection that fails authentication, **poisons** the channel: its keys are
/// wiped and every later call fails with [`ChannelError::Poisoned`]. The remedy is always the
/// same: run a new [`session`](super::session) handshake.
///
/// Two things do not poison, because they say nothing about this channel's integrity: a packet
/// of another connection ([`ChannelError::Stale`], e.g. a late packet from before a reconnect)
/// and a packet that is not a transport message ([`ChannelError::UnexpectedKind`], a routing
/// mistake). Neither is decrypted. Refusing to encrypt a message over [`MAX_APP_MESSAGE_LEN`]
/// does not poison either: nothing was sent.
pub struct Channel {
    /// `None` once poisoned: the keys are dropped (and wiped) at the first fault.
    transport: Option<StatelessTransportState>,
    failure: Option<ChannelError>,
    connection: ConnectionId,
    handshake_hash: [u8; HANDSHAKE_HASH_LEN],
    peer: PublicIdentity,
    next_send: u64,
    next_recv: u64,
}

impl Channel {
    pub(crate) fn new(
        connection: ConnectionId,
        handshake_hash: [u8; HANDSHAKE_HASH_LEN],
        transport: StatelessTransportState,
        peer: PublicIdentity,
    ) -> Self {
        Self {
            transport: Some(transport),
            failure: None,
            connection,
            handshake_hash,
            peer,
            next_send: 0,
            next_recv: 0,
        }
    }

    /// Encrypt one app message (at most [`MAX_APP_MESSAGE_LEN`] bytes) into a transport packet.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.seal(Kind::Transport, plaintext)
    }

    /// Decrypt one transport packet of this channel: the next message from the peer.
    pub fn decrypt(&mut self, packet: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        let packet = packet::decode(packet).map_err(|error| self.poison(error.into()))?;
        self.open(&packet, Kind::Transport)
    }

    /// The Noise handshake hash: a value both ends share, unique to this channel, that commits
    /// to the whole handshake (both static and both ephemeral keys, the prologue with the
    /// connection id, and for pairing the one-time secret). Use it to bind signatures or to show
    /// people a code to compare.
    pub fn handshake_hash(&self) -> &[u8; HANDSHAKE_HASH_LEN] {
        &self.handshake_hash
    }

    /// The connection this channel belongs to; every packet of it carries this id.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// The peer's public identity, authenticated by the handshake (and, after pairing, by the
    /// peer's signature).
    pub fn peer(&self) -> &PublicIdentity {
        &self.peer
    }

    /// Whether an earlier fault ended this channel.
    pub fn is_poisoned(&self) -> bool {
        self.failure.is_some()
    }

    /// The fault that poisoned this channel, if any.
    pub fn failure(&self) -> Option<ChannelError> {
        self.failure
    }

    pub(crate) fn set_peer(&mut self, peer: PublicIdentity) {
        self.peer = peer;
    }

    fn check(&self) -> Result<(), ChannelError> {
        match self.failure {
            Some(_) => Err(ChannelError::Poisoned),
            None => Ok(()),
        }
    }

    /// Record the first fault, wipe the keys, and hand the error back.
    fn poison(&mut self, error: ChannelError) -> ChannelError {
        if self.failure.is_none() {
            self.failure = Some(error);
        }
        self.transport = None;
        error
    }

    /// Encrypt `plaintext` as the next message, in a packet of `kind` (a sealed kind).
    pub(crate) fn seal(&mut self, kind: Kind, plaintext: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        if plaintext.len() > MAX_APP_MESSAGE_LEN {
            return Err(ChannelError::TooLarge {
                len: plaintext.len(),
                max: MAX_APP_MESSAGE_LEN,
            });
        }
        let counter = self.next_send;
        // Noise reserves the last nonce (2^64 − 1).
        if counter == u64::MAX {
            return Err(self.poison(ChannelError::Exhausted));
        }
        let Some(transport) = &self.transport else {
            return Err(self.poison(ChannelError::Internal));
        };
        let start = PACKET_HEADER_LEN + CHANNEL_COUNTER_LEN;
        let sealed_len = plaintext.len() + AEAD_TAG_LEN;
        let mut out = vec![0u8; start + sealed_len];
        out[0] = kind.byte();
        out[1..PACKET_HEADER_LEN].copy_from_slice(&self.connection.0);
        out[PACKET_HEADER_LEN..start].copy_from_slice(&counter.to_be_bytes());
        match transport.write_message(counter, plaintext, &mut out[start..]) {
            Ok(len) if len == sealed_len => {}
            _ => return Err(self.poison(ChannelError::Internal)),
        }
        self.next_send = counter + 1;
        Ok(out)
    }

    /// Decrypt `packet`, which must be of `kind` (a sealed kind) and the next message.
    pub(crate) fn open(
        &mut self,
        packet: &Packet<'_>,
        kind: Kind,
    ) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        if packet.connection != self.connection {
            return Err(ChannelError::Stale {
                expected: self.connection,
                received: packet.connection,
            });
        }
        let sealed = match packet.body {
            Body::Transport(sealed) | Body::PairingConfirm(sealed) if packet.kind() == kind => {
                sealed
            }
            _ => return Err(ChannelError::UnexpectedKind(packet.kind())),
        };
        let expected = self.next_recv;
        if sealed.counter < expected {
            return Err(self.poison(ChannelError::Replay {
                expected,
                received: sealed.counter,
            }));
        }
        if sealed.counter > expected {
            return Err(self.poison(ChannelError::Gap {
                expected,
                received: sealed.counter,
            }));
        }
        if expected == u64::MAX {
            return Err(self.poison(ChannelError::Exhausted));
        }
        let Some(transport) = &self.transport else {
            return Err(self.poison(ChannelError::Internal));
        };
        let mut plaintext = vec![0u8; sealed.message.len()];
        match transport.read_message(expected, sealed.message, &mut plaintext) {
            Ok(len) => plaintext.truncate(len),
            Err(snow::Error::Decrypt) => {
                return Err(self.poison(ChannelError::Tampered { counter: expected }));
            }
            Err(_) => return Err(self.poison(ChannelError::Internal)),
        }
        self.next_recv = expected + 1;
        Ok(plaintext)
    }

    #[cfg(test)]
    pub(crate) fn set_counters(&mut self, next_send: u64, next_recv: u64) {
        self.next_send = next_send;
        self.next_recv = next_recv;
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("connection", &self.connection)
            .field("peer", &self.peer.fingerprint())
            .field("next_send", &self.next_send)
            .field("next_recv", &self.next_recv)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// Why the channel refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// The plaintext is over [`MAX_APP_MESSAGE_LEN`]; nothing was sent (does not poison).
    TooLarge {
        /// Bytes given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The packet belongs to another connection, e.g. one from before a reconnect. It was not
    /// decrypted; drop it (does not poison).
    Stale {
        /// This channel's connection.
        expected: ConnectionId,
        /// The packet's connection.
        received: ConnectionId,
    },
    /// The packet is not a transport message; route it elsewhere (does not poison).
    UnexpectedKind(Kind),
    /// The bytes are not a valid packet (poisons).
    Packet(PacketError),
    /// The counter is below the next expected one: a replayed message (poisons).
    Replay {
        /// The next counter this channel accepts.
        expected: u64,
        /// The counter received.
        received: u64,
    },
    /// The counter is above the next expected one: a message was lost or reordered (poisons).
    Gap {
        /// The next counter this channel accepts.
        expected: u64,
        /// The counter received.
        received: u64,
    },
    /// The message failed authentication: tampered with, truncated, or not made with this
    /// channel's keys (poisons).
    Tampered {
        /// The counter of the message.
        counter: u64,
    },
    /// The channel used up its 2^64 − 1 message numbers (poisons).
    Exhausted,
    /// The Noise library failed in a way that indicates a bug here (poisons).
    Internal,
    /// An earlier fault ended this channel; see [`Channel::failure`].
    Poisoned,
}

impl ChannelError {
    /// Whether this error ended the channel (every later call fails with
    /// [`ChannelError::Poisoned`]).
    pub fn poisons(&self) -> bool {
        !matches!(
            self,
            ChannelError::TooLarge { .. }
                | ChannelError::Stale { .. }
                | ChannelError::UnexpectedKind(_)
        )
    }
}

impl From<PacketError> for ChannelError {
    fn from(error: PacketError) -> Self {
        ChannelError::Packet(error)
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes is over the channel limit of {max}; split it"
                )
            }
            ChannelError::Stale { expected, received } => write!(
                f,
                "packet of connection {received} arrived on connection {expected}: \
                 a leftover from an earlier connection, dropped"
            ),
            ChannelError::UnexpectedKind(kind) => {
                write!(f, "a {kind} packet is not a channel message")
            }
            ChannelError::Packet(error) => {
                write!(
                    f,
                    "malformed channel packet ({error}); re-establish the channel"
                )
            }
            ChannelError::Replay { expected, received } => write!(
                f,
                "replayed message: number {received}, expected {expected}; \
                 re-establish the channel"
            ),
            ChannelError::Gap { expected, received } => write!(
                f,
                "message number {received} arrived when {expected} was expected: a message \
                 was lost or reordered; re-establish the channel"
            ),
            ChannelError::Tampered { counter } => write!(
                f,
                "message number {counter} failed authentication (tampered with or truncated); \
                 re-establish the channel"
            ),
            ChannelError::Exhausted => {
                f.write_str("the channel used up its message numbers; re-establish the channel")
            }
            ChannelError::Internal => {
                f.write_str("internal error in the Noise channel; re-establish the channel")
            }
            ChannelError::Poisoned => f.write_str(
                "the channel failed earlier and can no longer be used; re-establish the channel",
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ChannelError {}
