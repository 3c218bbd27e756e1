//! The end-to-end channel between a device and a machine: the Noise protocol framework through
//! `snow` (X25519, ChaCha20-Poly1305, BLAKE2s). snow is the handshake state machine; this module
//! only chooses the patterns, carries their messages in [`packet`]s, checks identities, and
//! numbers transport messages. The relay forwards the packets and can read none of them.
//!
//! # Patterns, and why
//!
//! - **Pairing** — [`pairing`], `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s`. The device scanned a
//!   ticket holding the machine's Noise static key, its fingerprint and a one-time secret; the
//!   machine knows nothing about the device. `IK` fits exactly: the initiator knows the
//!   responder's static key beforehand and sends its own, encrypted, in message 1, so the
//!   handshake completes in one round trip and the device's key is hidden from the relay. The
//!   ticket's secret is the PSK (`psk2`, as in WireGuard): without it, message 2 cannot be
//!   produced or read, so someone who only knows the machine's public key (the relay, a
//!   stranger) cannot pair. Noise authenticates the X25519 keys; each side also signs the
//!   handshake hash with its Ed25519 key (the machine in message 2, the device in the first
//!   transport message, the pairing confirmation), so each side ends with the other's full
//!   [`PublicIdentity`](crate::identity::PublicIdentity), and the device checks it against the
//!   fingerprint in the ticket.
//! - **Every later connection** — [`session`], `Noise_KK_25519_ChaChaPoly_BLAKE2s`. After pairing
//!   both static keys are known, so nothing identifying travels at all, one round trip suffices,
//!   and the fresh ephemeral keys of every handshake give every connection new keys (forward
//!   secrecy: stealing a key file later does not open recorded traffic). The device initiates;
//!   the machine accepts only its paired devices' keys.
//!
//! # Transport
//!
//! A [`Channel`] sends each message as an 8-byte big-endian counter followed by one Noise
//! transport message encrypted with that counter as nonce (snow's `StatelessTransportState`),
//! and accepts only the next counter from the peer. Nothing unauthenticated changes a channel or
//! a handshake (WireGuard's rule): a lower counter is a replay and is dropped unread, a packet
//! that fails authentication (a bad tag, or a counter it was not made with) is dropped, and the
//! channel goes on — so whoever can inject packets (the relay, another member of the account)
//! cannot cut a working channel, or end a handshake with a forged answer. Only an *authentic*
//! message after a hole (messages were lost) poisons the channel; the answer is a new
//! [`session`] handshake. See [`Channel`] and [`ChannelError::poisons`].
//!
//! # Connection ids
//!
//! Every packet starts with a kind byte and a random [`ConnectionId`] picked by the device for
//! each handshake. Without it, a transport message still in flight from a connection that just
//! died would reach the channel of the next one, fail authentication under the new keys, and
//! poison the fresh channel — a reconnect could kill itself. With it, such a packet is recognized
//! as [stale](ChannelError::Stale) and dropped unread. The id is hashed into every handshake
//! (Noise prologue), so a handshake message cannot be answered under another connection's id.
//! Routing a packet: [`packet::decode`] it, then by [`Kind`](packet::Kind) hand handshake kinds
//! to [`pairing`] / [`session`] and transport to the [`Channel`] with that connection id.
//!
//! # Randomness, secrets
//!
//! No ambient randomness: every call that needs some takes the caller's
//! `&mut impl rand_core::CryptoRng`. A connection id takes 8 bytes from it, and each snow
//! handshake state exactly the 32 bytes of its ephemeral key (see `resolver`). Our key material
//! is wiped when dropped: the static and ephemeral X25519 secrets (`x25519-dalek`), cipher keys,
//! the copy of the node's [`Identity`] a pairing state keeps, the ticket's secret. snow's own
//! chaining key and handshake hash, and its copy of the PSK, are plain arrays that snow does not
//! wipe.

use crate::identity::Identity;

mod channel;
mod handshake;
pub mod packet;
pub mod pairing;
mod resolver;
pub mod session;

pub use channel::{Channel, ChannelError};
pub use packet::ConnectionId;

/// Length of [`Channel::handshake_hash`] (BLAKE2s).
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// A second copy of `identity` for a handshake state to own (both copies wipe themselves).
fn clone_identity(identity: &Identity) -> Identity {
    Identity::from_secret_bytes(&identity.to_secret_bytes())
}

#[cfg(test)]
pub(crate) mod tests;
