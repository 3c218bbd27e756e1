//! An established end-to-end channel: explicit counters, strict order, authenticate before
//! anything changes.

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
/// number: the relay delivers in order, and the app protocol's resync cannot work across a hole.
///
/// **Nothing unauthenticated changes the channel** (WireGuard's rule): a packet is first checked
/// against the counter it names — one below the next expected number is a replay and is dropped
/// unread ([`ChannelError::Replay`]) — then decrypted with that counter as the nonce, and only a
/// packet that authenticates moves the channel on. Bytes that are not a packet
/// ([`ChannelError::Packet`]), a packet that fails authentication ([`ChannelError::Tampered`]:
/// forged, damaged, or made with other keys), a packet of another connection
/// ([`ChannelError::Stale`], e.g. a late one from before a reconnect) and one that is not a
/// transport message ([`ChannelError::UnexpectedKind`]) are all refused and change nothing, so
/// whoever can inject packets (the relay, another member of the account) cannot cut a working
/// channel; they could only drop its traffic, which they can anyway.
///
/// What does end the channel — **poisons** it: the keys are wiped and every later call fails
/// with [`ChannelError::Poisoned`] — is proof that the peer's stream has a hole: an
/// *authentic* message with a number above the next expected one ([`ChannelError::Gap`], a
/// message was lost), and running out of numbers ([`ChannelError::Exhausted`]). The remedy is
/// always the same: run a new [`session`](super::session) handshake. Refusing to encrypt a
/// message over [`MAX_APP_MESSAGE_LEN`] does not poison: nothing was sent.
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

    /// Decrypt one transport packet of this channel: the next message from the peer. An error
    /// that does not [poison](ChannelError::poisons) left the channel as it was: drop the
    /// packet and go on.
    pub fn decrypt(&mut self, packet: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.check()?;
        let packet = packet::decode(packet)?;
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
        let counter = sealed.counter;
        if counter < expected {
            // Already received (or skipped past): a replay, dropped unread.
            return Err(ChannelError::Replay {
                expected,
                received: counter,
            });
        }
        // The sender never uses the last nonce (it is reserved), so nothing there is authentic.
        if counter == u64::MAX {
            return Err(ChannelError::Tampered { counter });
        }
        let Some(transport) = &self.transport else {
            return Err(self.poison(ChannelError::Internal));
        };
        let mut plaintext = vec![0u8; sealed.message.len()];
        match transport.read_message(counter, sealed.message, &mut plaintext) {
            Ok(len) => plaintext.truncate(len),
            // Not made with this channel's keys and this counter: dropped, nothing changes.
            Err(snow::Error::Decrypt) => return Err(ChannelError::Tampered { counter }),
            Err(_) => return Err(self.poison(ChannelError::Internal)),
        }
        if counter > expected {
            // Authentic, so the peer really sent the messages in between and they were lost.
            return Err(self.poison(ChannelError::Gap {
                expected,
                received: counter,
            }));
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
    /// The bytes are not a valid packet; dropped (does not poison).
    Packet(PacketError),
    /// The counter is below the next expected one: a replayed message, dropped unread (does not
    /// poison).
    Replay {
        /// The next counter this channel accepts.
        expected: u64,
        /// The counter received.
        received: u64,
    },
    /// An authentic message whose counter is above the next expected one: messages between
    /// were lost or reordered, and the stream has a hole (poisons).
    Gap {
        /// The next counter this channel accepts.
        expected: u64,
        /// The counter received.
        received: u64,
    },
    /// The message failed authentication: forged, tampered with, truncated, or not made with
    /// this channel's keys and the counter it names. Dropped (does not poison).
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
    /// [`ChannelError::Poisoned`]). Every other error left the channel exactly as it was.
    pub fn poisons(&self) -> bool {
        matches!(
            self,
            ChannelError::Gap { .. }
                | ChannelError::Exhausted
                | ChannelError::Internal
                | ChannelError::Poisoned
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
                write!(f, "malformed channel packet ({error}); dropped")
            }
            ChannelError::Replay { expected, received } => write!(
                f,
                "replayed message: number {received}, expected {expected}; dropped"
            ),
            ChannelError::Gap { expected, received } => write!(
                f,
                "message number {received} arrived when {expected} was expected: a message \
                 was lost or reordered; re-establish the channel"
            ),
            ChannelError::Tampered { counter } => write!(
                f,
                "a packet numbered {counter} failed authentication (forged, tampered with or \
                 truncated); dropped"
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
