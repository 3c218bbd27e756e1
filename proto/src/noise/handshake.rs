//! The few calls into snow that pairing and sessions share: building a handshake state on our
//! resolver, writing and reading one message, and reading the handshake hash.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use snow::{Builder, HandshakeState, StatelessTransportState};

use super::HANDSHAKE_HASH_LEN;
use super::packet::ConnectionId;
use super::resolver::Resolver;
use crate::limits::MAX_HANDSHAKE_MESSAGE_LEN;

/// Pairing: the device knows the machine's static key and the one-time secret.
pub(crate) const PAIRING_PATTERN: &str = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// Every later connection: both statics are known from pairing.
pub(crate) const SESSION_PATTERN: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";

/// Prologue label of pairing handshakes (then the connection id).
pub(crate) const PAIRING_PROLOGUE: &[u8] = b"muxagent/v1/noise/pairing\0";
/// Prologue label of session handshakes (then the connection id).
pub(crate) const SESSION_PROLOGUE: &[u8] = b"muxagent/v1/noise/session\0";

/// How snow failed, sorted by what the caller should tell people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The peer's message did not authenticate (wrong key, wrong secret, tampered, or a
    /// small-order public key): a statement about the peer.
    Rejected,
    /// Anything else: a bug in how this crate drives snow.
    Internal,
}

impl From<snow::Error> for Failure {
    fn from(error: snow::Error) -> Self {
        match error {
            snow::Error::Decrypt | snow::Error::Dh | snow::Error::Input => Failure::Rejected,
            _ => Failure::Internal,
        }
    }
}

/// What goes into one handshake state.
pub(crate) struct Setup<'a> {
    pub(crate) pattern: &'static str,
    pub(crate) prologue_label: &'static [u8],
    pub(crate) connection: ConnectionId,
    pub(crate) local_static: &'a [u8; 32],
    pub(crate) remote_static: Option<&'a [u8; 32]>,
    /// The PSK and its position in the pattern.
    pub(crate) psk: Option<(u8, &'a [u8; 32])>,
    pub(crate) initiator: bool,
}

/// Build a handshake state whose only randomness is 32 bytes drawn from `rng` now.
pub(crate) fn build<R: CryptoRng + ?Sized>(
    setup: &Setup<'_>,
    rng: &mut R,
) -> Result<HandshakeState, Failure> {
    let params = setup.pattern.parse().map_err(|_| Failure::Internal)?;
    let mut prologue = Vec::with_capacity(setup.prologue_label.len() + setup.connection.0.len());
    prologue.extend_from_slice(setup.prologue_label);
    prologue.extend_from_slice(&setup.connection.0);
    let mut builder = Builder::with_resolver(params, Box::new(Resolver::new(rng)))
        .prologue(&prologue)?
        .local_private_key(setup.local_static)?;
    if let Some(remote) = setup.remote_static {
        builder = builder.remote_public_key(remote)?;
    }
    if let Some((position, psk)) = setup.psk {
        builder = builder.psk(position, psk)?;
    }
    let state = if setup.initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    Ok(state)
}

/// Write the next handshake message with `payload`.
pub(crate) fn write(state: &mut HandshakeState, payload: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut message = vec![0u8; MAX_HANDSHAKE_MESSAGE_LEN];
    let len = state
        .write_message(payload, &mut message)
        .map_err(|_| Failure::Internal)?;
    message.truncate(len);
    Ok(message)
}

/// Read the next handshake message; returns its payload.
pub(crate) fn read(state: &mut HandshakeState, message: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut payload = vec![0u8; message.len()];
    let len = state.read_message(message, &mut payload)?;
    payload.truncate(len);
    Ok(payload)
}

/// The handshake hash `h` as it is now.
pub(crate) fn hash(state: &HandshakeState) -> Result<[u8; HANDSHAKE_HASH_LEN], Failure> {
    state
        .get_handshake_hash()
        .try_into()
        .map_err(|_| Failure::Internal)
}

/// The remote static key snow has (given, or learned from the handshake).
pub(crate) fn remote_static(state: &HandshakeState) -> Result<[u8; 32], Failure> {
    state
        .get_remote_static()
        .and_then(|key| key.try_into().ok())
        .ok_or(Failure::Internal)
}

/// End the handshake: the final hash, and the transport keys.
pub(crate) fn split(
    state: HandshakeState,
) -> Result<([u8; HANDSHAKE_HASH_LEN], StatelessTransportState), Failure> {
    let hash = hash(&state)?;
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|_| Failure::Internal)?;
    Ok((hash, transport))
}
